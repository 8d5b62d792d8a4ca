"""``python -m rollout status|verify|wait``: check a shoprank release on the cluster.

    status  the pods of a release: ready, restarts, node and GPU, image, repository checksum, engine
            build, and Triton's own view (server ready, each model's loaded versions); what disagrees
    verify  the build's golden request set to every pod, each answer compared with the build's
    wait    until the rollout is finished (every pod ready on the current template) and verify passes
    checksum  a built repository's checksum, for the chart's modelRepository.checksum
    compare   the arms of an online test, from the shop's events: click, add-to-cart and purchase rate per
            arm, the difference with its interval, the sample size still needed (rollout/compare.py)

Exit status: 0 all good, 1 a check failed (a pipeline stops the rollout), 2 the tool could not run
(no kubeconfig, no golden set, no such release). The cluster layer is NOT tested against a real cluster
(see rollout/kube.py); ``verify --url`` checks any reachable Triton HTTP endpoints without one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rollout import compare as compare_mod
from rollout import golden as golden_mod
from rollout.follow import follow
from rollout.follow import status as release_status_of
from rollout.kube import Cluster, KubeError
from rollout.status import NOT_ON_A_CLUSTER, table
from rollout.triton_http import direct
from rollout.verify import ARMS, verify

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rollout", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def cluster_flags(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("-n", "--namespace", default="default", help="the release's namespace")
        sp.add_argument("--release", default="shop", help="the Helm release name (default: shop)")
        sp.add_argument("--context", help="kube context (default: the kubeconfig's current one)")
        sp.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
        sp.add_argument("--in-cluster", action="store_true", help="use the pod's service account (a pipeline Job)")
        sp.add_argument("--json", action="store_true", help="machine-readable output")

    def golden_flags(sp: argparse.ArgumentParser, required: bool) -> None:
        sp.add_argument(
            "--golden",
            type=Path,
            required=required,
            help="golden.json, or the built repository folder holding it (the build writes it)",
        )
        sp.add_argument("--tolerance", type=float, help="score tolerance (default: the golden set's)")
        sp.add_argument("--workers", type=int, default=8, help="requests in flight at once")

    st = sub.add_parser("status", help="pods, versions, checksums, engines, Triton's view; what disagrees")
    cluster_flags(st)
    st.add_argument("--golden", type=Path, help="also check the release serves this golden set's repository")
    st.add_argument("--no-triton", action="store_true", help="do not ask each pod's Triton (API objects only)")

    vf = sub.add_parser("verify", help="the golden request set to every pod; compare with the build's answers")
    cluster_flags(vf)
    golden_flags(vf, required=True)
    vf.add_argument(
        "--url",
        action="append",
        default=[],
        help="a Triton HTTP endpoint to verify instead of the cluster's pods (repeatable), e.g. after "
        "`kubectl port-forward pod/NAME 8000`",
    )
    vf.add_argument(
        "--arm",
        choices=ARMS,
        default="control",
        help="while an online test runs or is held: 'treatment' verifies the treatment's ensembles "
        "(<call>__treatment) against the candidate's golden set: --golden names the file, or the live repository "
        "(its .golden.<release>.json)",
    )

    wt = sub.add_parser("wait", help="wait for the rollout to finish, then verify")
    cluster_flags(wt)
    golden_flags(wt, required=False)
    wt.add_argument("--timeout", type=float, default=900, help="seconds before giving up (default 900)")
    wt.add_argument("--interval", type=float, default=5, help="seconds between checks (default 5)")
    ck = sub.add_parser("checksum", help="a built repository's checksum (the chart's modelRepository.checksum)")
    ck.add_argument("repo", type=Path, help="the built model repository folder")
    cp = sub.add_parser("compare", help="the arms of an online test from the shop's events (rates, intervals, size)")
    cp.add_argument("events", type=Path, nargs="+", help="event files (Parquet or CSV), the build's format")
    cp.add_argument("--arm-column", default="arm", help="the column naming the arm that served each event")
    cp.add_argument("--control", help="the control arm (default: the first by name)")
    cp.add_argument("--effect", type=float, default=0.02, help="relative change to size the test for (0.02: 2%%)")
    cp.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def _compare(args, out) -> int:
    try:
        lists = compare_mod.read_events(args.events, args.arm_column)
        diffs = compare_mod.compare(lists, args.control, args.effect)
    except compare_mod.CompareError as err:
        out(f"error: {err}")
        return EXIT_ERROR
    if args.json:
        rows = [
            {
                "metric": d.metric,
                "control": d.control.value,
                "treatment": d.treatment.value,
                "difference": d.delta,
                "interval": list(d.interval),
                "p_value": d.p_value,
                "significant": d.significant,
                "units": min(d.control.units, d.treatment.units),
                "units_needed": d.units_needed,
                "units_still_needed": d.units_still_needed,
            }
            for d in diffs
        ]
        out(json.dumps({"comparisons": rows, "mixed_lists": lists.mixed}, indent=1))
    else:
        out(compare_mod.report(diffs, lists.mixed))
    return EXIT_OK


def main(argv: list[str] | None = None, out=print) -> int:
    args = _parser().parse_args(argv)

    if args.command == "compare":
        return _compare(args, out)

    if args.command == "checksum":
        if not args.repo.is_dir():
            out(f"error: {args.repo}: not a folder")
            return EXIT_ERROR
        out(golden_mod.repository_checksum(args.repo))
        return EXIT_OK

    try:
        golden = getattr(args, "golden", None)
        if golden is not None and getattr(args, "arm", "control") == "treatment":
            golden = golden_mod.of_treatment(golden)  # a live repository: its treatment's golden set
        gs = golden_mod.load(golden) if golden else None
    except golden_mod.GoldenError as err:
        out(f"error: {err}")
        return EXIT_ERROR
    workers = getattr(args, "workers", 8)
    tolerance = getattr(args, "tolerance", None)

    if args.command == "verify" and args.url:
        assert gs is not None
        verdict = verify(gs, {u: direct(u) for u in args.url}, tolerance, workers, arm=args.arm)
        out(json.dumps(verdict.to_json(), indent=1) if args.json else verdict.text())
        return EXIT_OK if verdict.ok else EXIT_FAILED

    try:
        cluster = Cluster.connect(args.context, args.kubeconfig, args.in_cluster)
        if args.command == "status":
            st = release_status_of(
                cluster, args.namespace, args.release, gs.repository_checksum if gs else None, not args.no_triton
            )
            out(json.dumps(st.to_json(), indent=1) if args.json else table(st))
            return EXIT_OK if st.ok else EXIT_FAILED
        if args.command == "verify":
            assert gs is not None
            release = cluster.release(args.namespace, args.release)
            pods = cluster.transports(release)
            if not pods:
                out(f"error: release {args.release} in {args.namespace} has no running pods to verify")
                return EXIT_FAILED
            verdict = verify(gs, pods, tolerance, workers, progress=None if args.json else out, arm=args.arm)
            out(json.dumps(verdict.to_json() | {"note": NOT_ON_A_CLUSTER}, indent=1) if args.json else verdict.text())
            if not args.json:
                out(NOT_ON_A_CLUSTER)
            return EXIT_OK if verdict.ok else EXIT_FAILED
        # wait
        result = follow(
            cluster,
            args.namespace,
            args.release,
            gs,
            args.timeout,
            args.interval,
            out=(lambda _: None) if args.json else out,
            tolerance=tolerance,
            workers=workers,
        )
        if args.json:
            payload = {"ok": result.ok, "message": result.message, "waited_s": round(result.waited_s, 1)}
            if result.status is not None:
                payload["status"] = result.status.to_json()
            if result.verdict is not None:
                payload["verify"] = result.verdict.to_json()
            out(json.dumps(payload, indent=1))
        else:
            if result.verdict is not None:
                out(result.verdict.text())
            elif not result.ok and result.status is not None:
                out(table(result.status))
            out(f"wait: {result.message} ({result.waited_s:.0f}s)")
        return EXIT_OK if result.ok else EXIT_FAILED
    except KubeError as err:
        out(f"error: {err}")
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
