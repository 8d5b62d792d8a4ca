"""helm/shoprank/files/build-engines.sh, the chart's engine-build step.

TensorRT and a GPU are not available on these machines, so `nvidia-smi` and `trtexec` are stand-ins
here (shell scripts that print what the real tools print and write a file for --saveEngine). What is
tested is everything around the build: the cache key per GPU product and TensorRT version, reuse,
copying into the repository, and the failure when the versions cannot be read.
"""

import os
import subprocess
from pathlib import Path

import pytest

from builders.gpu import naming

pytestmark = pytest.mark.unit
SCRIPT = Path(__file__).resolve().parent.parent / "helm" / "shoprank" / "files" / "build-engines.sh"


def node(tmp_path, gpu="NVIDIA H100 80GB HBM3", trt="100500", cc="9.0"):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "nvidia-smi").write_text(
        f"#!/bin/sh\ncase \"$1\" in --query-gpu=compute_cap) echo '{cc}';; *) echo '{gpu}';; esac\n"
    )
    (bin_dir / "trtexec").write_text(
        "#!/bin/sh\n"
        f"if [ \"$1\" = --help ]; then echo '&&&& RUNNING TensorRT.trtexec [TensorRT v{trt}] # trtexec'; exit 0; fi\n"
        f'echo "$@" >> {tmp_path}/trtexec.calls\n'
        'for a in "$@"; do case $a in --saveEngine=*) echo "plan for $*" > "${a#--saveEngine=}";; esac; done\n'
    )
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    repo = tmp_path / "repo"
    for model in ("text_encoder", "ranker"):
        (repo / model / "1").mkdir(parents=True, exist_ok=True)
        (repo / model / "1" / "model.onnx").write_text("onnx")
    (tmp_path / "engines.txt").write_text(
        "text_encoder|text_encoder/1/model.onnx|--fp16 --minShapes=input_ids:1x4\nranker|ranker/1/model.onnx|--fp16\n"
    )
    env = dict(
        os.environ,
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        REPO=str(repo),
        CACHE=str(tmp_path / "cache"),
        TRTEXEC=str(bin_dir / "trtexec"),
        ENGINES=str(tmp_path / "engines.txt"),
        TERMINATION_LOG=str(tmp_path / "termination-log"),
    )
    return subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True)


def calls(tmp_path):
    f = tmp_path / "trtexec.calls"
    return f.read_text().splitlines() if f.exists() else []


def test_builds_once_per_gpu_and_tensorrt_version_then_reuses(tmp_path):
    first = node(tmp_path)
    assert first.returncode == 0, first.stderr
    assert len(calls(tmp_path)) == 2 and "--onnx=" in calls(tmp_path)[0] and "--fp16" in calls(tmp_path)[0]
    assert (tmp_path / "termination-log").read_text().strip() == (
        "NVIDIA-H100-80GB-HBM3 sm90 trt100500: text_encoder=built ranker=built"
    )
    key = tmp_path / "cache" / "NVIDIA-H100-80GB-HBM3" / "trt100500"
    assert (key / "text_encoder.plan").exists() and (key / "ranker.plan").exists()
    engine_file = tmp_path / "repo" / "ranker" / "1" / naming.engine_filename("9.0", "10.5.0")
    assert engine_file.read_text() == (key / "ranker.plan").read_text()
    assert (tmp_path / "repo" / ".engines-built-for").read_text().strip() == "NVIDIA-H100-80GB-HBM3/trt100500"
    again = node(tmp_path)
    assert again.returncode == 0 and len(calls(tmp_path)) == 2 and "reusing" in again.stdout
    # The termination message Kubernetes shows (python -m rollout status): what this start built or reused.
    assert (tmp_path / "termination-log").read_text().strip() == (
        "NVIDIA-H100-80GB-HBM3 sm90 trt100500: text_encoder=reused ranker=reused"
    )
    other_gpu = node(tmp_path, gpu="NVIDIA L40S")
    assert other_gpu.returncode == 0 and len(calls(tmp_path)) == 4
    other_trt = node(tmp_path, trt="100800")
    assert other_trt.returncode == 0 and len(calls(tmp_path)) == 6
    assert (tmp_path / "cache" / "NVIDIA-H100-80GB-HBM3" / "trt100800" / "ranker.plan").exists()


def test_unknown_versions_stop_the_pod_with_a_clear_message(tmp_path):
    out = node(tmp_path, trt="")
    assert out.returncode == 1 and "cannot tell the GPU product" in out.stderr
    assert calls(tmp_path) == []


def test_a_model_served_otherwise_gets_no_engine(tmp_path):
    """A gbdt build's gpu repository serves the ranker with the onnxruntime backend (TensorRT compiles no tree
    ensemble): the engine list may still name it, and the script skips it instead of failing the pod."""
    repo = tmp_path / "repo"
    (repo / "ranker").mkdir(parents=True)
    (repo / "ranker" / "config.pbtxt").write_text('name: "ranker"\nbackend: "onnxruntime"\n')
    (repo / "text_encoder").mkdir(parents=True)
    (repo / "text_encoder" / "config.pbtxt").write_text('name: "text_encoder"\nplatform: "tensorrt_plan"\n')
    run = node(tmp_path)
    assert run.returncode == 0, run.stderr
    assert len(calls(tmp_path)) == 1 and "text_encoder/1/model.onnx" in calls(tmp_path)[0]
    assert "ranker is not a TensorRT model" in run.stdout
    assert (tmp_path / "termination-log").read_text().strip().endswith("text_encoder=built ranker=skipped")
    assert not any((repo / "ranker" / "1").glob("*.plan"))
