// Hotline agent console: the queue of cases, one case (summary, transcript, notes) and the
// agent's actions, against the agent hub API (bot/agents/app.py). Plain ES module, no
// dependencies, no build step. Texters' words reach the DOM only through textContent and text
// nodes, never innerHTML: they are untrusted and may contain markup.

const RISK_LABELS = { imminent: "Imminent", high: "High", medium: "Medium", low: "Low", none: "None" };
const STATUS_LABELS = { waiting: "Waiting", held: "Held", returned: "Returned to bot", closed: "Closed" };
const CHANNEL_LABELS = { sms: "SMS", whatsapp: "WhatsApp" };
const WHO_LABELS = { texter: "Texter", bot: "Bot", agent: "Agent" };
const ANSWER_LABELS = { yes: "Yes", no: "No", skip: "Skipped", unclear: "Unclear" };
const COVERED_LABELS = { referrals: "referrals", rights: "rights", safety_plan: "a safety plan", emergency: "emergency services" };
const POLL_MS = 5000; // queue polling while the WebSocket is down
const ACTIVITY_MS = 60000; // at most one "agent is here" message a minute
const CLOCK_MS = 15000; // waiting times and the WhatsApp window tick client-side
const SEGMENTS_DEBOUNCE_MS = 150;
const BACKOFF_MS = [1000, 2000, 4000, 8000, 15000, 30000];
const MAX_REPLY_CHARS = 1600;
const THEME_KEY = "hotline-console-theme";
const BASE_TITLE = "Hotline console";

// ---------------------------------------------------------------------------------------
// Pure helpers (exported so they can be unit-tested in Node)
// ---------------------------------------------------------------------------------------

