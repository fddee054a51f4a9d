// Texter simulator: a phone-like chat against the local Twilio stand-in's /emulator API.
// Plain ES module, no dependencies. Every piece of message text reaches the DOM through
// textContent (or a validated href/src), never through innerHTML: texts are untrusted.

// ---------------------------------------------------------------------------------------
// SMS length and segments (GSM 03.38)
// ---------------------------------------------------------------------------------------

// The GSM 7-bit default alphabet (127 characters: the 128 code points minus ESC).
export const GSM_BASIC =
  "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
  "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
// The default extension table: each of these takes 2 septets (ESC + code).
export const GSM_EXTENSION = "\f^{}\\[~]|€";

const BASIC = new Set(GSM_BASIC);
const EXTENSION = new Set(GSM_EXTENSION);

const LIMITS = {
  "GSM-7": { single: 160, multi: 153 },
  "UCS-2": { single: 70, multi: 67 },
};

/**
 * How a phone would count `text` as an SMS.
 * GSM-7 when every character is in the default alphabet or its extension table (extension
 * characters count 2); otherwise UCS-2, counted in UTF-16 code units (so most emoji count 2).
 * Multipart messages lose room to the concatenation header (153 / 67 per segment), and an
 * escape pair or a surrogate pair is never split across two segments.
 */
export function smsInfo(text) {
  const chars = Array.from(String(text ?? ""));
  let firstNonGsm = null;
  for (const ch of chars) {
    if (!BASIC.has(ch) && !EXTENSION.has(ch)) { firstNonGsm = ch; break; }
  }
  const encoding = firstNonGsm === null ? "GSM-7" : "UCS-2";
  const sizes = chars.map((ch) =>
    encoding === "GSM-7" ? (EXTENSION.has(ch) ? 2 : 1) : ch.length);
  const units = sizes.reduce((a, b) => a + b, 0);
  const { single, multi } = LIMITS[encoding];

  let segments;
  if (units === 0) segments = 0;
  else if (units <= single) segments = 1;
  else {
    segments = 1;
    let used = 0;
    for (const size of sizes) {
      if (used + size > multi) { segments += 1; used = 0; }
      used += size;
    }
  }
  const limit = segments <= 1 ? single : segments * multi;
  return { encoding, units, segments, limit, single, multi, firstNonGsm };
}

/** The counter line, e.g. "42/160 · 1 segment · GSM-7" or "12/70 · 1 segment · Unicode (’)". */
export function counterText(text, channel = "sms") {
  const info = smsInfo(text);
  const plural = info.segments === 1 ? "segment" : "segments";
  let label = info.encoding === "GSM-7" ? "GSM-7" : "Unicode";
  if (info.firstNonGsm !== null) label += ` (${visibleChar(info.firstNonGsm)})`;
  let line = `${info.units}/${info.limit} · ${info.segments} ${plural} · ${label}`;
  const length = String(text ?? "").length;
  if (channel === "whatsapp") line += " · WhatsApp sends it as one message";
  else if (length > 1600) line += " · over Twilio's 1600-character limit";
  return line;
}

function visibleChar(ch) {
  if (/\s/u.test(ch) || /\p{C}/u.test(ch)) {
    return "U+" + ch.codePointAt(0).toString(16).toUpperCase().padStart(4, "0");
  }
  return ch;
}

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

/** "+1 (514) 555-0100" or "514 555 0100" -> "+15145550100"; null when it is not E.164. */
export function normalizeNumber(raw) {
  let s = String(raw ?? "").trim().replace(/^whatsapp:/i, "").replace(/[\s().\-\u00a0]/g, "");
  if (/^00\d/.test(s)) s = "+" + s.slice(2);
  if (/^\d{10}$/.test(s)) s = "+1" + s; // a bare North American number
  return /^\+[1-9]\d{6,14}$/.test(s) ? s : null;
}

export function randomTestNumber() {
  const n = Math.floor(Math.random() * 100);
  return "+1514555" + "01" + String(n).padStart(2, "0");
}

export function addressFor(number, channel) {
  return channel === "whatsapp" ? `whatsapp:${number}` : number;
}

export function numberOf(address) {
  return String(address).replace(/^whatsapp:/i, "");
}

