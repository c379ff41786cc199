#!/usr/bin/env bash
# Makes sure a Python 3 with torch exists for the torch executor (issue 7's tests need one).
# Looks where the runtime looks (ARCLIGHT_PYTHON, python3, /usr/bin/python3); when none has torch and
# apt-get is here, installs Debian's python3-torch. Never fails the caller when it cannot install:
# the runtime then reports "no Python with torch" itself.
set -uo pipefail

has_torch() { "$1" -c 'import torch' >/dev/null 2>&1; }

for candidate in "${ARCLIGHT_PYTHON:-}" python3 /usr/bin/python3; do
  if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 && has_torch "$candidate"; then
    echo "python with torch: $(command -v "$candidate")"
    exit 0
  fi
done

if ! command -v apt-get >/dev/null 2>&1; then
  echo "no Python with torch and no apt-get: install torch for python3 (or set ARCLIGHT_PYTHON)" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "no Python with torch; run: sudo apt-get install python3-torch" >&2
    exit 0
  fi
fi
echo "installing Debian's python3-torch (once)…"
$SUDO apt-get update -qq >/dev/null 2>&1
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-torch >/dev/null 2>&1 \
  && echo "python with torch: /usr/bin/python3" \
  || echo "apt-get install python3-torch failed; torch tests will report it" >&2
exit 0
