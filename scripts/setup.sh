#!/usr/bin/env bash
# Create .venv (Python 3.11) and install the pinned lock. Idempotent: reinstalls only when
# requirements/lock.txt or pyproject.toml changed. Rasa 3.6 declares Python < 3.11, hence
# --no-deps --ignore-requires-python on an exact lock (see scripts/lock.py and DESIGN.md).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "Python 3.11 is required (found: $("$PYTHON" --version 2>&1))" >&2
  exit 1
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=".venv/.installed-$(cat requirements/lock.txt pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check \
    --no-deps --ignore-requires-python --prefer-binary -r requirements/lock.txt 2> >(grep -v "^WARNING: Location" >&2)
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . \
    2> >(grep -v "^WARNING: Location" >&2)
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# Browser tests (tests/test_simulator_browser.py) drive Debian's Chromium through playwright;
# playwright's own browser download is never used. Nothing to do when it is already installed.
if [ ! -x /usr/bin/chromium ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
  if [ -z "$sudo" ] || { command -v sudo >/dev/null && sudo -n true 2>/dev/null; }; then
    echo "installing Debian's chromium for the browser tests"
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "WARNING: /usr/bin/chromium is missing and this user can neither apt-get install it (not root)" >&2
    echo "         nor use sudo: tests/test_simulator_browser.py will fail. Install Debian's chromium." >&2
  fi
fi
echo "environment ready: .venv ($(.venv/bin/python --version))"
