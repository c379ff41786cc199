#!/usr/bin/env bash
# Makes sure Debian's chromium is at /usr/bin/chromium for the playground's browser test
# (test/runtime/docs/playground.test.ts drives it with playwright-core, which downloads no browser of its own).
# When it is missing and apt-get is here, installs it from the Debian archive. Never fails the caller when it
# cannot install: the test then names what is missing.
set -uo pipefail

CHROMIUM=/usr/bin/chromium
if [ -x "$CHROMIUM" ]; then
  echo "chromium: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "no $CHROMIUM and no apt-get: install Chromium at $CHROMIUM for the playground test" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "no $CHROMIUM; run: sudo apt-get install chromium" >&2
    exit 0
  fi
fi
echo "installing Debian's chromium (once)…"
$SUDO apt-get update -qq >/dev/null 2>&1
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
  && echo "chromium: $("$CHROMIUM" --version 2>/dev/null)" \
  || echo "apt-get install chromium failed; the playground test will report it" >&2
exit 0
