"""The build report page: one self-contained HTML file, ``build_report.html``, beside ``build_report.json``.

Written by every build (``builders.build``) and readable offline: the data summary and the validation
warnings, the ranker kind kept and its quality tables with the baselines (three views with intervals, by kind
of list, by known and cold users, by query class), NDCG@k and recall@k curves, the retrieval recall against N,
the position propensities, the compressed variants' speed/quality Pareto plot (where ``make variants`` ran),
and the golden set's size and checksum. The plots are matplotlib PNGs embedded as data URIs; the page is a
Jinja2 template (``builders/templates/report.html.j2``), autoescaped.

``python -m builders.report_page WORK`` writes the page of a finished build again.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import re
from pathlib import Path

from builders.data.report import Problem

PAGE_FILE = "build_report.html"
HISTORY_FILE = Path("retrain") / "history.jsonl"  # the nightly retrain's decisions, one JSON line each (retrain/)
TEMPLATE = "report.html.j2"
VIEWS = (("logged", "logged clicks"), ("ips", "debiased (IPS)"), ("true", "true relevance"))


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def ndcg_figure(curves: dict) -> str | None:
    """NDCG@k against k, one panel per view, one line per scorer."""
    if not curves:
        return None
    plt = _pyplot()
    ks = curves["k"]
    scorers = [n for n in curves if n != "k"]
    views = [(v, label) for v, label in VIEWS if f"ndcg_{v}" in curves[scorers[0]]]
    fig, axes = plt.subplots(1, len(views), figsize=(4.2 * len(views), 3.2), squeeze=False)
    for ax, (view, label) in zip(axes[0], views, strict=True):
        for name in scorers:
            ax.plot(ks, curves[name][f"ndcg_{view}"], "o-", ms=3, label=name)
        ax.set_title(f"NDCG@k, {label}")
        ax.set_xlabel("k")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    return _png(fig)


def recall_figure(curves: dict, retrieval: dict) -> str | None:
    """Left: recall@k of the clicked items in the ranked lists; right: the retrieval index's recall against N."""
    plt = _pyplot()
    panels = [p for p in (curves or None, retrieval.get("recall_curve")) if p]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.2), squeeze=False)
    i = 0
    if curves:
        ax = axes[0][i]
        for name in (n for n in curves if n != "k"):
            ax.plot(curves["k"], curves[name]["recall"], "o-", ms=3, label=name)
        ax.set_title("recall@k, clicked items in the ranked lists", fontsize=10)
        ax.set_xlabel("k")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        i += 1
    rc = retrieval.get("recall_curve")
    if rc:
        ax = axes[0][i]
        ns = [int(k.split("@")[1]) for k in rc if k.startswith("recall@")]
        ax.plot(ns, [rc[f"recall@{n}"] for n in ns], "o-", ms=3, color="tab:purple")
        ax.set_xscale("log")
        ax.set_title(f"retrieval recall@N ({rc['lists']} test searches)", fontsize=10)
        ax.set_xlabel("N (nearest items by the query embedding)")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    return _png(fig)