/** "+15145550100" -> "+1 514 555 0100"; other numbers unchanged. */
export function formatNumber(number) {
  const m = /^\+1(\d{3})(\d{3})(\d{4})$/.exec(number);
  return m ? `+1 ${m[1]} ${m[2]} ${m[3]}` : number;
}

/** Only http(s) URLs ever become a link or an image (no javascript:, data: ...). */
export function safeHttpUrl(raw) {
  try {
    const url = new URL(String(raw));
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

const STATUS_LABELS = {
  accepted: "Accepted",
  queued: "Queued",
  sending: "Sending",
  sent: "Sent",
  delivered: "Delivered",
  read: "Read",
  received: "Received",
  failed: "Failed",
  undelivered: "Not delivered",
};
// Statuses that will not change any more (others are re-polled until they do).
const FINAL_STATUSES = new Set(["delivered", "read", "received", "failed", "undelivered"]);

function statusLabel(status) {
  if (!status) return "";
  return STATUS_LABELS[status] ?? String(status);
}

function formatTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const now = new Date();
  const sameDay = d.toDateString() === now.toDateString();
  const opts = sameDay
    ? { hour: "2-digit", minute: "2-digit" }
    : { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" };
  return new Intl.DateTimeFormat(undefined, opts).format(d);
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

class ApiError extends Error {}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, {
      cache: "no-store",
      headers: { Accept: "application/json", ...(options.body ? { "Content-Type": "application/json" } : {}) },
      ...options,
    });
  } catch {
    throw new ApiError(`Cannot reach the local Twilio stand-in at ${location.origin}. Is it running?`);
  }
  let data = null;
  const raw = await response.text();
  if (raw) {
    try { data = JSON.parse(raw); } catch { data = null; }
  }
  if (!response.ok) {
    let message = data && typeof data === "object" && data.message ? String(data.message) : "";
    if (data && typeof data === "object" && data.code) message += ` (code ${data.code})`;
    if (!message) message = raw && raw.length < 300 && !/^\s*</.test(raw) ? raw.trim() : response.statusText;
    throw new ApiError(`Error ${response.status}: ${message || "request failed"}`);
  }
  return data;
}

// ---------------------------------------------------------------------------------------
// The page
// ---------------------------------------------------------------------------------------

const POLL_MS = 1000;
const HIDDEN_POLL_MS = 5000;

