"""The ``trtexec`` command that builds an engine: the one tool the GPU node's image (NGC Triton or
TensorRT) has for sure. The same arguments go into the Helm chart's ``engines.txt`` (the on-node
engine build) and are what ``engine.build`` runs on a GPU host.

CLI: ``python -m builders.gpu.trtexec [--precision fp16|int8]`` prints the commands and the chart's
``engineBuild.engines`` entries.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from builders.gpu.profiles import Profile, for_spec
from builders.repository.model_specs import spec_by_name
from runtime import contract as c

PRECISIONS = ("fp32", "fp16", "int8")
WORKSPACE_MB = 4096


def _shapes(shapes: dict[str, tuple[int, ...]]) -> str:
    return ",".join(f"{name}:{'x'.join(str(d) for d in dims)}" for name, dims in shapes.items())


def build_args(
    profile: Profile, precision: str = "fp16", calib_cache: str | None = None, timing_cache: str | None = None
) -> list[str]:
    """trtexec flags (without ``--onnx``/``--saveEngine``): shapes, precision, memory, caches."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "int8" and not calib_cache:
        raise ValueError("int8 needs a calibration cache (builders.gpu.calibration_cache)")
    args = [
        f"--minShapes={_shapes(profile.min)}",
        f"--optShapes={_shapes(profile.opt)}",
        f"--maxShapes={_shapes(profile.max)}",
    ]
    if precision in ("fp16", "int8"):
        args.append("--fp16")  # int8 keeps fp16 for the layers it cannot quantize
    if precision == "int8":
        args += ["--int8", f"--calib={calib_cache}"]
    args.append(f"--memPoolSize=workspace:{WORKSPACE_MB}M")
    if timing_cache:
        args.append(f"--timingCacheFile={timing_cache}")
    return args


def command(
    onnx: Path | str,
    plan: Path | str,
    profile: Profile,
    precision: str = "fp16",
    calib_cache: str | None = None,
    timing_cache: str | None = None,
    trtexec: str = "trtexec",
) -> list[str]:
    return [
        trtexec,
        f"--onnx={onnx}",
        f"--saveEngine={plan}",
        *build_args(profile, precision, calib_cache, timing_cache),
    ]


def engine_entries(precision: str = "fp16") -> list[dict[str, str]]:
    """The chart's ``engineBuild.engines``: model, ONNX path in the repository, trtexec arguments."""
    specs = spec_by_name()
    entries = []
    for name in (c.TEXT_ENCODER, c.RANKER):
        calib = f"{name}/1/calibration.cache" if precision == "int8" else None
        entries.append(
            {
                "model": name,
                "onnx": f"{name}/1/model.onnx",
                "args": " ".join(build_args(for_spec(specs[name]), precision, calib)),
            }
        )
    return entries


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--precision", default="fp16", choices=PRECISIONS)
    p.add_argument("--repo", default="model_repository")
    args = p.parse_args(argv)
    print("# trtexec commands (a GPU host with TensorRT):")
    for e in engine_entries(args.precision):
        print(
            shlex.join(
                command(
                    f"{args.repo}/{e['onnx']}",
                    f"{args.repo}/{e['model']}/1/model.plan",
                    for_spec(spec_by_name()[e["model"]]),
                    args.precision,
                    f"{args.repo}/{e['model']}/1/calibration.cache" if args.precision == "int8" else None,
                )
            )
        )
    print("# the chart's engineBuild.engines (helm/shoprank/values.yaml):")
    for e in engine_entries(args.precision):
        print(f'    - model: {e["model"]}\n      onnx: {e["onnx"]}\n      args: "{e["args"]}"')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