def propensity_figure(ranker: dict) -> str | None:
    prop = ranker.get("propensity")
    if not prop or prop.get("propensity") is None:  # the logs could not measure it (prop["why"] says why)
        return None
    plt = _pyplot()
    curve = prop["propensity"]
    shown = prop["shown_per_position"]
    depth = max([k + 1 for k, n in enumerate(shown) if n >= 100] or [len(curve)])
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(range(1, depth + 1), curve[:depth], "o-", ms=3, label="harvested from the logs")
    learned = ranker.get("kinds", {}).get("dcn", {}).get("learned_examination")
    if learned:
        ax.plot(range(1, depth + 1), learned[:depth], "s--", ms=3, label="learned by PAL (DCN-v2)")
    ax.set_xlabel("logged position (1 = top)")
    ax.set_ylabel("examination, relative to the top")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def pareto_figure(variants: dict | None) -> str | None:
    """Each measured variant's in-process p50 against its NDCG@10, encoder and ranker apart."""
    if not variants:
        return None
    plt = _pyplot()
    models = [m for m in ("encoder", "ranker") if len(variants.get(m, {})) > 1]
    if not models:
        return None
    fig, axes = plt.subplots(1, len(models), figsize=(4.6 * len(models), 3.4), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        lat = "p50_ms_8tok" if model == "encoder" else "p50_ms_200rows"
        for name, e in variants[model].items():
            if "speed" in e and lat in e["speed"]:
                ax.scatter(e["speed"][lat], e["quality"]["ndcg@10"], s=18)
                ax.annotate(name, (e["speed"][lat], e["quality"]["ndcg@10"]), fontsize=7)
        ax.set_title(f"{model} variants")
        ax.set_xlabel(f"in-process p50 ms ({'1 query' if model == 'encoder' else '200 rows'})")
        ax.set_ylabel("NDCG@10 (logged)")
        ax.grid(alpha=0.3)
    return _png(fig)


def read_history(work: Path) -> list[dict]:
    path = work / HISTORY_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def history_figure(history: list[dict]) -> str | None:
    """Per retrain decision: the gate's NDCG@10 of the live release and of the candidate, and their p50."""
    gated = [h for h in history if h.get("gate", {}).get("quality")]
    if not gated:
        return None
    plt = _pyplot()
    fig, (q_ax, l_ax) = plt.subplots(1, 2, figsize=(9.5, 3.2))
    x = range(len(gated))
    labels = [h["time"][5:16].replace("T", " ") for h in gated]
    for arm, style in (("live", "o-"), ("candidate", "s--")):
        q_ax.plot(x, [h["gate"]["quality"][h["gate"]["view"]][arm] for h in gated], style, ms=4, label=arm)
        l_ax.plot(x, [h["gate"]["latency_ms"][arm]["p50"] for h in gated], style, ms=4, label=arm)
    for i, h in enumerate(gated):
        q_ax.annotate(h["decision"], (i, h["gate"]["quality"][h["gate"]["view"]]["candidate"]), fontsize=7)
    for ax, label in ((q_ax, "NDCG@10 on the newest held-out lists"), (l_ax, "in-process p50 (ms)")):
        ax.set_xticks(list(x), labels, rotation=30, fontsize=7)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _png(fig)


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def warnings(validation: dict) -> list[str]:
    """The data contract's warnings as its report prints them (``validation.json``'s problems)."""
    return [str(Problem(**p)) for p in validation.get("problems", []) if p.get("level") == "warning"]


def context(report: dict, work: Path) -> dict:
    """Everything the template shows, from the build's report and the files beside it."""
    ranker = report.get("ranker", {})
    validation = _read_json(work / "data" / "validation.json") or {}
    views = ranker.get("test_views", {})
    shown = {view for k, v in views.items() if k != "lists" for view in v}  # ips: only where propensities exist
    return {
        "report": report,
        "ranker": ranker,
        "data": report.get("data", {}),
        "warnings": warnings(validation),
        "views": views,
        "view_names": [(v, label) for v, label in VIEWS if v in shown],
        "kinds": ranker.get("test_by_list_kind", {}),
        "users": ranker.get("test_by_user", {}),
        "similarity": ranker.get("similarity", {}),
        "golden": report.get("golden", {}),
        "variants": report.get("published_variants", {}),
        "history": read_history(work),
        "figures": {
            "history": history_figure(read_history(work)),
            "ndcg": ndcg_figure(ranker.get("test_curves", {})),
            "recall": recall_figure(ranker.get("test_curves", {}), report.get("retrieval", {})),
            "propensity": propensity_figure(ranker),
            "pareto": pareto_figure(_read_json(work / "variants" / "report.json")),
        },
    }


def render(report: dict, work: Path) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["num"] = lambda x, d=4: "–" if x is None else f"{x:.{d}f}"
    return with_csp(env.get_template(TEMPLATE).render(**context(report, work)))


def with_csp(html: str) -> str:
    """The page with a Content-Security-Policy meta tag: no script at all, images only as the embedded
    data URIs, and the page's own style blocks by their SHA-256 (anything else inline is refused)."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(block.encode()).digest()).decode() + "'"
        for block in re.findall(r"<style>(.*?)</style>", html, flags=re.S)
    )
    styles = hashes or "'none'"
    policy = f"default-src 'none'; script-src 'none'; style-src {styles}; img-src data:; base-uri 'none'"
    meta = f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
    return html.replace('<meta charset="utf-8">', '<meta charset="utf-8">\n' + meta, 1)


def write(report: dict, work: Path) -> Path:
    """``work/build_report.html``, written to a temp name and renamed."""
    out = work / PAGE_FILE
    tmp = out.with_suffix(".tmp")
    tmp.write_text(render(report, work), encoding="utf-8")
    os.replace(tmp, out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="write a finished build's report page again")
    p.add_argument("work", type=Path, help="the build's work folder (build/<name>/)")
    args = p.parse_args(argv)
    report = json.loads((args.work / "build_report.json").read_text())
    print(write(report, args.work))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
