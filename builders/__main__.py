"""Command line of the builders: ``python -m builders {build,configs,validate} ...``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m builders", description="Build the Triton model repository.")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the repository for a target and profile")
    b.add_argument("--target", default="cpu", choices=["cpu", "gpu"])
    b.add_argument("--profile", default="default", help="shop size: small (tests) or default")
    b.add_argument("--out", type=Path, default=None,
                   help="repository folder (default: model_repository/ for cpu, build/<profile>/gpu_repository for gpu)")
    b.add_argument("--work", type=Path, default=None, help="cache folder (default: build/<profile>/)")
    b.add_argument("--force", nargs="*", default=[], metavar="STEP",
                   help="rerun these steps: shop encoder embeddings features ranker")
    b.add_argument("--no-progress", action="store_true")
    b.add_argument("--gpu-runtime", default="tensorrt", choices=["tensorrt", "ort-trt"],
                   help="gpu target: TensorRT engines (tensorrt_plan) or onnxruntime with the TensorRT EP")
    b.add_argument("--precision", default="fp16", choices=["fp32", "fp16", "int8"], help="gpu target precision")
    b.add_argument("--encoder-variant", default="fp32", help="publish this measured encoder variant (see `variants`)")
    b.add_argument("--ranker-variant", default="fp32", help="publish this measured ranker variant")
    b.add_argument("--quality-margin", type=float, default=0.01,
                   help="refuse a variant whose NDCG@10 is more than this fraction below fp32 (default 0.01)")
    var = sub.add_parser("variants", help="build and measure the compressed variants of a finished build")
    var.add_argument("--profile", default="default")
    var.add_argument("--work", type=Path, default=None, help="the build's cache folder (default: build/<profile>/)")
    var.add_argument("--only", nargs="*", default=None, metavar="MODEL/VARIANT",
                     help="e.g. encoder/int8-dynamic ranker/pruned (the fp32 references are always measured)")
    var.add_argument("--distill-epochs", type=int, default=1)
    var.add_argument("--distill-max-steps", type=int, default=0, help="cap the distillation steps (0: no cap)")
    var.add_argument("--quality-margin", type=float, default=0.01)
    var.add_argument("--no-progress", action="store_true")
    sub.add_parser("configs", help="rewrite model_repository/*/config.pbtxt from builders/model_specs.py")
    v = sub.add_parser("validate", help="check a built repository against its configs")
    v.add_argument("repo", type=Path, nargs="?", default=None)
    args = parser.parse_args(argv)

    from builders import build, repository

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
    work = args.work or build.REPO_ROOT / "build" / args.profile
    if args.command == "variants":
        from builders.variants import run

        if not (work / "ranker.stamp.json").exists():
            print(f"error: no finished build in {work}: run `python -m builders build --profile {args.profile}` first",
                  file=sys.stderr)
            return 1
        report = run.run(work, build.REPO_ROOT / "build" / "encoder" / "model.onnx", args.only, args.distill_epochs,
                         args.distill_max_steps, args.quality_margin, progress=not args.no_progress)
        print(run.summary(report))
        return 0
    build.force(work, args.force)
    try:
        report = build.build(args.target, args.profile, args.out, work, progress=not args.no_progress,
                             encoder_variant=args.encoder_variant, ranker_variant=args.ranker_variant,
                             quality_margin=args.quality_margin, gpu_runtime=args.gpu_runtime,
                             precision=args.precision)
    except (build.BuildError, repository.RepositoryError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(build.summary(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
