#!/usr/bin/env bash
# Installs Debian's Chromium for the dashboard's browser tests (tests/test_dashboard.py drives
# it with Playwright; Playwright's own browser download is not used). Safe to run again: does
# nothing when /usr/bin/chromium is there. Needs root (apt-get); without root it says so and the
# browser tests skip, naming why.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "chromium-up: /usr/bin/chromium is missing and this is not root: the browser tests will skip" >&2
  exit 0
fi
echo "chromium-up: installing chromium"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
