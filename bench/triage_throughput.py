"""Throughput of ``hotline triage``'s pipeline after loading (the same code the CLI runs).

Run: ``.venv/bin/python bench/triage_throughput.py``. Prints the load time and messages per second
over every benchmark text, three times over.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.triage.pipeline import Triage, triage_lines  # noqa: E402


def main() -> None:
    lines = [line for path in sorted((ROOT / "bench" / "data" / "language_id").glob("*.jsonl"))
             for line in path.read_bytes().splitlines()] * 3
    start = time.perf_counter()
    triage = Triage()
    loaded = time.perf_counter() - start
    start = time.perf_counter()
    count = sum(1 for _ in triage_lines(lines, triage))
    elapsed = time.perf_counter() - start
    print(json.dumps({"load_seconds": round(loaded, 2), "messages": count,
                      "messages_per_second": round(count / elapsed)}))


if __name__ == "__main__":
    main()