/** "under 1 min", "4 min", "1 h 05 min": minutes are what an agent weighs, seconds are noise. */
export function formatWait(seconds) {
  const s = Math.max(0, Math.floor(Number(seconds) || 0));
  if (s < 60) return "under 1 min";
  const minutes = Math.floor(s / 60);
  if (minutes < 60) return `${minutes} min`;
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`;
}

/** A safety answer in plain words: a skipped question must not read like "no". */
export function answerLabel(value) {
  if (value === null || value === undefined || value === "") return "Not asked";
  return ANSWER_LABELS[value] ?? String(value);
}

/** Consent is true/false/null; null means the bot never got an answer. */
export function consentLabel(value) {
  if (value === true) return "Yes";
  if (value === false) return "No";
  return "Not asked";
}

/**
 * Splits `text` into pieces [{text, mark}] where the evidence strings occur, so they can be
 * highlighted with <mark> built from text nodes. Case-insensitive when lower-casing keeps the
 * length (so offsets stay valid), exact otherwise. Overlapping matches are merged.
 */
export function highlightPieces(text, needles) {
  const source = String(text ?? "");
  const lower = source.toLowerCase();
  const ranges = [];
  for (const raw of needles ?? []) {
    const needle = String(raw ?? "");
    if (!needle.trim()) continue;
    const fold = lower.length === source.length && needle.toLowerCase().length === needle.length;
    const hay = fold ? lower : source;
    const find = fold ? needle.toLowerCase() : needle;
    for (let i = hay.indexOf(find); i >= 0; i = hay.indexOf(find, i + find.length)) {
      ranges.push([i, i + find.length]);
    }
  }
  ranges.sort((a, b) => a[0] - b[0]);
  const merged = [];
  for (const [start, end] of ranges) {
    const last = merged[merged.length - 1];
    if (last && start <= last[1]) last[1] = Math.max(last[1], end);
    else merged.push([start, end]);
  }
  const pieces = [];
  let pos = 0;
  for (const [start, end] of merged) {
    if (start > pos) pieces.push({ text: source.slice(pos, start), mark: false });
    pieces.push({ text: source.slice(start, end), mark: true });
    pos = end;
  }
  if (pos < source.length) pieces.push({ text: source.slice(pos), mark: false });
  return pieces;
}

/** "2 segments · GSM-7 · 180 characters", the line under the reply box. */
export function segmentsText({ segments, encoding, characters }) {
  return `${segments} ${segments === 1 ? "segment" : "segments"} · ${encoding} · ${characters} characters`;
}

// ---------------------------------------------------------------------------------------
// Server access
// ---------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Called on any 401 except a failed login: the session is gone, back to the login form. */
let onUnauthorized = () => {};

/**
 * JSON request to the hub. Cookie auth (same-origin), and the CSRF header on every POST,
 * without which the hub answers 403. Throws ApiError carrying the hub's `error` sentence.
 */
async function api(path, { method = "GET", body, background = false } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-Requested-With"] = "hotline-console";
  // Requests the console makes on its own are not the agent's activity: they must not keep an idle session open.
  if (background) headers["X-Hotline-Background"] = "1";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method, headers, credentials: "same-origin", cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "Cannot reach the hotline server. Check the network; the console keeps retrying.");
  }
  let data = null;
  const raw = response.status === 204 ? "" : await response.text();
  if (raw) {
    try { data = JSON.parse(raw); } catch { data = null; }
  }
  if (!response.ok) {
    const sentence = data && typeof data.error === "string" ? data.error : `The server answered ${response.status}.`;
    if (response.status === 401 && path !== "/api/login") onUnauthorized();
    throw new ApiError(response.status, sentence);
  }
  return data;
}

const casePath = (id, action = "") => `/api/cases/${encodeURIComponent(id)}${action ? `/${action}` : ""}`;

// ---------------------------------------------------------------------------------------
// The page
// ---------------------------------------------------------------------------------------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function timeEl(iso) {
  const d = new Date(iso);
  if (!iso || Number.isNaN(d.getTime())) return null;
  const sameDay = d.toDateString() === new Date().toDateString();
  const opts = sameDay ? { hour: "2-digit", minute: "2-digit" }
    : { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" };
  const node = el("time", null, new Intl.DateTimeFormat(undefined, opts).format(d));
  node.dateTime = String(iso);
  return node;
}

function riskBadge(risk) {
  const key = RISK_LABELS[risk] ? risk : "none";
  return el("span", `badge risk risk-${key}`, RISK_LABELS[key]);
}

function start() {
  const $ = (id) => document.getElementById(id);
  const ui = Object.fromEntries([
    "whoami", "live-state", "enable-alerts", "theme-toggle", "logout", "alert-banner", "alert-text",
    "alert-open", "alert-dismiss", "login-view", "login-form", "username", "password", "login-error",
    "app", "queue", "queue-count", "queue-empty", "case", "case-title", "hold-state", "take",
    "case-empty", "case-body", "monitor-warning", "case-summary", "indicators", "indicators-empty",
    "transcript", "reply-form", "reply-text", "segments", "window-note", "send", "notes",
    "notes-empty", "note-form", "note-text", "transfer-form", "transfer-to", "handback-form",
    "handback-note", "close-form", "close-outcome", "close-note", "status", "practice-form",
    "practice-script", "practice-start", "unlock-form", "unlock-name", "unlock-start",
  ].map((id) => [id.replace(/-(\w)/g, (_, c) => c.toUpperCase()), $(id)]));

  const state = {
    me: null, // {username, role}
    queue: [], // cases from the last "cases" message or poll
    queueAt: 0, // when the queue arrived: waiting_seconds count from then
    queueSignature: "", // the queue as last drawn, minus waiting times
    open: null, // the open case, with transcript and notes
    openAt: 0,
    windowAt: 0, // when window_remaining was last set
    openToken: 0, // bumps on every open, so a slow answer for another case is dropped
    drafts: new Map(), // case id -> unsent reply: never carried over to another texter
    alerted: new Set(),
    alertCaseId: null,
    sending: false,
  };

  // ---- status line ----

  let statusTimer = null;
  /** One status line for results and API errors; errors stay longer, as they need reading. */
  function setStatus(text, kind = "ok") {
    clearTimeout(statusTimer);
    ui.status.textContent = text;
    ui.status.className = `status ${kind}`;
    statusTimer = setTimeout(() => { ui.status.textContent = ""; }, kind === "ok" ? 8000 : 30000);
  }
  const reportError = (err) => setStatus(err instanceof ApiError ? err.message : `Unexpected error: ${err}`, "error");

  function updateTitle() {
    const waiting = state.queue.filter((c) => c.status === "waiting").length;
    document.title = `${state.alertCaseId ? "⚠ Imminent case · " : ""}${waiting ? `(${waiting}) ` : ""}${BASE_TITLE}`;
  }

  // ---- theme ----

  let chosenTheme = null;
  try { chosenTheme = localStorage.getItem(THEME_KEY); } catch { chosenTheme = null; }

  /** The agent's choice wins over the system setting; without one, follow the system. The
   *  stylesheet has one dark palette, keyed on data-theme, so the two never drift apart. */
  function applyTheme() {
    const system = matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
    const theme = chosenTheme === "dark" || chosenTheme === "light" ? chosenTheme : system;
    document.documentElement.dataset.theme = theme;
    ui.themeToggle.setAttribute("aria-pressed", String(theme === "dark"));
    ui.themeToggle.textContent = "Dark theme";
  }
  ui.themeToggle.addEventListener("click", () => {
    chosenTheme = ui.themeToggle.getAttribute("aria-pressed") === "true" ? "light" : "dark";
    try { localStorage.setItem(THEME_KEY, chosenTheme); } catch { /* private mode: still switch */ }
    applyTheme();
  });
  applyTheme();
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", applyTheme);

  // ---- sound and notifications ----

  let audio = null;
  /** Browsers only let a page make sound after a user gesture: create/resume on each one. */
  function unlockAudio() {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    if (!audio) {
      try { audio = new Ctx(); } catch { return; }
      audio.addEventListener("statechange", renderEnableAlerts);
    }
    if (audio.state === "suspended") audio.resume().catch(() => {});
  }
  document.addEventListener("pointerdown", unlockAudio, true);
  document.addEventListener("keydown", unlockAudio, true);

  /** Two short rising tones: noticeable at 3 a.m. without being a siren. */
  function beep() {
    if (!audio || audio.state !== "running") return;
    const t = audio.currentTime;
    [[0, 880], [0.22, 1175]].forEach(([offset, freq]) => {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.type = "sine";
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, t + offset);
      gain.gain.exponentialRampToValueAtTime(0.3, t + offset + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t + offset + 0.18);
      osc.connect(gain).connect(audio.destination);
      osc.start(t + offset);
      osc.stop(t + offset + 0.2);
    });
  }

  const notificationsAsk = () => "Notification" in window && Notification.permission === "default";
  function askNotifications() {
    if (!notificationsAsk()) return;
    try {
      Promise.resolve(Notification.requestPermission()).then(renderEnableAlerts, renderEnableAlerts);
    } catch { /* old Safari: callback form only; the button stays */ }
  }

  /** After a reload nothing was clicked yet: say plainly that alerts would be silent. */
  function renderEnableAlerts() {
    const soundOff = !audio || audio.state !== "running";
    const ask = notificationsAsk();
    ui.enableAlerts.hidden = !state.me || (!soundOff && !ask);
    ui.enableAlerts.textContent = soundOff && ask ? "Turn on alert sound and notifications"
      : soundOff ? "Turn on alert sound" : "Turn on notifications";
  }
  ui.enableAlerts.addEventListener("click", () => { unlockAudio(); askNotifications(); renderEnableAlerts(); });

  /** The notification names only the language: it may show on a lock screen. */
  function notify(info) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    try {
      const n = new Notification("Imminent risk: a case needs an agent now", {
        body: `${info.language_name || "New case"} · open the hotline console`,
        tag: `hotline-alert-${info.id}`,
        requireInteraction: true,
      });
      n.addEventListener("click", () => { window.focus(); openCase(info.id); n.close(); });
    } catch { /* some mobile browsers only allow service-worker notifications */ }
  }

  function onAlert(info) {
    if (!info || typeof info.id !== "string") return;
    const firstTime = !state.alerted.has(info.id);
    state.alerted.add(info.id);
    state.alertCaseId = info.id;
    ui.alertText.textContent = `Imminent risk: a new case${info.language_name ? ` in ${info.language_name}` : ""} needs an agent now.`;
    ui.alertBanner.hidden = false;
    updateTitle();
    if (firstTime) { beep(); notify(info); }
  }

  function clearAlert() {
    state.alertCaseId = null;
    ui.alertBanner.hidden = true;
    updateTitle();
  }
  ui.alertOpen.addEventListener("click", () => { const id = state.alertCaseId; clearAlert(); if (id) openCase(id); });
  ui.alertDismiss.addEventListener("click", clearAlert);

  // ---- session ----

  function enterApp(me) {
    state.me = me;
    ui.loginView.hidden = true;
    ui.app.hidden = false;
    ui.logout.hidden = false;
    ui.whoami.hidden = false;
    ui.whoami.textContent = `${me.username} (${me.role})`;
    renderEnableAlerts();
    ui.unlockForm.hidden = me.role !== "supervisor";
    loadChoices();
    loadPractice();
    connectLive();
    pollQueue();
  }

  /** Back to the login form, with every texter's words removed from the page. */
  function showLogin(message = "") {
    state.me = null;
    disconnectLive();
    state.queue = [];
    state.open = null;
    state.drafts.clear();
    clearAlert();
    ui.queue.replaceChildren();
    ui.practiceForm.hidden = true;
    ui.unlockForm.hidden = true;
    state.queueSignature = "";
    ui.replyText.value = "";
    closeCaseView();
    ui.app.hidden = true;
    ui.logout.hidden = true;
    ui.whoami.hidden = true;
    ui.liveState.hidden = true;
    ui.enableAlerts.hidden = true;
    ui.loginView.hidden = false;
    ui.loginError.textContent = message;
    ui.username.focus();
  }
  onUnauthorized = () => {
    if (state.me) showLogin("Your session has ended (end of a shift, or a while without activity). Please log in again.");
  };

  ui.loginForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    unlockAudio();
    const username = ui.username.value.trim();
    const password = ui.password.value;
    if (!username || !password) {
      ui.loginError.textContent = "Enter your username and password.";
      (username ? ui.password : ui.username).focus();
      return;
    }
    ui.loginError.textContent = "";
    try {
      const me = await api("/api/login", { method: "POST", body: { username, password } });
      ui.password.value = "";
      askNotifications(); // still inside the submit's user activation
      enterApp(me);
    } catch (err) {
      ui.loginError.textContent = err.message;
      ui.password.select();
    }
  });

  ui.logout.addEventListener("click", async () => {
    try { await api("/api/logout", { method: "POST" }); } catch { /* leave anyway */ }
    showLogin("You are logged out.");
  });

  /** Transfer targets and close outcomes change rarely: fetched at login and on each case open. */
  async function loadChoices() {
    try {
      const [agents, outcomes] = await Promise.all([api("/api/agents"), api("/api/outcomes")]);
      fillAgents(Array.isArray(agents) ? agents : []);
      const chosen = ui.closeOutcome.value;
      ui.closeOutcome.replaceChildren(new Option("Choose an outcome…", ""));
      for (const o of Array.isArray(outcomes) ? outcomes : []) ui.closeOutcome.append(new Option(o.label, o.id));
      ui.closeOutcome.value = chosen;
    } catch (err) { reportError(err); }
  }

  /** Trainers practise on scripted texters; nobody else sees the form. */
  async function loadPractice() {
    const allowed = state.me?.role === "trainer";
    ui.practiceForm.hidden = !allowed;
    if (!allowed) return;
    try {
      const scripts = await api("/api/practice/scripts");
      ui.practiceScript.replaceChildren(new Option("Choose a texter…", ""));
      for (const s of Array.isArray(scripts) ? scripts : []) {
        ui.practiceScript.append(new Option(`${s.language} · ${s.title}`, s.name));
      }
    } catch (err) { reportError(err); }
  }

  ui.unlockForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = ui.unlockName.value.trim();
    if (!name) { setStatus("Type the agent's username first.", "error"); ui.unlockName.focus(); return; }
    ui.unlockStart.disabled = true;
    try {
      await api(`/api/agents/${encodeURIComponent(name)}/unlock`, { method: "POST" });
      ui.unlockName.value = "";
      setStatus(`${name} can log in again now.`);
    } catch (err) { reportError(err); } finally { ui.unlockStart.disabled = false; }
  });

  ui.practiceForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!ui.practiceScript.value) { setStatus("Choose a scripted texter first.", "error"); return; }
    ui.practiceStart.disabled = true;
    try {
      const started = await api("/api/practice", { method: "POST", body: { script: ui.practiceScript.value } });
      setStatus(`Practice started: ${started.title}. The case comes to your queue when the texter reaches an agent.`);
    } catch (err) { reportError(err); } finally { ui.practiceStart.disabled = false; }
  });

  function fillAgents(agents) {
    const chosen = ui.transferTo.value;
    ui.transferTo.replaceChildren(new Option("Choose an agent…", ""));
    for (const a of agents.filter((x) => x.username !== state.me?.username)) {
      const label = `${a.username}${a.role === "supervisor" ? " · supervisor" : ""} (${a.online ? "online" : "offline"})`;
      ui.transferTo.append(new Option(label, a.username));
    }
    ui.transferTo.value = chosen;
  }

  // ---- live updates: WebSocket, polling while it is down ----

  let socket = null;
  let reconnectTimer = null;
  let pollTimer = null;
  let attempt = 0;

  function setLive(up) {
    ui.liveState.hidden = false;
    ui.liveState.textContent = up ? "Live" : "Reconnecting… (queue refreshes every 5 s)";
    ui.liveState.classList.toggle("down", !up);
  }

  function connectLive() {
    if (!state.me) return;
    clearTimeout(reconnectTimer);
    let ws;
    try {
      ws = new WebSocket(`${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/api/live`);
    } catch { scheduleReconnect(); return; }
    socket = ws;
    ws.addEventListener("open", () => { attempt = 0; setLive(true); clearTimeout(pollTimer); });
    ws.addEventListener("message", (event) => onLiveMessage(event.data));
    ws.addEventListener("close", () => {
      if (socket !== ws) return; // replaced or logged out on purpose
      socket = null;
      setLive(false);
      pollQueue();
      scheduleReconnect();
    });
  }

  /** Backoff with jitter, so a restarted hub is not hit by every console at the same instant. */
  function scheduleReconnect() {
    const delay = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)] * (0.8 + Math.random() * 0.4);
    attempt += 1;
    clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(connectLive, delay);
  }

  function disconnectLive() {
    const ws = socket;
    socket = null;
    if (ws) ws.close();
    clearTimeout(reconnectTimer);
    clearTimeout(pollTimer);
  }

  const liveUp = () => socket !== null && socket.readyState === WebSocket.OPEN;

  /** The agent typing, clicking or scrolling tells the hub someone is at the desk (at most once a
   * minute): an open socket alone does not keep an idle session open. */
  let lastActivitySent = 0;
  function reportActivity() {
    if (!state.me || !liveUp() || Date.now() - lastActivitySent < ACTIVITY_MS) return;
    lastActivitySent = Date.now();
    socket.send(JSON.stringify({ type: "active" }));
  }
  for (const type of ["keydown", "pointerdown", "pointermove", "wheel", "touchstart"]) {
    document.addEventListener(type, reportActivity, { capture: true, passive: true });
  }

  /** GET /api/cases now, then every 5 s for as long as the socket is not open. */
  async function pollQueue() {
    clearTimeout(pollTimer);
    if (!state.me || liveUp()) return;
    try {
      const cases = await api("/api/cases", { background: true });
      if (!liveUp()) renderQueue(cases); // the socket's own list is fresher
    } catch (err) {
      if (err.status !== 401) reportError(err);
    }
    if (state.me && !liveUp()) pollTimer = setTimeout(pollQueue, POLL_MS);
  }

  function onLiveMessage(raw) {
    let msg;
    try { msg = JSON.parse(raw); } catch { return; }
    if (!msg || typeof msg !== "object") return;
    if (msg.type === "cases") renderQueue(msg.cases);
    else if (msg.type === "alert") onAlert(msg.case);
    else if (msg.type === "message") onLiveEntry(msg.case_id, msg.entry);
    else if (msg.type === "case" && msg.case && state.open && msg.case.id === state.open.id) showCase(msg.case);
  }

  // ---- queue ----

  function renderQueue(cases) {
    state.queue = Array.isArray(cases) ? cases.filter((c) => c && typeof c.id === "string") : [];
    state.queueAt = Date.now();
    // Same cases, only older: just reset the clocks. A rebuild under the agent's pointer
    // (every 5 s while polling) could swallow a click.
    const signature = JSON.stringify(state.queue.map(({ waiting_seconds, ...rest }) => rest));
    const rows = [...ui.queue.querySelectorAll(".row-wait")];
    if (signature === state.queueSignature && rows.length === state.queue.length) {
      rows.forEach((node, i) => {
        node.dataset.waitingSeconds = String(Number(state.queue[i].waiting_seconds) || 0);
        updateWait(node, state.queueAt);
      });
      return;
    }
    state.queueSignature = signature;
    const focusedId = ui.queue.contains(document.activeElement) ? document.activeElement.dataset.caseId : null;
    ui.queue.replaceChildren(...state.queue.map(queueRow));
    ui.queueEmpty.hidden = state.queue.length > 0;
    ui.queueCount.textContent = state.queue.length ? `(${state.queue.length})` : "";
    if (focusedId) ui.queue.querySelector(`[data-case-id="${CSS.escape(focusedId)}"]`)?.focus();
    updateTitle();
    // Someone else may take the case this agent is reading: keep its buttons honest.
    const open = state.open && state.queue.find((c) => c.id === state.open.id);
    if (open && (open.status !== state.open.status || open.assigned_to !== state.open.assigned_to || open.risk !== state.open.risk)) {
      const { id, status, assigned_to, risk, imminent } = open;
      showCase({ id, status, assigned_to, risk, imminent });
    }
  }

  /** One row is one button: Tab reaches it, Enter and Space open it, its text is its name. */
  function queueRow(c) {
    const li = el("li", "queue-item");
    const button = el("button", `queue-row risk-row-${RISK_LABELS[c.risk] ? c.risk : "none"}`);
    button.type = "button";
    button.dataset.caseId = c.id;
    if (state.open?.id === c.id) button.setAttribute("aria-current", "true");

    const line1 = el("span", "row-line");
    // "risk," is for screen readers: "None English" alone would be a puzzle.
    line1.append(riskBadge(c.risk), el("span", "visually-hidden", " risk, "),
      el("span", "row-language", c.language_name || c.language || "Unknown language"));
    if (c.interpreter_needed) line1.append(el("span", "badge flag", "interpreter"));
    if (c.minor) line1.append(el("span", "badge flag", "minor"));
    if (c.training) line1.append(el("span", "badge muted-badge", "training"));
    const who = c.status === "held" || c.status === "returned"
      ? ` · ${c.assigned_to === state.me?.username ? "you" : (c.assigned_to || "nobody")}` : "";
    const line2 = el("span", "row-line row-sub");
    const wait = el("span", "row-wait");
    wait.dataset.waitingSeconds = String(Number(c.waiting_seconds) || 0);
    line2.append(`${CHANNEL_LABELS[c.channel] ?? c.channel} · ${STATUS_LABELS[c.status] ?? c.status}${who}`,
      el("span", "visually-hidden", ", time in queue: "), wait);
    button.append(line1, line2);
    const labels = (c.indicators ?? []).map((i) => i.label).filter(Boolean);
    if (labels.length) button.append(el("span", "row-line row-indicators", labels.join(", ")));
    updateWait(wait, state.queueAt);
    button.addEventListener("click", () => openCase(c.id));
    li.append(button);
    return li;
  }

  function updateWait(node, since) {
    const seconds = Number(node.dataset.waitingSeconds) + (Date.now() - since) / 1000;
    node.textContent = formatWait(seconds);
  }

  /** j/k move through the queue and o opens, unless the agent is typing somewhere. */
  document.addEventListener("keydown", (event) => {
    if (!state.me || event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    const t = event.target;
    if (t instanceof HTMLElement && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
    if (!["j", "k", "o"].includes(event.key)) return;
    const rows = [...ui.queue.querySelectorAll(".queue-row")];
    if (!rows.length) return;
    const index = rows.indexOf(document.activeElement);
    event.preventDefault();
    if (event.key === "o") { (rows[index] ?? rows[0]).click(); return; }
    const next = index < 0 ? 0 : Math.max(0, Math.min(rows.length - 1, index + (event.key === "j" ? 1 : -1)));
    rows[next].focus();
  });

  // ---- the open case ----

  async function openCase(id) {
    const token = ++state.openToken;
    try {
      const c = await api(casePath(id));
      if (token !== state.openToken || !state.me) return;
      showCase(c, { fresh: true });
      ui.caseTitle.focus();
      if (id === state.alertCaseId) clearAlert();
      loadChoices();
    } catch (err) {
      if (token === state.openToken) reportError(err);
    }
  }

  /**
   * Shows a case, or merges an update into the open one: fields the update leaves out (the
   * transcript or notes of a live "case" message) are kept, and so is whatever the agent typed.
   */
  function showCase(update, { fresh = false } = {}) {
    const switching = !state.open || state.open.id !== update.id;
    if (switching) saveDraft();
    const merged = switching || fresh ? { ...update } : { ...state.open, ...update };
    if ("window_remaining" in update || switching) state.windowAt = Date.now();
    if ("waiting_seconds" in update || switching) state.openAt = Date.now();
    state.open = merged;
    if (switching) {
      ui.replyText.value = state.drafts.get(merged.id) ?? "";
      for (const field of [ui.noteText, ui.handbackNote, ui.closeNote]) field.value = "";
      ui.handbackForm.querySelectorAll("input[type=checkbox]").forEach((box) => { box.checked = false; });
      ui.closeOutcome.value = "";
      ui.transferTo.value = "";
      updateSegments();
    }
    ui.caseEmpty.hidden = true;
    ui.caseBody.hidden = false;
    ui.caseTitle.textContent = `Case: ${merged.language_name || merged.language || "unknown language"} · ${CHANNEL_LABELS[merged.channel] ?? merged.channel}`;
    ui.case.dataset.caseId = merged.id;
    renderSummary(merged);
    renderIndicators(merged);
    if (switching || fresh || "transcript" in update) renderTranscript(merged);
    renderNotes(merged);
    renderActions(merged);
    ui.queue.querySelectorAll(".queue-row").forEach((row) => {
      if (row.dataset.caseId === merged.id) row.setAttribute("aria-current", "true");
      else row.removeAttribute("aria-current");
    });
  }

  function saveDraft() {
    if (!state.open) return;
    if (ui.replyText.value) state.drafts.set(state.open.id, ui.replyText.value);
    else state.drafts.delete(state.open.id);
  }

  function closeCaseView() {
    state.open = null;
    state.openToken += 1;
    ui.caseBody.hidden = true;
    ui.caseEmpty.hidden = false;
    ui.take.hidden = true;
    ui.holdState.textContent = "";
    ui.caseTitle.textContent = "No case open";
    for (const list of [ui.caseSummary, ui.indicators, ui.transcript, ui.notes]) list.replaceChildren();
  }

  /** Adds a dt/dd pair; `value` is text or a node, `tone` colours answers that need attention. */
  function addRow(dl, term, value, tone = "") {
    const dd = el("dd", tone ? `tone-${tone}` : "");
    if (value instanceof Node) dd.append(value); else dd.textContent = String(value);
    dl.append(el("dt", null, term), dd);
    return dd;
  }

  function renderSummary(c) {
    const dl = ui.caseSummary;
    dl.replaceChildren();
    const safety = c.safety ?? {};
    const consent = c.consent ?? {};
    const risk = el("span", "inline");
    risk.append(riskBadge(c.risk));
    if (c.training) risk.append(el("span", "badge muted-badge", "Training case"));
    addRow(dl, "Risk", risk);
    addRow(dl, "Imminent danger", c.imminent ? "Yes: act now" : "No", c.imminent ? "danger" : "");
    const waited = addRow(dl, "Waiting", "");
    waited.id = "case-wait";
    updateCaseWait();
    const language = el("span", "inline", c.language_name || c.language || "Unknown");
    if (c.interpreter_needed) language.append(el("span", "badge flag", "Interpreter needed"));
    addRow(dl, "Language", language);
    addRow(dl, "Channel", CHANNEL_LABELS[c.channel] ?? c.channel);
    const age = c.minor ? `Minor${c.age != null ? `, ${c.age}` : ""}` : (c.age != null ? String(c.age) : "Not known");
    addRow(dl, "Age", age, c.minor ? "warn" : "");
    addRow(dl, "About", c.third_party ? "Someone else: the texter writes about another person" : "Themself",
      c.third_party ? "warn" : "");
    addRow(dl, "Safe now", answerLabel(safety.safe_now), safety.safe_now === "no" ? "danger" : "");
    addRow(dl, "Can text freely", answerLabel(safety.can_text_freely), safety.can_text_freely === "no" ? "warn" : "");
    addRow(dl, "Phone may be read", answerLabel(safety.phone_may_be_read), safety.phone_may_be_read === "yes" ? "warn" : "");
    addRow(dl, "Agreed to talk to an agent", consentLabel(consent.handoff));
    addRow(dl, "Agreed to be contacted later", consentLabel(consent.contact_back),
      consent.contact_back === false ? "warn" : "");
    addRow(dl, "Told an agent is coming", c.told_waiting ? "Yes" : "Not yet");
    const started = timeEl(c.created_at);
    if (started) addRow(dl, "Started", started);
    if (c.outcome) addRow(dl, "Outcome", [...ui.closeOutcome.options].find((o) => o.value === c.outcome)?.textContent ?? c.outcome);
    ui.monitorWarning.hidden = !(c.may_be_monitored || safety.phone_may_be_read === "yes");
  }

  function updateCaseWait() {
    const node = document.getElementById("case-wait");
    if (!node || !state.open) return;
    node.dataset.waitingSeconds = String(Number(state.open.waiting_seconds) || 0);
    updateWait(node, state.openAt);
  }

  /** Danger now comes first, as an item of its own: the words that made the case imminent. */
  function renderIndicators(c) {
    const danger = (c.danger ?? []).length ? [{ id: "danger", label: "Danger now", evidence: c.danger }] : [];
    const items = [...danger, ...(Array.isArray(c.indicators) ? c.indicators : [])];
    ui.indicators.replaceChildren(...items.map((ind) => {
      const li = el("li", ind.id === "danger" ? "indicator indicator-danger" : "indicator");
      li.append(el("strong", null, ind.label || ind.id));
      for (const ev of ind.evidence ?? []) {
        const quote = el("q", "evidence", ev.text);
        quote.dir = "auto";
        const line = el("span", "evidence-line");
        line.append(quote);
        if (ev.question) line.append(el("span", "help-inline", ` (answering the “${ev.question}” question)`));
        li.append(line);
      }
      return li;
    }));
    ui.indicatorsEmpty.hidden = items.length > 0;
  }

  function evidenceOf(c) {
    const danger = (c.danger ?? []).map((e) => e.text);
    return danger.concat((c.indicators ?? []).flatMap((i) => (i.evidence ?? []).map((e) => e.text)));
  }

  function transcriptEntry(entry, evidence) {
    const from = WHO_LABELS[entry.from] ? entry.from : "texter";
    const li = el("li", `entry from-${from}`);
    const meta = el("p", "entry-meta");
    meta.append(el("strong", null, WHO_LABELS[from]));
    const when = timeEl(entry.at);
    if (when) meta.append(" · ", when);
    const text = el("p", "entry-text");
    text.dir = "auto"; // Arabic and other right-to-left texts read right-to-left
    if (/^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$/.test(entry.language ?? "")) text.lang = entry.language;
    const pieces = from === "texter" ? highlightPieces(entry.text, evidence) : [{ text: String(entry.text ?? ""), mark: false }];
    for (const piece of pieces) text.append(piece.mark ? el("mark", null, piece.text) : document.createTextNode(piece.text));
    li.append(meta, text);
    return li;
  }

  /** A full redraw must not be read out line by line: the live region is muted meanwhile. */
  function renderTranscript(c) {
    ui.transcript.setAttribute("aria-live", "off");
    const evidence = evidenceOf(c);
    ui.transcript.replaceChildren(...(c.transcript ?? []).map((e) => transcriptEntry(e, evidence)));
    ui.transcript.scrollTop = ui.transcript.scrollHeight;
    setTimeout(() => ui.transcript.setAttribute("aria-live", "polite"), 300);
  }

  function appendEntry(entry) {
    const list = ui.transcript;
    const stick = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
    state.open.transcript = [...(state.open.transcript ?? []), entry];
    list.append(transcriptEntry(entry, evidenceOf(state.open)));
    if (stick || entry.from === "agent") list.scrollTop = list.scrollHeight;
  }

  /** A texter message arriving live; it also reopens the WhatsApp 24 h window. */
  function onLiveEntry(caseId, entry) {
    if (!state.open || caseId !== state.open.id || !entry) return;
    appendEntry(entry);
    if (state.open.channel === "whatsapp" && entry.from === "texter") {
      state.open.window_remaining = 24 * 3600;
      state.windowAt = Date.now();
      updateWindow();
    }
  }

  function renderNotes(c) {
    const notes = Array.isArray(c.notes) ? c.notes : [];
    ui.notes.replaceChildren(...notes.map((n) => {
      const li = el("li", "note");
      const meta = el("p", "entry-meta");
      meta.append(el("strong", null, n.by || "?"));
      const when = timeEl(n.at);
      if (when) meta.append(" · ", when);
      const text = el("p", "entry-text", n.text);
      text.dir = "auto";
      li.append(meta, text);
      return li;
    }));
    ui.notesEmpty.hidden = notes.length > 0;
  }

  // ---- actions ----

  const heldByMe = (c) => c.status === "held" && c.assigned_to === state.me?.username;

  /** Shows only the actions this agent may take now; the forms keep what was typed in them. */
  function renderActions(c) {
    const mine = heldByMe(c);
    const open = c.status !== "closed";
    // The agent who held the case stays responsible for it after handing it back, until closed.
    const lead = c.assigned_to === state.me?.username || state.me?.role === "supervisor";
    ui.take.hidden = !(c.status === "waiting" || c.status === "returned");
    ui.replyForm.hidden = !mine;
    ui.handbackForm.hidden = !mine;
    ui.transferForm.hidden = !(open && lead);
    ui.closeForm.hidden = !(open && lead);
    ui.holdState.textContent = mine ? "You hold this case: the bot is paused."
      : c.status === "held" ? `Held by ${c.assigned_to || "another agent"}.`
      : c.status === "returned" ? "Returned to the bot."
      : c.status === "closed" ? "Closed." : "Waiting for an agent.";
    updateWindow();
  }

  /** Seconds left in the WhatsApp 24 h window, counted down client-side; null for SMS. */
  function windowLeft() {
    const c = state.open;
    if (!c || c.window_remaining === null || c.window_remaining === undefined) return null;
    return Math.max(0, Number(c.window_remaining) - (Date.now() - state.windowAt) / 1000);
  }

  function updateWindow() {
    const left = windowLeft();
    const closed = left !== null && left <= 0;
    ui.send.disabled = closed;
    ui.windowNote.hidden = left === null || left >= 2 * 3600;
    ui.windowNote.textContent = closed
      ? "WhatsApp replies are not possible: the 24-hour window closed because the texter has not written for 24 hours. Hand back or close the case."
      : `WhatsApp window: ${formatWait(left).replace("under 1 min", "less than a minute")} left to reply (it reopens when the texter writes).`;
    ui.windowNote.classList.toggle("danger", closed);
  }

  ui.take.addEventListener("click", async () => {
    const c = state.open;
    if (!c) return;
    try {
      showCase(await api(casePath(c.id, "take"), { method: "POST" }));
      setStatus("You hold this case now. The bot is paused for this conversation.");
      ui.replyText.focus();
    } catch (err) { reportError(err); }
  });

  // Segment counter: asks the hub (it knows GSM-7 vs UCS-2) after a short pause in typing.
  let segmentsTimer = null;
  let segmentsSeq = 0;
  ui.replyText.addEventListener("input", () => {
    clearTimeout(segmentsTimer);
    segmentsTimer = setTimeout(updateSegments, SEGMENTS_DEBOUNCE_MS);
  });

  async function updateSegments() {
    const text = ui.replyText.value;
    const seq = ++segmentsSeq;
    if (!text) { showSegments({ segments: 0, encoding: "GSM-7", characters: 0 }); return; }
    try {
      const info = await api("/api/segments", { method: "POST", body: { text } });
      if (seq === segmentsSeq && info) showSegments(info);
    } catch {
      if (seq === segmentsSeq) showSegments(null, text.length);
    }
  }

  function showSegments(info, length = 0) {
    let line = info ? segmentsText(info) : `${length} characters (segment count unavailable)`;
    const characters = info ? Number(info.characters) : length;
    const long = info && info.segments > 2;
    if (characters > MAX_REPLY_CHARS) line += ` · over the ${MAX_REPLY_CHARS.toLocaleString("en")}-character limit`;
    else if (long) line += " · long: it arrives in several parts, harder to read discreetly";
    ui.segments.textContent = line;
    ui.segments.classList.toggle("warn", Boolean(long) || characters > MAX_REPLY_CHARS);
  }

  ui.replyText.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !event.isComposing) {
      event.preventDefault();
      sendReply();
    }
  });
  ui.replyForm.addEventListener("submit", (event) => { event.preventDefault(); sendReply(); });

  async function sendReply() {
    const c = state.open;
    const text = ui.replyText.value;
    if (!c || state.sending || ui.send.disabled) return;
    if (!text.trim()) { setStatus("Type a reply first.", "error"); ui.replyText.focus(); return; }
    if (text.length > MAX_REPLY_CHARS) { setStatus(`Replies are limited to ${MAX_REPLY_CHARS.toLocaleString("en")} characters.`, "error"); return; }
    state.sending = true;
    ui.send.setAttribute("aria-disabled", "true");
    ui.send.textContent = "Sending…";
    try {
      const result = await api(casePath(c.id, "reply"), { method: "POST", body: { text } });
      if (state.open?.id === c.id) {
        appendEntry({ from: "agent", text, at: new Date().toISOString() });
        ui.replyText.value = "";
        updateSegments();
      }
      state.drafts.delete(c.id);
      const parts = result?.segments ? ` (${result.segments} ${result.segments === 1 ? "segment" : "segments"})` : "";
      setStatus(`Reply sent${parts}.`);
    } catch (err) {
      reportError(err); // the text stays in the box
    } finally {
      state.sending = false;
      ui.send.removeAttribute("aria-disabled");
      ui.send.textContent = "Send";
    }
  }

  ui.noteForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const c = state.open;
    const text = ui.noteText.value.trim();
    if (!c) return;
    if (!text) { setStatus("Type the note first.", "error"); ui.noteText.focus(); return; }
    try {
      const note = await api(casePath(c.id, "notes"), { method: "POST", body: { text } });
      if (state.open?.id !== c.id) return;
      state.open.notes = [...(state.open.notes ?? []), note ?? { by: state.me.username, text, at: new Date().toISOString() }];
      renderNotes(state.open);
      ui.noteText.value = "";
      setStatus("Note added.");
    } catch (err) { reportError(err); }
  });

  /** Runs a case action and shows the case it returns, with one plain status line. */
  async function caseAction(action, body, message) {
    const c = state.open;
    if (!c) return false;
    try {
      const updated = await api(casePath(c.id, action), { method: "POST", body });
      if (updated && state.open?.id === c.id) showCase(updated);
      setStatus(message);
      return true;
    } catch (err) { reportError(err); return false; }
  }

  ui.transferForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const to = ui.transferTo.value;
    if (!to) { setStatus("Choose who to transfer the case to.", "error"); ui.transferTo.focus(); return; }
    if (await caseAction("transfer", { to }, `Case transferred to ${to}.`)) ui.transferTo.value = "";
  });

  ui.handbackForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const covered = [...ui.handbackForm.querySelectorAll("input[name=covered]:checked")].map((b) => b.value);
    const said = covered.length ? ` It knows you covered ${covered.map((k) => COVERED_LABELS[k] ?? k).join(", ")}.` : "";
    if (await caseAction("handback", { note: ui.handbackNote.value.trim(), covered }, `Handed back to the bot.${said}`)) {
      ui.handbackNote.value = "";
      ui.handbackForm.querySelectorAll("input[name=covered]").forEach((box) => { box.checked = false; });
    }
  });

  ui.closeForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const outcome = ui.closeOutcome.value;
    if (!outcome) { setStatus("Choose an outcome before closing the case.", "error"); ui.closeOutcome.focus(); return; }
    const body = { outcome };
    const note = ui.closeNote.value.trim();
    if (note) body.note = note;
    const label = ui.closeOutcome.selectedOptions[0]?.textContent ?? outcome;
    if (await caseAction("close", body, `Case closed: ${label}.`)) ui.closeNote.value = "";
  });

  // ---- clock and start ----

  setInterval(() => {
    ui.queue.querySelectorAll(".row-wait").forEach((node) => updateWait(node, state.queueAt));
    updateCaseWait();
    if (state.open) updateWindow();
  }, CLOCK_MS);

  api("/api/me").then(enterApp, (err) => {
    showLogin(err.status === 401 ? "" : err.message);
  });
}

if (typeof document !== "undefined") {
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
}
