"""The build's summary for the terminal: which ranker was kept, and the held-out days in the three views,
by kind of list and with and without the query-title similarity, read from ``build_report.json``'s dict."""

from __future__ import annotations


def summary(report: dict) -> str:
    """The lines ``python -m builders build`` prints after a build."""
    rk = report.get("ranker", {})
    lines = [
        f"model repository ready: {report['repository']['out']}  (shop {report['shop']}, target {report['target']})"
    ]
    trained = rk.get("kinds", {})
    if trained:
        kept = rk["kind"]
        chosen = trained[kept]["val_ndcg@10_selection"]
        others = ", ".join(
            f"{k} {e['val_ndcg@10_selection']:.4f} ({chosen - e['val_ndcg@10_selection']:+.4f})"
            for k, e in trained.items()
            if k != kept
        )
        rest = f"; {others}" if others else " (the only kind asked)"
        lines.append(f"ranker: {kept} kept, {rk['selection']} {chosen:.4f}{rest}")
    views = rk.get("test_views", {})
    if views:
        true = any("true" in v for k, v in views.items() if k != "lists")
        lines.append(
            f"held-out days, NDCG@10 [95% interval] over {views['lists']} lists: logged clicks | debiased (IPS)"
            + (" | true relevance" if true else "")
        )
        for name, v in views.items():
            if name == "lists":
                continue
            cells = [v[x] for x in ("logged", "ips", "true") if x in v]
            lines.append(f"  {name:<12} " + " | ".join(f"{a:.4f} [{lo:.4f}, {hi:.4f}]" for a, lo, hi in cells))
        if not true:
            lines.append("  (no true relevance in real logs: quality is measured on logged clicks and purchases)")
    kinds = report.get("ranker", {}).get("test_by_list_kind", {})
    if kinds:
        lines.append("held-out days by kind of list, NDCG@10 logged (true): ranker | popularity | covisitation")
        for kind, e in kinds.items():

            def cell(name: str, e=e) -> str:
                q = e.get(name, {})
                logged, true = q.get("ndcg@10"), q.get("ndcg@10_true")
                return ("  -   " if logged is None else f"{logged:.4f}") + ("" if true is None else f" ({true:.4f})")

            row = " | ".join(cell(n) for n in ("ranker", "popularity", "covisitation"))
            lines.append(f"  {kind:<13} {e['lists']:>6} lists  {row}")
    sim = report.get("ranker", {}).get("similarity", {})
    if sim:
        lines.append("searches, NDCG@10 with / without the query-title similarity term:")
        for group, e in sim.items():
            key = "true" if "ndcg@10_true_with_similarity" in e else "logged"
            a, b = e.get(f"ndcg@10_{key}_with_similarity"), e.get(f"ndcg@10_{key}_without_similarity")
            if a is not None and b is not None:
                lines.append(f"  {group:<15} {e['lists']:>6} lists  {a:.4f} / {b:.4f}  ({key})")
    return "\n".join(lines)
