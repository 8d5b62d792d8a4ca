"""``python -m explorer --work build/small --repo build/small/bench_repo [--compare OTHER_REPO] [--server HOST:PORT]``

Serves the ranking explorer on ``--host``/``--port`` (default 127.0.0.1:8050) with Werkzeug's server (Flask's).
A repository with two versions on disk (a served one after ``make publish``) is shown as its current and
previous release side by side; ``--compare`` adds another repository's release instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from explorer.app import create_app
from explorer.explain import Release, versions


def releases(repo: Path, work: Path, compare: Path | None, compare_work: Path | None) -> list[Release]:
    on_disk = versions(repo)
    out = [Release(repo, work, on_disk[0])]
    if compare is not None:
        out.append(Release(compare, compare_work or work))
    elif len(on_disk) > 1:
        out.append(Release(repo, work, on_disk[1]))  # the previous release, still on disk for rollback
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="the ranking explorer: what a release ranks, and why")
    p.add_argument("--work", type=Path, required=True, help="the build's work folder (its item table)")
    p.add_argument("--repo", type=Path, required=True, help="the model repository (a build's or a served one)")
    p.add_argument("--compare", type=Path, default=None, help="another repository, shown side by side")
    p.add_argument("--compare-work", type=Path, default=None, help="its build's work folder (default --work)")
    p.add_argument("--server", default=None, help="host:port of a running tritonserver (gRPC) for the first column")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8050)
    args = p.parse_args(argv)
    app = create_app(releases(args.repo, args.work, args.compare, args.compare_work), args.server)
    app.run(host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
