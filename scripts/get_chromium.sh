#!/usr/bin/env bash
# Debian's chromium for the browser tests of the report page and the ranking explorer (Playwright drives it
# headless through executable_path; Playwright's own browser download is not used: it cannot be fetched here).
# Idempotent. Not pinned to one version: Debian's security archive keeps only the newest chromium build, so an
# exact pin would stop installing after its next update; the tests check behaviour, not pixels.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null; }
echo "chromium: $(chromium --version 2>/dev/null)"
