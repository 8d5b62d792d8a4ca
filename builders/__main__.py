"""Command line of the builders: ``python -m builders {build,check-data,demo-data,variants,configs,validate}``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from builders import build
from builders.data import config as cfg_mod
from builders.data import demo as demo_mod
from builders.data.dataset import load_shop
from builders.data.report import DataError
from builders.learning.limits import limits as data_limits
from builders.repository import assemble as repository
from builders.repository.model_specs import FUSED_ALONE_THREADS, FUSED_INSTANCES, FUSED_THREADS, FusedSizes
from builders.summary import summary
from builders.variants import run
from runtime import cli_logging


def main(argv: list[str] | None = None) -> int:
    cli_logging.configure()
    parser = argparse.ArgumentParser(prog="python -m builders", description="Build the Triton model repository.")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the repository of a shop (--config) or of the demo shop (--profile)")
    b.add_argument("--config", type=Path, default=None, help="the shop's shoprank.yaml (docs/data.md)")
    b.add_argument("--target", default="cpu", choices=["cpu", "gpu"])
    b.add_argument("--profile", default=None, help="the demo shop instead of --config: small (tests) or default")
    b.add_argument(
        "--out",
        type=Path,
        default=None,
        help="repository folder (default: model_repository/ for cpu, build/<profile>/gpu_repository for gpu)",
    )
    b.add_argument("--work", type=Path, default=None, help="cache folder (default: build/<name or profile>/)")
    b.add_argument(
        "--force",
        nargs="*",
        default=[],
        metavar="STEP",
        help="rerun these steps: demo-data data fine-tune encoder embeddings query-stats features retrieval ranker",
    )
    b.add_argument("--no-progress", action="store_true")
    b.add_argument(
        "--gpu-runtime",
        default="tensorrt",
        choices=["tensorrt", "ort-trt"],
        help="gpu target: TensorRT engines (tensorrt_plan) or onnxruntime with the TensorRT EP",
    )
    b.add_argument("--precision", default="fp16", choices=["fp32", "fp16", "int8"], help="gpu target precision")
    b.add_argument(
        "--layout",
        default="fused",
        choices=["fused", "ensemble"],
        help="cpu target: one model per call (fused, the default) or the ensembles of the gpu target "
        '(docs/serving.md, "The cpu target\'s layout")',
    )
    b.add_argument(
        "--fused-instances",
        type=int,
        default=FUSED_INSTANCES,
        help="cpu target, fused layout: instances per model (about one per core)",
    )
    b.add_argument(
        "--fused-threads", type=int, default=FUSED_THREADS, help="cpu target, fused layout: ONNX Runtime threads each"
    )
    b.add_argument(
        "--fused-alone-threads",
        type=int,
        default=FUSED_ALONE_THREADS,
        help="cpu target, fused layout: the encoder's threads while no other fused instance serves (0: never wider)",
    )
    b.add_argument("--encoder-variant", default="fp32", help="publish this measured encoder variant (see `variants`)")
    b.add_argument("--ranker-variant", default="fp32", help="publish this measured ranker variant")
    b.add_argument(
        "--quality-margin",
        type=float,
        default=None,
        help="refuse a variant whose NDCG@10 is more than this fraction below fp32 (default: the "
        "config's quality_margin, 0.01)",
    )
    chk = sub.add_parser("check-data", help="validate a shop's files against the data contract, build nothing")
    chk.add_argument("--config", type=Path, required=True)
    demo = sub.add_parser("demo-data", help="write the generated demo shop in the data contract's format")
    demo.add_argument("--profile", default="default")
    demo.add_argument("--out", type=Path, required=True)
    var = sub.add_parser("variants", help="build and measure the compressed variants of a finished build")
    var.add_argument("--profile", default="default")
    var.add_argument(
        "--work",
        type=Path,
        default=None,
        help="the build's cache folder (default: build/<profile>/; build/<name>/ for a --config build)",
    )
    var.add_argument(
        "--only",
        nargs="*",
        default=None,
        metavar="MODEL/VARIANT",
        help="e.g. encoder/int8-dynamic ranker/pruned (the fp32 references are always measured)",
    )
    var.add_argument("--distill-epochs", type=int, default=1)
    var.add_argument("--distill-max-steps", type=int, default=0, help="cap the distillation steps (0: no cap)")
    var.add_argument("--quality-margin", type=float, default=0.01)
    var.add_argument("--no-progress", action="store_true")
    sub.add_parser("configs", help="rewrite model_repository/*/config.pbtxt from builders/repository/model_specs.py")
    v = sub.add_parser("validate", help="check a built repository against its configs")
    v.add_argument("repo", type=Path, nargs="?", default=None)
    args = parser.parse_args(argv)

    if args.command == "demo-data":
        return demo_mod.main(["--profile", args.profile, "--out", str(args.out)])
    if args.command == "check-data":
        return check_data(args.config)
    if args.command == "configs":
        for path in repository.write_configs():
            print(f"wrote {path}")
        return 0
    if args.command == "validate":
        try:
            for line in repository.validate(args.repo or repository.SOURCE_REPO):
                print(line)
        except repository.RepositoryError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        return 0
    if args.command == "variants":
        work = args.work or build.REPO_ROOT / "build" / args.profile

        if not (work / "ranker.stamp.json").exists():
            print(
                f"error: no finished build in {work}: run `python -m builders build --profile {args.profile}` first",
                file=sys.stderr,
            )
            return 1
        own = work / "encoder" / "model.onnx"  # a shop built with its own encoder (encoder.path)
        encoder = own if own.exists() else build.BUNDLED_ENCODER_DIR / "model.onnx"
        report = run.run(
            work,
            encoder,
            args.only,
            args.distill_epochs,
            args.distill_max_steps,
            args.quality_margin,
            progress=not args.no_progress,
        )
        print(run.summary(report))
        return 0
    if args.config is not None and args.profile is not None:
        print("error: give --config (your shop) or --profile (the demo shop), not both", file=sys.stderr)
        return 2
    unknown = sorted(set(args.force) - set(build.STEP_NAMES))
    if unknown:
        print(
            f"error: --force {' '.join(unknown)}: no such step; steps are {' '.join(build.STEP_NAMES)}", file=sys.stderr
        )
        return 2
    try:
        sizes = FusedSizes(args.fused_instances, args.fused_threads, args.fused_alone_threads)
    except ValueError as err:  # names the option's value and what it must be
        print(f"error: --fused-instances / --fused-threads / --fused-alone-threads: {err}", file=sys.stderr)
        return 2
    try:
        report = build.build(
            args.target,
            args.profile or "default",
            args.out,
            args.work,
            progress=not args.no_progress,
            encoder_variant=args.encoder_variant,
            ranker_variant=args.ranker_variant,
            quality_margin=args.quality_margin,
            gpu_runtime=args.gpu_runtime,
            precision=args.precision,
            config=args.config,
            force=tuple(args.force),
            layout=args.layout,
            fused_sizes=sizes,
        )
    except (build.BuildError, repository.RepositoryError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(summary(report))
    return 0


def check_data(config: Path) -> int:
    """Validate only: print every problem (errors and warnings) and the data's summary."""

    try:
        cfg = cfg_mod.load(config)
        shop, report = load_shop(cfg)
    except cfg_mod.ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except DataError as err:
        print(err.report.text(), file=sys.stderr)
        return 1
    print(report.text())
    for limit in data_limits(shop):
        print(f"limit: {limit}")
    print(f"ok: {cfg.data.folder} follows the data contract ({len(report.warnings)} warnings)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
