#!/usr/bin/env bash
# Create .venv and install every pinned dependency (idempotent). Used by `make setup` and CI.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.installed
want=$(cat requirements.txt requirements-server.txt constraints.txt pyproject.toml client/pyproject.toml | sha256sum | cut -d' ' -f1)
# Helm for the chart's tests (idempotent; its own pinned version).
bash scripts/get_helm.sh
# Prometheus and promtool for the monitoring tests (idempotent; pinned Debian version).
bash scripts/get_prometheus.sh
# Redis for the online feature store's tests and `make redis` (idempotent; pinned Debian version).
bash scripts/get_redis.sh
# Debian's chromium for the report page's and the explorer's browser tests (idempotent).
bash scripts/get_chromium.sh
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "setup: .venv is up to date"
  exit 0
fi
.venv/bin/python -m pip install -q --upgrade pip==24.3.1
# torch first and alone: 2.13.0 is the CPU build on this machine; anything else pulls GBs of CUDA wheels.
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -r requirements.txt -c constraints.txt
# The tritonserver binary's wheel, without its client dependencies (why: requirements-server.txt).
.venv/bin/python -m pip install -q --no-deps -r requirements-server.txt
.venv/bin/python -m pip install -q --no-deps -e .
# The client SDK (its own distribution; its two dependencies are already pinned above).
.venv/bin/python -m pip install -q --no-deps -e ./client
echo "$want" > "$stamp"
echo "setup: done"
