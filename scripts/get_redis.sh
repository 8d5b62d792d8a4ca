#!/usr/bin/env bash
# Fetch Debian's real redis-server (7.0, with the libraries it needs that a bare machine lacks) into
# build/tools/redis/ without installing a system service: the .debs are unpacked, not installed.
# The online feature store's tests and `make redis` start it from there on a free port.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="5:7.0.15-1~deb12u7"
DEST=build/tools/redis
run() { LD_LIBRARY_PATH="$PWD/$DEST/lib" "$PWD/$DEST/bin/$1" "${@:2}"; }
if [ -x "$DEST/bin/redis-server" ] && run redis-server --version 2>/dev/null | grep -q "v=7.0.15"; then
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 777 "$tmp"
pkgs=("redis-server=${VERSION}" "redis-tools=${VERSION}" liblzf1 libjemalloc2)
(cd "$tmp" && (apt-get download "${pkgs[@]}" >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get download "${pkgs[@]}" >/dev/null; }))
for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$tmp/x"; done
mkdir -p "$DEST/bin" "$DEST/lib"
install -m 0755 "$tmp/x/usr/bin/redis-check-rdb" "$DEST/bin/redis-server"  # redis-server is a link to this binary
install -m 0755 "$tmp/x/usr/bin/redis-cli" "$DEST/bin/"
cp -a "$tmp"/x/usr/lib/x86_64-linux-gnu/lib{lzf,jemalloc}.so* "$DEST/lib/"
echo "redis: $(run redis-server --version)"
