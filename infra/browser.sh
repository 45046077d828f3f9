#!/usr/bin/env bash
# Makes sure Debian's headless Chromium is installed for the browser tests.
# The browser comes from the system package manager; nothing is downloaded by
# Playwright itself.
set -euo pipefail
CHROMIUM=${LUBDUB_CHROMIUM:-/usr/bin/chromium}

if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "== installing chromium (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
  exit 0
fi
echo "The browser tests need Chromium at $CHROMIUM." >&2
echo "Install it as root with: apt-get install chromium (or set LUBDUB_CHROMIUM)." >&2
exit 1
