"""The ranker kinds side by side: DCN-v2 and LightGBM's LambdaMART, each trained with and without position
debiasing, against the baselines that use the same logs, in the three views (``make bench-ranker``;
results in docs/quality.md).

For each finished build's work folder (``build/default``: the demo; ``build/market``: the market shop),
all four rankers are trained here on the build's rows with its config (``ranker.kind`` and
``ranker.position_bias`` replaced), and every scorer ranks the held-out test days' logged lists:
NDCG@10 on logged clicks and purchases, debiased (gains weighted by the clipped inverse propensity of
their logged position, pooled over lists: ``builders.learning.metrics.ListNDCG``), and on the hidden
true relevance; each with a 95% bootstrap interval over the lists, and its paired difference to
popularity. ``--plot`` draws the propensity curves (harvested from the logs, learned by PAL, and the demo
generator's true examination curve). ``--cost`` times the ranker step of each kind in-process (ONNX
Runtime, one intra-op thread as served) at 100 and 1,000 candidates, in alternating order on the same rows.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path

import numpy as np

from builders.data.config import RankerConfig
from builders.data.dataset import ShopData
from builders.data.shop import examination
from builders.learning import dcn, evaluation, gbdt
from builders.learning import ranker as rk
from builders.learning import rows as rows_mod
from runtime import cli_logging
from runtime import contract as c
from runtime.features import FeatureStore
from runtime.ort_runner import make_session

logger = logging.getLogger(__name__)

RANKERS = (("dcn", "pal"), ("dcn", "none"), ("gbdt", "pal"), ("gbdt", "none"))
BASELINES = ("popularity", "click_prior", "covisitation", "random", "ground_truth")


def label(kind: str, bias: str) -> str:
    return f"{'DCN-v2' if kind == 'dcn' else 'LambdaMART'} {'debiased' if bias == 'pal' else 'plain clicks'}"


def config_of(work: Path) -> RankerConfig:
    """The ranker config the build of ``work`` was made with (its ranker step's cache key)."""
    return RankerConfig(**json.loads((work / "ranker.stamp.json").read_text())["key"]["ranker"])


def load_build(work: Path) -> tuple[ShopData, FeatureStore, np.ndarray, np.ndarray, RankerConfig]:
    """A finished build's shop, its training feature store, title and query embeddings, and ranker config."""
    shop = ShopData.load(work / "data")
    store = FeatureStore.load(work / "features", with_tokenizer=False, with_profiles=True)
    item_emb, query_emb = np.load(work / "embeddings" / "items.npy"), np.load(work / "embeddings" / "queries.npy")
    return shop, store, item_emb, query_emb, config_of(work)


def evaluate(work: Path, progress: bool = False) -> dict:
    """Train the four rankers of ``work`` and score the test days; returns the views and the curves."""

    shop, store, item_emb, query_emb, hp = load_build(work)
    rows = rows_mod.datasets(shop, store, item_emb, query_emb, store.profiles(), hp.cold_share)
    te = rows["test"]
    scores: dict[str, np.ndarray] = {}
    models: dict[str, object] = {}
    learned = None
    for kind, bias in RANKERS:
        h = hp.model_copy(update={"kind": kind, "position_bias": bias})
        logger.info(f"[bench] {work.name}: {label(kind, bias)}")
        model, info = rk.train_kinds(rows, store, h, progress)[kind]
        logit, weight = rk.parts(model, te)
        scores[label(kind, bias)] = logit + weight * te.sim
        models[f"{kind}/{bias}"] = model
        if kind == "dcn" and bias == "pal":
            learned = info.get("learned_examination")
    scores.update(evaluation.baselines(store.tables, te))
    if te.relevance is not None:
        scores["ground_truth"] = te.relevance
    return {
        "shop": work.name,
        "views": evaluation.views(te, scores),
        "propensity": rows_mod.propensities(shop),
        "learned_examination": learned,
        "models": models,
        "rows": te,
    }


def markdown(results: list[dict]) -> str:
    out = []
    for r in results:
        v = r["views"]
        true = "true" in v["popularity"]
        out.append(f"**{r['shop']}**, {v['lists']} held-out lists, NDCG@10 [95% interval]")
        out.append("")
        head = "| scorer | logged clicks | debiased (IPS) | IPS − popularity |" + (" true relevance |" if true else "")
        out.append(head)
        out.append("|" + "---|" * (head.count("|") - 1))
        for name, e in v.items():
            if name == "lists":
                continue
            cells = [fmt(e["logged"]), fmt(e["ips"]), fmt(e["ips_vs_popularity"]) if "ips_vs_popularity" in e else "–"]
            if true:
                cells.append(fmt(e["true"]))
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def fmt(x: list[float]) -> str:
    return f"{x[0]:.4f} [{x[1]:.4f}, {x[2]:.4f}]"


def fmt_vs(values: dict, key: str, vs_key: str) -> str:
    """``values[key]`` and, where there is one, its difference ``values[vs_key]``; "–" without the value."""
    cell = fmt(values[key]) if key in values else "–"
    return cell + (f", {fmt(values[vs_key])}" if vs_key in values else "")


def works_parser(doc: str) -> argparse.ArgumentParser:
    """The CLI of a benchmark over finished builds: ``--work`` (their work folders) and ``--json``."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--work", type=Path, nargs="+", default=[Path("build/default"), Path("build/market")])
    p.add_argument("--json", type=Path, default=None)
    return p


def print_report(text: str) -> None:
    """The machine, then ``text``."""
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(text)


def plot(results: list[dict], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4), squeeze=False)
    for ax, r in zip(axes[0], results, strict=True):
        curve = np.array(r["propensity"]["propensity"])
        k = np.arange(len(curve))
        shown = np.array(r["propensity"]["shown_per_position"])
        depth = int(np.flatnonzero(shown >= 100).max()) + 1 if (shown >= 100).any() else len(curve)
        ax.plot(k[:depth] + 1, curve[:depth], "o-", ms=3, label="harvested from the logs (used for IPS)")
        if r["learned_examination"]:
            pal = np.array(r["learned_examination"])[:depth]
            ax.plot(k[:depth] + 1, pal, "s--", ms=3, label="learned by PAL (DCN-v2, training only)")
        if r["shop"] == "default":
            true = examination(k[:depth]) / examination(0)
            ax.plot(k[:depth] + 1, true, "k:", lw=2, label="the demo generator's true examination")
        else:
            ax.text(0.35, 0.8, "cascade shoppers: no fixed\nexamination curve to draw", transform=ax.transAxes)
        ax.set_xlabel("logged position (1 = top)")
        ax.set_ylabel("examination, relative to the top")
        ax.set_title({"default": "demo shop", "market": "market shop"}.get(r["shop"], r["shop"]))
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def cost(result: dict, work: Path, sizes=(100, 1000), rounds: int = 300, warmup: int = 30) -> dict:
    """p50/p99 ms of the ranker step (ONNX Runtime, 1 intra-op thread) per debiased kind, on the same rows."""

    tmp = work / "bench_ranker_kinds"
    paths = {
        "DCN-v2": dcn.export_onnx(result["models"]["dcn/pal"], tmp / "dcn.onnx"),
        "LambdaMART": gbdt.export_onnx(result["models"]["gbdt/pal"], tmp / "gbdt.onnx"),
    }
    sessions = {name: make_session(str(p), intra_op_threads=1) for name, p in paths.items()}
    rows = result["rows"]
    rng = np.random.default_rng(0)
    out: dict = {"trees": result["models"]["gbdt/pal"].booster.num_trees()}
    for n in sizes:
        times: dict[str, list[float]] = {name: [] for name in sessions}
        for i in range(rounds + warmup):
            idx = rng.integers(0, len(rows), n)
            feeds = {c.CAT_FEATURES: rows.cat[idx], c.DENSE_FEATURES: rows.dense[idx]}
            for name in list(sessions) if i % 2 == 0 else list(sessions)[::-1]:
                start = time.perf_counter()
                sessions[name].run([c.LOGIT, c.SIM_WEIGHT], feeds)
                if i >= warmup:
                    times[name].append((time.perf_counter() - start) * 1e3)
        out[n] = {name: [round(float(np.percentile(t, q)), 3) for q in (50, 99)] for name, t in times.items()}
    return out


def main() -> None:
    cli_logging.configure()
    p = works_parser(__doc__ or "")
    p.add_argument("--plot", type=Path, default=None, help="write the propensity curves here (PNG)")
    p.add_argument("--cost", action="store_true", help="time the ranker step of each kind (the first --work)")
    args = p.parse_args()
    results = [evaluate(w) for w in args.work]
    print_report(markdown(results))
    report: dict = {
        r["shop"]: {"views": r["views"], "propensity": r["propensity"], "learned": r["learned_examination"]}
        for r in results
    }
    if args.plot:
        print(f"propensity curves -> {plot(results, args.plot)}")
    if args.cost:
        timing = cost(results[0], args.work[0])
        report["cost"] = timing
        print(f"ranker step, ms p50 / p99, ONNX Runtime 1 thread ({timing['trees']} trees), same rows, alternating:")
        for n in (100, 1000):
            print(f"  {n:>5} candidates  " + "  ".join(f"{k} {v[0]:.3f} / {v[1]:.3f}" for k, v in timing[n].items()))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
