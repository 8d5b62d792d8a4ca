#!/usr/bin/env bash
# Fetch the real Prometheus server and promtool (Debian's prometheus 2.42, static Go binaries) into
# build/tools/ without installing a system service: the .deb is unpacked, not installed.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="2.42.0+ds-5+deb12u1"
if [ -x build/tools/prometheus ] && [ -x build/tools/promtool ] && build/tools/promtool --version 2>&1 | grep -q "${VERSION}"; then
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 777 "$tmp"
(cd "$tmp" && (apt-get download "prometheus=${VERSION}" >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get download "prometheus=${VERSION}" >/dev/null; }))
dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
mkdir -p build/tools
install -m 0755 "$tmp/x/usr/bin/prometheus" "$tmp/x/usr/bin/promtool" build/tools/
echo "prometheus: $(build/tools/promtool --version 2>&1 | head -1)"
