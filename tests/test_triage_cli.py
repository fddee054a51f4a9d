"""`hotline triage`: the contract of DESIGN.md, on good and bad input, through the real command."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bot import PROJECT_ROOT

KEYS = {"text", "language", "language_confidence", "indicators", "evidence", "risk", "imminent"}
RISKS = {"none", "low", "medium", "high", "imminent"}


def run_triage(payload: bytes, *args: str) -> list[dict]:
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "triage", *args], input=payload, cwd=PROJECT_ROOT,
        capture_output=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    return [json.loads(line) for line in result.stdout.decode("utf-8").splitlines()]


GOOD = [
    ("my boss took my passport and wont give it back", "en"),
    ("el patron no me paga desde hace dos meses", "es"),
    ("mon employeur garde mon passeport", "fr"),
    ("yung amo ko ayaw ibigay yung sahod ko", "tl"),
    ("mainu tin mahine ton tankhah nahi mili, malik kehnda ruk ja", "pa"),
    ("mujhe teen mahine se salary nahi mili, kya karu", "hi"),
    ("老板不给我工资", "zh"),
    ("chủ không trả lương cho tôi", "vi"),
    ("роботодавець не платить мені зарплату", "uk"),
    ("صاحب العمل لا يدفع راتبي", "ar"),
    ("사장님이 월급을 안 줘요", "ko"),
    ("นายจ้างไม่จ่ายเงินเดือนค่ะ", "th"),
]


def test_one_output_per_line_in_order_with_the_contract_keys():
    lines = [json.dumps({"text": text}, ensure_ascii=False) for text, _ in GOOD]
    out = run_triage(("\n".join(lines) + "\n").encode())
    assert [row["language"] for row in out] == [code for _, code in GOOD]
    for row, (text, _) in zip(out, GOOD):
        assert KEYS <= set(row)
        assert row["text"] == text
        assert 0.0 <= row["language_confidence"] <= 1.0
        assert row["risk"] in RISKS and isinstance(row["imminent"], bool)
        assert isinstance(row["indicators"], list) and isinstance(row["evidence"], list)


BAD_LINES = [
    b'{"text": ""}',
    b'{"text": "   "}',
    b'{"text": "\\ud83d\\ude4f\\ud83d\\ude4f"}',
    b'{"text": "12345"}',
    json.dumps({"text": "x" * 10_000}).encode(),
    b'{"text": "\\u0000\\u0007 control"}',
    b'{"text": "\\ud800 lone surrogate"}',
    b"\xff\xfe not utf-8 \xc3",
    b"plain text, not json",
    b'{"text": null}',
    b'{"text": 42}',
    b"[1, 2, 3]",
    b'{"other": "no text key"}',
    b"",
]


def test_bad_input_never_crashes_and_never_drops_a_line():
    out = run_triage(b"\n".join(BAD_LINES) + b"\n")
    assert len(out) == len(BAD_LINES)
    for row in out:
        assert KEYS <= set(row)
        assert row["language"] == "en" and row["language_confidence"] <= 0.5


def test_reads_a_file_argument_and_handles_thousands_of_lines(tmp_path):
    path = tmp_path / "many.jsonl"
    rows = [json.dumps({"text": text}, ensure_ascii=False) for text, _ in GOOD] * 250
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = run_triage(b"", str(path))
    assert len(out) == 3000
    assert [row["language"] for row in out[:12]] == [code for _, code in GOOD]


@pytest.mark.parametrize("newline", [b"\r\n", b"\n"])
def test_windows_and_unix_line_endings(newline):
    out = run_triage(newline.join([b'{"text": "hola amigo como estas hoy"}', b'{"text": "bonjour a tous mes amis"}']) + newline)
    assert [row["language"] for row in out] == ["es", "fr"]
