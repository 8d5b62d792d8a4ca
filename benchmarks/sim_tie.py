"""The LambdaMART ranker's similarity weight: what each candidate weight gives on the held-out days, and which
one the build keeps with ``ranker.gbdt.sim_tie`` 0 (the best validation value alone) and with the default
(``make bench-sim-tie``; results in docs/quality.md).

For each finished build's work folder, one booster per weight of ``ranker.gbdt.sim_weights`` is trained
on the build's rows with its settings (``gbdt.fit_weights``, as the build does), and each ranks the held-out
test days' lists: the validation value the choice reads, NDCG@10 debiased (IPS) and on the true relevance
over every list, and on the true relevance of the cold items alone (the other items' gains set to 0: how
high the relevant cold items are ranked; a cold item: nobody clicked it in the statistics window, so its
title and attributes speak for it), each with its 95% interval. The
similarity weight matters most to cold items, which the validation window, whose lists are mostly of items
with history, barely holds.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from benchmarks.ranker_kinds import fmt, fmt_vs, load_build, print_report, works_parser
from builders.data.config import GBDTConfig
from builders.learning import evaluation, gbdt
from builders.learning import ranker as rk
from builders.learning import rows as rows_mod
from builders.learning.metrics import ndcg_per_list, paired_interval
from runtime import cli_logging
from runtime.features import FeatureStore

logger = logging.getLogger(__name__)

TIES = (0.0, GBDTConfig().sim_tie)


def cold_items(rows, store: FeatureStore) -> np.ndarray:
    """Per row: the item nobody clicked in the statistics window."""
    return store.tables.item_log_clicks[rows.item] == 0


def evaluate(work: Path) -> dict:
    shop, store, item_emb, query_emb, hp = load_build(work)
    rows = rows_mod.datasets(shop, store, item_emb, query_emb, store.profiles(), hp.cold_share)
    tr, va, te = rows["train"], rows["val"], rows["test"]
    models, history = gbdt.fit_weights(tr, va, hp.gbdt, hp.position_bias == "pal", evaluation.val_metric(va))
    scores = {}
    for model, h in zip(models, history, strict=True):
        logit, weight = rk.parts(model, te)
        scores[f"weight {h['sim_weight']:g}"] = logit + weight * te.sim
    views = evaluation.views(te, scores, reference=next(iter(scores)))
    cold = cold_items(te, store)
    true = evaluation.true_gains(te)
    on_cold = {}
    if true is not None:
        per = {name: ndcg_per_list(np.where(cold, true, 0.0), score, te.offsets, 10) for name, score in scores.items()}
        first = next(iter(per))
        for name, values in per.items():
            ok = np.isfinite(values)
            on_cold[name] = paired_interval(values[ok])
            if name != first:
                on_cold[f"{name} vs first"] = paired_interval(values[ok] - per[first][ok])
    return {
        "shop": work.name,
        "history": history,
        "kept": {str(tie): history[gbdt.choose(history, tie)]["sim_weight"] for tie in TIES},
        "views": views,
        "cold_rows": round(float(cold.mean()), 4),
        "on_cold": on_cold,
    }


def markdown(results: list[dict]) -> str:
    lines = []
    for r in results:
        v = r["views"]
        kept = ", ".join(f"sim_tie {t}: weight {w:g}" for t, w in r["kept"].items())
        lines += [
            f"**{r['shop']}**, {v['lists']} held-out lists, {r['cold_rows']:.0%} of the rows cold items; kept: {kept}",
            "",
            "| weight | trees | validation (selection) | debiased (IPS) | true relevance "
            "| true, the cold items' gains alone, − the first weight |",
            "|---|---|---|---|---|---|",
        ]
        for h in r["history"]:
            name = f"weight {h['sim_weight']:g}"
            e = v[name]
            cells = [
                str(h["trees"]),
                f"{h['val']:.5f}",
                fmt(e["ips"]),
                fmt(e["true"]) if "true" in e else "–",
                fmt_vs(r["on_cold"], name, name + " vs first"),
            ]
            lines.append(f"| {h['sim_weight']:g} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    cli_logging.configure()
    args = works_parser(__doc__ or "").parse_args()
    results = [evaluate(w) for w in args.work]
    print_report(markdown(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
