"""Engine file names: a TensorRT engine runs only on the GPU architecture and TensorRT version it was
built with, so both are in the name, and the config maps each compute capability to its file
(``cc_model_filenames``). A node whose GPU or TensorRT version has no engine fails to load the
model with "file not found" instead of running a wrong engine.

    model.sm90.trt10.5.0.plan   H100 (compute capability 9.0), TensorRT 10.5.0 (NGC 24.10)
"""

from __future__ import annotations

import re

# NGC Triton release -> TensorRT version inside it (the serving image pins the release).
TRT_OF_RELEASE = {"24.10": "10.5.0", "24.12": "10.7.0", "25.01": "10.8.0.43"}
SERVING_RELEASE = "24.10"
# Data-centre GPUs an e-commerce deployment is likely to use: compute capability -> example products.
TARGET_CCS = {"8.0": "A100", "8.6": "A10, A40", "8.9": "L4, L40S", "9.0": "H100, H200"}


def _check_cc(cc: str) -> str:
    if not re.fullmatch(r"\d{1,2}\.\d", cc):
        raise ValueError(f"compute capability must look like '9.0', got {cc!r}")
    return cc


def trt_version_from_int(value: int | str) -> str:
    """TensorRT's integer version as trtexec prints it (``[TensorRT v100500]``) -> ``10.5.0``."""
    v = int(value)
    return f"{v // 10000}.{v // 100 % 100}.{v % 100}"


def trt_version_int(version: str) -> int:
    """``10.5.0`` -> ``100500``, the integer TensorRT prints and writes into calibration caches."""
    major, minor, patch = (int(x) for x in version.split(".")[:3])
    return major * 10000 + minor * 100 + patch


def engine_filename(cc: str, trt_version: str) -> str:
    if not re.fullmatch(r"\d+\.\d+\.\d+(\.\d+)?", trt_version):
        raise ValueError(f"TensorRT version must look like '10.5.0', got {trt_version!r}")
    return f"model.sm{_check_cc(cc).replace('.', '')}.trt{trt_version}.plan"


def cc_model_filenames(ccs: list[str] | tuple[str, ...], trt_version: str) -> dict[str, str]:
    """The config's ``cc_model_filenames`` map for the target compute capabilities."""
    return {cc: engine_filename(cc, trt_version) for cc in ccs}