function start() {
  const $ = (id) => document.getElementById(id);
  const ui = {
    newForm: $("new-texter"),
    newNumber: $("new-number"),
    newChannel: $("new-channel"),
    newThread: $("new-thread"),
    threads: $("threads"),
    threadsEmpty: $("threads-empty"),
    phone: $("phone"),
    title: $("thread-title"),
    sub: $("thread-sub"),
    optedOut: $("opted-out-note"),
    messages: $("messages"),
    composeForm: $("compose-form"),
    compose: $("compose"),
    send: $("send"),
    counter: $("counter"),
    mediaUrl: $("media-url"),
    error: $("error"),
    announcer: $("announcer"),
  };

  const state = {
    serverThreads: [], // from GET /emulator/threads
    localThreads: [], // started here, no message yet: {address, channel, last_at, opted_out, local}
    selected: null, // address
    generation: 0, // bumps on thread switch, so late answers for the old thread are dropped
    messages: new Map(), // seq -> message, for the selected thread
    lastSeq: 0,
    loaded: false, // first load of the selected thread done (history is not announced)
    seenAt: new Map(), // address -> last_at already seen, for the "new" marker
    threadsKnown: false,
    sending: false,
    errorSource: null, // "poll" | "send" | "form"
    threadsSignature: "",
    drafts: new Map(), // address -> {body, mediaUrl} not sent yet, kept per conversation
  };

  // ---- errors and announcements ----

  function showError(message, source, kind = "error") {
    state.errorSource = source;
    ui.error.classList.toggle("warning", kind === "warning");
    // Rewriting the same text would make screen readers repeat it on every poll.
    if (ui.error.textContent !== message) ui.error.textContent = message;
    ui.error.hidden = false;
  }

  function clearError(source) {
    if (source && state.errorSource !== source) return;
    state.errorSource = null;
    ui.error.textContent = "";
    ui.error.hidden = true;
  }

  let announceTimer = null;
  function announce(text) {
    // Clear first so that the same text twice is still read out.
    ui.announcer.textContent = "";
    clearTimeout(announceTimer);
    announceTimer = setTimeout(() => { ui.announcer.textContent = text; }, 50);
  }

  // ---- threads ----

  function allThreads() {
    const serverAddresses = new Set(state.serverThreads.map((t) => t.address));
    state.localThreads = state.localThreads.filter((t) => !serverAddresses.has(t.address));
    const sorted = [...state.serverThreads].sort((a, b) =>
      String(b.last_at ?? "").localeCompare(String(a.last_at ?? "")));
    return [...state.localThreads, ...sorted];
  }

  function threadByAddress(address) {
    return allThreads().find((t) => t.address === address) ?? null;
  }

  function channelOf(thread) {
    if (thread?.channel === "whatsapp" || /^whatsapp:/i.test(thread?.address ?? "")) return "whatsapp";
    return "sms";
  }

  function isUnseen(thread) {
    if (thread.address === state.selected || thread.local) return false;
    const seen = state.seenAt.get(thread.address);
    return Boolean(thread.last_at) && (seen === undefined || String(thread.last_at) > seen);
  }

  function renderThreads() {
    const threads = allThreads();
    const signature = JSON.stringify([state.selected, threads.map((t) =>
      [t.address, channelOf(t), t.opted_out, t.local, isUnseen(t)])]);
    if (signature === state.threadsSignature) return;
    state.threadsSignature = signature;

    const focusedAddress = ui.threads.contains(document.activeElement)
      ? document.activeElement.dataset.address : null;
    ui.threads.replaceChildren();
    for (const thread of threads) {
      const channel = channelOf(thread);
      const li = el("li", "thread-item");
      const button = el("button", `thread channel-${channel}`);
      button.type = "button";
      button.dataset.address = thread.address;
      button.dataset.channel = channel;
      if (thread.address === state.selected) button.setAttribute("aria-current", "true");

      const number = el("span", "thread-number", formatNumber(numberOf(thread.address)));
      number.dir = "ltr";
      const badges = el("span", "badges");
      badges.append(el("span", `badge badge-${channel}`, channel === "whatsapp" ? "WhatsApp" : "SMS"));
      if (thread.opted_out) badges.append(el("span", "badge badge-opted-out", "Opted out"));
      if (thread.local) badges.append(el("span", "badge badge-draft", "No messages yet"));
      if (isUnseen(thread)) badges.append(el("span", "badge badge-new", "New"));
      button.append(number, badges);
      button.addEventListener("click", () => selectThread(thread.address, channel));
      li.append(button);
      ui.threads.append(li);
    }
    ui.threadsEmpty.hidden = threads.length > 0;
    if (focusedAddress) {
      const again = [...ui.threads.querySelectorAll("button")]
        .find((b) => b.dataset.address === focusedAddress);
      again?.focus();
    }
  }

  // Arrow keys move between conversations (Up/Down, or Left/Right when shown as a row).
  const NEXT_KEYS = new Set(["ArrowDown", "ArrowRight"]);
  const PREV_KEYS = new Set(["ArrowUp", "ArrowLeft"]);
  ui.threads.addEventListener("keydown", (event) => {
    if (!NEXT_KEYS.has(event.key) && !PREV_KEYS.has(event.key)) return;
    const buttons = [...ui.threads.querySelectorAll("button")];
    const index = buttons.indexOf(document.activeElement);
    if (index < 0) return;
    event.preventDefault();
    const next = buttons[Math.max(0, Math.min(buttons.length - 1, index + (event.key === "ArrowDown" ? 1 : -1)))];
    next.focus();
    next.scrollIntoView({ block: "nearest", inline: "nearest" });
  });

  function renderHeader() {
    const thread = state.selected ? threadByAddress(state.selected) : null;
    const channel = thread ? channelOf(thread) : (ui.newChannel.value === "whatsapp" ? "whatsapp" : "sms");
    ui.phone.classList.toggle("channel-whatsapp", channel === "whatsapp");
    ui.phone.classList.toggle("channel-sms", channel !== "whatsapp");
    ui.phone.dataset.channel = channel;
    if (thread) {
      ui.title.textContent = formatNumber(numberOf(thread.address));
      ui.sub.textContent = channel === "whatsapp"
        ? "WhatsApp · you are this texter" : "SMS · you are this texter";
      ui.optedOut.hidden = !thread.opted_out;
      ui.compose.placeholder = channel === "whatsapp" ? "Message" : "Text message";
    } else {
      ui.title.textContent = "No conversation selected";
      ui.sub.textContent = "Pick a conversation, or type to start one from the New texter number.";
      ui.optedOut.hidden = true;
      ui.compose.placeholder = "Text message";
    }
    updateCounter();
  }

  async function refreshThreads() {
    const data = await api("/emulator/threads");
    state.serverThreads = Array.isArray(data)
      ? data.filter((t) => t && typeof t.address === "string") : [];
    for (const t of state.serverThreads) {
      // Threads that exist when the page opens are not "new".
      if (!state.threadsKnown && t.last_at) state.seenAt.set(t.address, String(t.last_at));
    }
    state.threadsKnown = true;
    if (state.selected) {
      const current = threadByAddress(state.selected);
      if (current?.last_at) state.seenAt.set(state.selected, String(current.last_at));
    }
    renderThreads();
    renderHeader();
  }

  function selectThread(address, channel, { focusCompose = false } = {}) {
    if (!threadByAddress(address)) {
      state.localThreads.unshift({ address, channel, last_at: null, opted_out: false, local: true });
    }
    if (state.selected !== address) {
      // A draft belongs to its conversation: never carry it over to (and send it as) another
      // texter. Text typed before any conversation was open goes to the first one.
      if (state.selected) {
        if (ui.compose.value || ui.mediaUrl.value) {
          state.drafts.set(state.selected, { body: ui.compose.value, mediaUrl: ui.mediaUrl.value });
        } else {
          state.drafts.delete(state.selected);
        }
        const draft = state.drafts.get(address);
        ui.compose.value = draft?.body ?? "";
        ui.mediaUrl.value = draft?.mediaUrl ?? "";
        ui.mediaUrl.removeAttribute("aria-invalid");
        autoGrow();
      }
      state.selected = address;
      state.generation += 1;
      state.messages.clear();
      state.lastSeq = 0;
      state.loaded = false;
      ui.messages.replaceChildren();
      clearError("send");
      history.replaceState(null, "", "#thread=" + encodeURIComponent(address));
    }
    const thread = threadByAddress(address);
    if (thread?.last_at) state.seenAt.set(address, String(thread.last_at));
    renderThreads();
    renderHeader();
    if (focusCompose) ui.compose.focus();
    pollNow();
  }

  /** Starts (or reopens) the thread for the New texter fields; returns its address or null. */
  function startFromForm() {
    const number = normalizeNumber(ui.newNumber.value);
    if (!number) {
      showError("Enter the texter's number in international format, e.g. +1 514 555 0123.", "form");
      ui.newNumber.setAttribute("aria-invalid", "true");
      ui.newNumber.focus();
      return null;
    }
    ui.newNumber.removeAttribute("aria-invalid");
    clearError("form");
    const channel = ui.newChannel.value === "whatsapp" ? "whatsapp" : "sms";
    const address = addressFor(number, channel);
    selectThread(address, channel, { focusCompose: true });
    ui.newNumber.value = randomTestNumber(); // ready for the next texter
    return address;
  }

  ui.newForm.addEventListener("submit", (event) => {
    event.preventDefault();
    startFromForm();
  });
  ui.newChannel.addEventListener("change", () => { if (!state.selected) renderHeader(); });

  // ---- messages ----

  function nearBottom() {
    const m = ui.messages;
    return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
  }

  function fillBubble(li, msg) {
    const outgoing = msg.direction === "out"; // hotline -> texter
    li.className = `msg ${outgoing ? "out" : "in"}`;
    li.dataset.seq = String(msg.seq);
    li.dataset.status = String(msg.status ?? "");
    li.replaceChildren();

    li.append(el("span", "visually-hidden", outgoing ? "Hotline:" : "You:"));
    const body = String(msg.body ?? "");
    if (body) {
      const text = el("p", "msg-body", body);
      text.dir = "auto";
      li.append(text);
    }
    const media = Array.isArray(msg.media) ? msg.media : [];
    media.forEach((raw, i) => {
      const url = safeHttpUrl(raw);
      const figure = el("div", "msg-media");
      if (url) {
        const img = document.createElement("img");
        img.alt = `Attached photo ${i + 1}`;
        img.loading = "lazy";
        img.decoding = "async";
        img.referrerPolicy = "no-referrer";
        img.addEventListener("error", () => img.remove(), { once: true });
        img.src = url;
        const link = el("a", "msg-media-link", url);
        link.href = url;
        link.target = "_blank";
        link.rel = "noopener noreferrer";
        link.dir = "ltr";
        figure.append(img, link);
      } else {
        figure.append(el("span", "msg-media-link", `Attachment (not a web link): ${String(raw)}`));
      }
      li.append(figure);
    });

    const meta = el("p", "msg-meta");
    const time = el("time", null, formatTime(msg.date_created));
    if (msg.date_created) time.dateTime = String(msg.date_created);
    meta.append(time);
    const status = statusLabel(msg.status);
    if (status) {
      meta.append(el("span", "sep", " · "));
      meta.append(el("span", `msg-status status-${String(msg.status).replace(/[^a-z]/gi, "")}`, status));
    }
    li.append(meta);
  }

  function applyMessages(list, generation) {
    if (generation !== state.generation || !Array.isArray(list)) return;
    const stick = nearBottom();
    const announced = [];
    let addedOwn = false;
    const sorted = list.filter((m) => m && Number.isFinite(Number(m.seq)))
      .sort((a, b) => Number(a.seq) - Number(b.seq));
    for (const msg of sorted) {
      const seq = Number(msg.seq);
      const existing = state.messages.get(seq);
      if (existing) {
        if (existing.status !== msg.status || existing.body !== msg.body) {
          const li = ui.messages.querySelector(`li[data-seq="${seq}"]`);
          if (li) fillBubble(li, msg);
          state.messages.set(seq, msg);
        }
        continue;
      }
      state.messages.set(seq, msg);
      const li = document.createElement("li");
      fillBubble(li, msg);
      // Keep seq order even if an older message arrives late.
      const after = [...ui.messages.children].find((c) => Number(c.dataset.seq) > seq);
      ui.messages.insertBefore(li, after ?? null);
      state.lastSeq = Math.max(state.lastSeq, seq);
      if (state.loaded && msg.direction === "out") {
        const photos = Array.isArray(msg.media) && msg.media.length
          ? ` (${msg.media.length} photo${msg.media.length > 1 ? "s" : ""})` : "";
        announced.push(`${String(msg.body ?? "")}${photos}`);
      }
      if (msg.direction === "in") addedOwn = true;
    }
    if (announced.length) announce(`New message from the hotline: ${announced.join(" … ")}`);
    if (!state.loaded || stick || addedOwn) ui.messages.scrollTop = ui.messages.scrollHeight;
    state.loaded = true;
  }

  /** Re-fetch from the oldest message whose status may still change, else from the newest. */
  function afterSeq() {
    let after = state.lastSeq;
    for (const [seq, msg] of state.messages) {
      if (!FINAL_STATUSES.has(msg.status) && seq - 1 < after) after = seq - 1;
    }
    return Math.max(0, after);
  }

  async function refreshThread() {
    const address = state.selected;
    if (!address || threadByAddress(address)?.local) {
      if (address) state.loaded = true;
      return;
    }
    const generation = state.generation;
    const list = await api(`/emulator/thread?address=${encodeURIComponent(address)}&after=${afterSeq()}`);
    applyMessages(list, generation);
  }

  // ---- polling ----

  let pollTimer = null;
  let polling = false;
  let pollAgain = false;

  async function poll() {
    if (polling) { pollAgain = true; return; }
    polling = true;
    clearTimeout(pollTimer);
    try {
      await refreshThreads();
      await refreshThread();
      clearError("poll");
    } catch (err) {
      showError(err instanceof ApiError ? `${err.message} Retrying…` : `Unexpected error: ${err}`, "poll");
    } finally {
      polling = false;
      if (pollAgain) { pollAgain = false; pollNow(); }
      else pollTimer = setTimeout(poll, document.hidden ? HIDDEN_POLL_MS : POLL_MS);
    }
  }

  function pollNow() {
    clearTimeout(pollTimer);
    poll();
  }

  document.addEventListener("visibilitychange", () => { if (!document.hidden) pollNow(); });

  // ---- composing and sending ----

  function currentChannel() {
    const thread = state.selected ? threadByAddress(state.selected) : null;
    return thread ? channelOf(thread) : (ui.newChannel.value === "whatsapp" ? "whatsapp" : "sms");
  }

  function updateCounter() {
    ui.counter.textContent = counterText(ui.compose.value, currentChannel());
    ui.counter.classList.toggle("over", smsInfo(ui.compose.value).segments > 1);
  }

  function autoGrow() {
    ui.compose.style.height = "auto";
    ui.compose.style.height = `${Math.min(ui.compose.scrollHeight + 2, 160)}px`;
  }

  ui.compose.addEventListener("input", () => { updateCounter(); autoGrow(); });

  ui.compose.addEventListener("keydown", (event) => {
    // Not while an input method is composing (Chinese, Korean, Thai keyboards...).
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) return;
    event.preventDefault();
    send();
  });

  ui.composeForm.addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });

  async function send() {
    if (state.sending) return;
    const body = ui.compose.value;
    const mediaRaw = ui.mediaUrl.value.trim();
    if (!body.trim() && !mediaRaw) {
      showError("Type a message (or add a photo URL) first.", "send");
      ui.compose.focus();
      return;
    }
    let mediaUrl = null;
    if (mediaRaw) {
      mediaUrl = safeHttpUrl(mediaRaw);
      if (!mediaUrl) {
        showError("The photo URL must start with http:// or https://.", "send");
        ui.mediaUrl.setAttribute("aria-invalid", "true");
        ui.mediaUrl.focus();
        return;
      }
    }
    ui.mediaUrl.removeAttribute("aria-invalid");

    let address = state.selected;
    if (!address) {
      address = startFromForm();
      if (!address) return;
    }
    const thread = threadByAddress(address);
    const channel = channelOf(thread ?? { address });
    const payload = { from: numberOf(address), channel, body };
    if (mediaUrl) payload.media_url = mediaUrl;

    state.sending = true;
    ui.send.setAttribute("aria-disabled", "true");
    ui.send.textContent = "Sending…";
    ui.composeForm.setAttribute("aria-busy", "true");
    try {
      const result = await api("/emulator/send", { method: "POST", body: JSON.stringify(payload) });
      clearError("send");
      clearError("form");
      if (state.selected === address) {
        ui.compose.value = "";
        ui.mediaUrl.value = "";
        updateCounter();
        autoGrow();
      }
      state.drafts.delete(address); // what was saved when switching away mid-send is now sent
      const hook = result && typeof result === "object" ? result.webhook_status : undefined;
      if (hook === 0) {
        showError("Sent, but the bot did not answer its webhook (is it running?): no reply will come.",
          "send", "warning");
      } else if (typeof hook === "number" && (hook < 200 || hook >= 300)) {
        showError(`Sent, but the bot's webhook answered ${hook}: the bot may not reply.`, "send", "warning");
      }
    } catch (err) {
      showError(err instanceof ApiError ? err.message : `Could not send: ${err}`, "send");
    } finally {
      state.sending = false;
      ui.send.removeAttribute("aria-disabled");
      ui.send.textContent = "Send";
      ui.composeForm.removeAttribute("aria-busy");
      pollNow();
    }
  }

  // ---- start ----

  ui.newNumber.value = randomTestNumber();
  updateCounter();
  const fromHash = /^#thread=(.+)$/.exec(location.hash);
  if (fromHash) {
    let address = null;
    try { address = decodeURIComponent(fromHash[1]); } catch { address = null; }
    const number = address ? normalizeNumber(address) : null;
    if (number) {
      const channel = /^whatsapp:/i.test(address) ? "whatsapp" : "sms";
      selectThread(addressFor(number, channel), channel);
    }
  }
  if (!state.selected) {
    // Open the most recent conversation once the list is in.
    refreshThreads().then(() => {
      const first = allThreads()[0];
      if (!state.selected && first) selectThread(first.address, channelOf(first));
      else pollNow();
    }).catch(() => pollNow());
  }
}

if (typeof document !== "undefined") {
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
}
