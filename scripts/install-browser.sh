#!/usr/bin/env bash
# Headless Chromium and its WebDriver, from Debian, for the console's
# browser test (kafkit/tests/cli/browser.rs). Idempotent: does nothing when
# both are there.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
echo "chromium and chromedriver installed: $(chromium --version)"
