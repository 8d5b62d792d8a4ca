#!/bin/sh
# Build (or reuse) TensorRT engines for THIS node's GPU, before Triton starts. Runs in an init container
# of the serving image (trtexec ships in the NGC Triton image) with the pod's GPU attached.
# Engines are specific to the GPU product and the TensorRT version: the cache key holds both, so a new
# node type builds its own engines and a restart on a known node type reuses them.
# Input: $ENGINES, one "model|onnx path in the repository|trtexec arguments" per line.
# NOT RUN ON THE PROJECT'S MACHINES: no GPU and no TensorRT builder there (tests run it with stand-ins
# for nvidia-smi and trtexec to check the caching and copying around the build).
set -eu
REPO=${REPO:-/models}
CACHE=${CACHE:-/engine-cache}
TRTEXEC=${TRTEXEC:-/usr/src/tensorrt/bin/trtexec}
ENGINES=${ENGINES:-/etc/shoprank/engines.txt}
# Kubernetes shows this file's content as the container's termination message (python -m rollout status).
TERMINATION_LOG=${TERMINATION_LOG:-/dev/termination-log}

gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1 | tr -c 'A-Za-z0-9.\n' '-')
cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d ' .')
trt=$("$TRTEXEC" --help 2>&1 | sed -n 's/.*TensorRT v\([0-9][0-9]*\).*/\1/p' | head -n 1)
if [ -z "$gpu" ] || [ -z "$cc" ] || [ -z "$trt" ]; then
  echo "build-engines: cannot tell the GPU product ('$gpu'), compute capability ('$cc') or TensorRT version ('$trt')" >&2
  exit 1
fi
# The file name the gpu target's configs map this compute capability to (builders/gpu/naming.py):
# model.sm<cc>.trt<major.minor.patch>.plan. A TensorRT version the configs were not made for finds no
# file and the model fails to load, instead of running an engine built for something else.
engine_file="model.sm$cc.trt$((trt / 10000)).$((trt / 100 % 100)).$((trt % 100)).plan"
key="$CACHE/$gpu/trt$trt"
mkdir -p "$key"
done_list=""
while IFS='|' read -r model onnx args; do
  [ -n "$model" ] || continue
  # A model the repository serves otherwise (a gradient-boosted ranker: ONNX Runtime on CPU instances, since
  # TensorRT compiles no tree ensemble) gets no engine, whatever the engines list says.
  if [ -f "$REPO/$model/config.pbtxt" ] && ! grep -q 'tensorrt_plan' "$REPO/$model/config.pbtxt"; then
    echo "build-engines: $model is not a TensorRT model in this repository (no tensorrt_plan in its config): skipped"
    done_list="$done_list $model=skipped"
    continue
  fi
  plan="$key/$model.plan"
  if [ -s "$plan" ]; then
    echo "build-engines: reusing $plan"
    done_list="$done_list $model=reused"
  else
    echo "build-engines: building $model for $gpu, TensorRT $trt"
    # shellcheck disable=SC2086 # args is a list of trtexec flags
    "$TRTEXEC" --onnx="$REPO/$onnx" --saveEngine="$plan.tmp" $args
    mv "$plan.tmp" "$plan"
    done_list="$done_list $model=built"
  fi
  mkdir -p "$REPO/$model/1"
  cp "$plan" "$REPO/$model/1/$engine_file"
done < "$ENGINES"
echo "$gpu/trt$trt" > "$REPO/.engines-built-for"
echo "$gpu sm$cc trt$trt:$done_list" > "$TERMINATION_LOG" 2>/dev/null || true
