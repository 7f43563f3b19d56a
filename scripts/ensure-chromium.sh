#!/usr/bin/env bash
# The browser tests drive Debian's Chromium. Install it when it is missing and
# this is root with apt-get (fresh machines and CI); otherwise say so loudly.
set -euo pipefail
chromium="${CHROMIUM_PATH:-/usr/bin/chromium}"
[ -x "$chromium" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the browser tests (once)..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
  echo "!!! Chromium is missing at $chromium and cannot be installed here (needs root and apt-get): the browser tests will fail. Install it, or set CHROMIUM_PATH." >&2
fi
