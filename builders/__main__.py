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
    b.add_argument("--out", type=Path, default=None, help="repository folder (default: model_repository/)")
    b.add_argument("--work", type=Path, default=None, help="cache folder (default: build/<profile>/)")
    b.add_argument("--force", nargs="*", default=[], metavar="STEP",
                   help="rerun these steps: shop encoder embeddings features ranker")
    b.add_argument("--no-progress", action="store_true")
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
    build.force(work, args.force)
    try:
        report = build.build(args.target, args.profile, args.out, work, progress=not args.no_progress)
    except (build.BuildError, repository.RepositoryError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(build.summary(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
