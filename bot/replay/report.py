"""Replay reports: a terminal summary, JUnit XML for CI, and one self-contained HTML page per run.

The HTML page has no script and no outside resource: a trainer can mail it or open it offline.
Every piece of text from a conversation is escaped (``html.escape``); right-to-left languages are
marked ``dir="auto"`` so Arabic reads correctly.
"""
from __future__ import annotations

import datetime as dt
import html
import xml.etree.ElementTree as ET
from pathlib import Path

from bot.replay.runner import ScriptResult, TurnResult

STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0;background:#f4f4f6;color:#1d1d1f}
header{background:#1d2b3a;color:#fff;padding:16px 24px}header h1{margin:0 0 4px;font-size:20px}
main{max-width:980px;margin:0 auto;padding:16px}
.totals span{display:inline-block;margin-right:16px}
details.conv{background:#fff;border-radius:8px;margin:12px 0;border-left:6px solid #2e7d32;padding:8px 16px}
details.conv.fail{border-left-color:#c62828}
summary{cursor:pointer;font-weight:600}
.meta{color:#555;font-size:13px;margin:4px 0 8px}
.msg{max-width:75%;padding:8px 12px;border-radius:14px;margin:6px 0;white-space:pre-wrap;overflow-wrap:anywhere}
.texter{background:#dcf1ff;margin-right:auto}.bot{background:#eceff1;margin-left:auto}
.tags{font-size:12px;color:#37474f;margin:2px 0 0}
.tag{display:inline-block;background:#fff3;border:1px solid #90a4ae;border-radius:10px;padding:0 6px;margin:2px 4px 0 0}
.failure{background:#ffebee;border:1px solid #c62828;border-radius:6px;padding:6px 10px;margin:6px 0;color:#8e0000}
.error{background:#fff8e1;border:1px solid #f9a825;border-radius:6px;padding:6px 10px}
.ok{color:#2e7d32}.bad{color:#c62828}
"""


def terminal_summary(results: list[ScriptResult], seconds: float) -> str:
    """The lines a trainer reads in the terminal: one per failure, then the totals."""
    lines = []
    for result in results:
        if result.passed:
            continue
        lines.append(f"FAIL {result.script.name}: {result.script.title}")
        lines += [f"     {failure}" for failure in result.failures]
    turns = sum(len(r.turns) for r in results)
    passed = sum(r.passed for r in results)
    rate = len(results) / seconds * 60 if seconds else 0.0
    lines.append(f"{passed} of {len(results)} conversations passed, {len(results) - passed} failed; "
                 f"{turns} turns in {seconds:.1f} s ({rate:.1f} conversations per minute)")
    return "\n".join(lines)


def write_junit(results: list[ScriptResult], path: Path, seconds: float) -> None:
    """One test case per script, grouped by language folder; failures list every mismatch."""
    suite = ET.Element("testsuite", name="hotline replay", tests=str(len(results)),
                       failures=str(sum(bool(r.failures) and not r.error for r in results)),
                       errors=str(sum(bool(r.error) for r in results)), time=f"{seconds:.3f}",
                       timestamp=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    for result in results:
        case = ET.SubElement(suite, "testcase", classname=f"replay.{result.script.path.parent.name}",
                             name=f"{result.script.path.stem}: {result.script.title}", time=f"{result.seconds:.3f}")
        if result.error:
            ET.SubElement(case, "error", message=result.error).text = "\n".join(result.failures)
        elif result.failures:
            ET.SubElement(case, "failure", message=result.failures[0]).text = "\n".join(result.failures)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def write_html(results: list[ScriptResult], path: Path, seconds: float, title: str = "Replay report") -> None:
    passed = sum(r.passed for r in results)
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = [f"<header><h1>{_e(title)}</h1><div class='totals'><span>{now}</span>"
            f"<span class='{'ok' if passed == len(results) else 'bad'}'>{passed} of {len(results)} passed</span>"
            f"<span>{seconds:.1f} s</span></div></header><main>"]
    failed_first = sorted(results, key=lambda r: (r.passed, r.script.name))
    body += [_conversation(result) for result in failed_first]
    body.append("</main>")
    page = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
            f"<meta name='viewport' content='width=device-width,initial-scale=1'>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")


def _conversation(result: ScriptResult) -> str:
    script = result.script
    state = result.turns[-1].state if result.turns else {}
    verdict = "passed" if result.passed else "FAILED"
    parts = [f"<details class='conv{'' if result.passed else ' fail'}'{'' if result.passed else ' open'}>",
             f"<summary>{verdict}: {_e(script.name)}: {_e(script.title)}</summary>",
             f"<div class='meta'>{_e(script.language)} · {_e(script.channel)} · {_e(script.persona)}"
             f"{' · tags: ' + _e(', '.join(script.tags)) if script.tags else ''} · ended at risk "
             f"{_e(str(state.get('risk', '?')))}, indicators {_e(', '.join(state.get('indicators') or []) or 'none')}</div>"]
    parts += [_turn(turn) for turn in result.turns]
    parts += [f"<div class='failure'>after the last turn: {_e(f)}</div>" for f in result.end_failures]
    if result.error:
        parts.append(f"<div class='error'>{_e(result.error)}</div>")
    parts.append("</details>")
    return "".join(parts)


def _turn(turn: TurnResult) -> str:
    tags = [f"language {turn.language or '?'}"]
    tags += [f"indicator {i}" for i in turn.message_indicators]
    if turn.message_risk and turn.message_risk != "none":
        tags.append(f"message risk {turn.message_risk}")
    parts = [f"<div class='msg texter' dir='auto'>{_e(turn.turn.texter)}"
             f"<div class='tags'>{''.join(f'<span class=tag>{_e(t)}</span>' for t in tags)}</div></div>"]
    for reply in turn.replies:
        segments = f"{reply['segments']} segment{'s' if reply['segments'] != 1 else ''}"
        parts.append(f"<div class='msg bot' dir='auto'>{_e(reply['body'])}"
                     f"<div class='tags'><span class=tag>{segments}</span></div></div>")
    parts.append(f"<div class='meta'>bot responses: {_e(', '.join(turn.responses) or 'none')}"
                 f"{' · no reply reached the texter' if not turn.replies else ''}</div>")
    parts += [f"<div class='failure'>{_e(f)}</div>" for f in turn.failures]
    return "".join(parts)


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)
