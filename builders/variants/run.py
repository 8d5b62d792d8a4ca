"""Build and measure every compressed variant of a finished build: ``python -m builders variants``.

Variant files are cached under ``build/<profile>/variants/{encoder,ranker}/`` (stamped like the
build steps); the measurements are redone on every run and written to
``build/<profile>/variants/report.json``, which ``python -m builders build --encoder-variant ...``
reads to gate a variant before it publishes it, and ``benchmarks/variants.py`` turns into the
table and Pareto plot of ``docs/compression.md``.
"""

from __future__ import annotations

import json
import logging
import os
import platform
from collections.abc import Callable
from functools import partial
from pathlib import Path

from builders.code_key import modules_key
from builders.driver import Driver
from builders.learning import dcn, text_encoder
from builders.learning.dcn import build_model
from builders.variants import calibration, distill, evaluate, gate, graph, lowrank, prune, quantize
from builders.variants.gate import REFERENCE
from runtime.text import TextTokenizer

logger = logging.getLogger(__name__)

Maker = Callable[[Path], dict | None]  # writes one variant to the path; returns build info for the report, or None

ENCODER_VARIANTS = ("fp32", "fused", "int8-dynamic", "int8-static", "fused+int8", "distilled", "distilled+int8")
RANKER_VARIANTS = ("fp32", "optimized", "int8-dynamic", "int8-static", "pruned", "low-rank")


def without_info(make: Callable[[Path], object]) -> Maker:
    """A maker whose result (the file it wrote) adds nothing to the report's build info."""

    def run(dst: Path) -> dict | None:
        make(dst)
        return None

    return run


def variant_path(work: Path, model: str, name: str) -> Path:
    return work / "variants" / model / f"{name.replace('+', '_')}.onnx"


def load_reference_ranker(work: Path):
    """The trained reference ranker (torch) from ``ranker/ranker.pt``."""
    import torch

    state = torch.load(work / "ranker" / "ranker.pt", weights_only=True)
    cards = [state[f"embeddings.{i}.weight"].shape[0] for i in range(sum(k.startswith("embeddings.") for k in state))]
    hidden = tuple(
        state[k].shape[0] for k in sorted(k for k in state if k.startswith("deep.") and k.endswith(".weight"))
    )
    model = build_model(
        cards,
        state["dense_mean"].numpy(),
        state["dense_std"].numpy(),
        emb_dim=state["embeddings.0.weight"].shape[1],
        cross_layers=sum(k.startswith("cross.") and k.endswith(".weight") for k in state),
        hidden=hidden,
    )
    model.load_state_dict(state)
    return model.eval()


def served_ranker_kind(work: Path) -> str:
    """The kind of ranker the build serves (``ranker/report.json``; builds before the GBDT: the DCN)."""
    report = work / "ranker" / "report.json"
    return json.loads(report.read_text()).get("kind", "dcn") if report.exists() else "dcn"


def encoder_makers(
    work: Path, ref: evaluate.Reference, distill_epochs: int, distill_max_steps: int, progress: bool
) -> dict[str, Maker]:

    src = ref.encoder_onnx
    path = lambda name: variant_path(work, "encoder", name)  # noqa: E731

    def calibrated(dst: Path):
        tok = TextTokenizer(ref.tokenizer)
        feeds = calibration.encoder_batches(tok, ref.titles[: -evaluate.HOLDOUT_TITLES] + ref.queries)
        quantize.static(src, dst, feeds)
        return {"calibration_batches": len(feeds)}

    def distilled(dst: Path):
        raw = dst.with_name("distilled_raw.onnx")
        report = distill.distill_from_build(
            work, raw, epochs=distill_epochs, max_steps=distill_max_steps, progress=progress
        )
        graph.fuse_encoder(raw, dst)
        return report

    return {
        "fused": without_info(lambda dst: graph.fuse_encoder(src, dst)),
        "int8-dynamic": without_info(lambda dst: quantize.dynamic(src, dst)),
        "int8-static": calibrated,
        "fused+int8": without_info(lambda dst: quantize.dynamic(path("fused"), dst)),
        "distilled": distilled,
        "distilled+int8": without_info(lambda dst: quantize.dynamic(path("distilled"), dst)),
    }


def ranker_makers(work: Path, ref: evaluate.Reference, progress: bool) -> dict[str, Maker]:

    src = ref.ranker_onnx

    def fine_tuned(make_model: Callable, dst: Path, **info) -> dict:
        model = make_model(load_reference_ranker(work))
        history = dcn.fit(
            model, ref.rows["train"], ref.rows["val"], epochs=2, lr=5e-4, progress=progress, desc="fine-tune"
        ).history
        dcn.export_onnx(model, dst)
        return {"parameters": prune.parameter_count(model), "fine_tune": history, **info}

    def calibrated(dst: Path):
        tr = ref.rows["train"]
        quantize.static(src, dst, calibration.ranker_batches(tr.cat, tr.dense), op_types=("MatMul", "Gemm", "Gather"))
        return None

    return {
        "optimized": without_info(lambda dst: graph.optimize_ranker(src, dst)),
        "int8-dynamic": without_info(lambda dst: quantize.dynamic(src, dst)),
        "int8-static": calibrated,
        "pruned": lambda dst: fine_tuned(lambda m: prune.prune_deep(m, keep=0.5), dst, keep=0.5),
        "low-rank": lambda dst: fine_tuned(
            lambda m: lowrank.factorize(m, embedding_rank=8, cross_rank=32), dst, embedding_rank=8, cross_rank=32
        ),
    }


def run(
    work: Path,
    encoder_onnx: Path,
    only: list[str] | None = None,
    distill_epochs: int = 1,
    distill_max_steps: int = 0,
    margin: float = gate.DEFAULT_MARGIN,
    progress: bool = True,
    speed_rounds: int = 3,
) -> dict:
    """Make (cached) and measure the variants; ``only`` limits to names like ``encoder/int8-dynamic``."""
    ctx = Driver(work)
    (work / "variants").mkdir(parents=True, exist_ok=True)
    ref = evaluate.Reference.load(work, encoder_onnx)
    ref_key = {name: json.loads((work / f"{name}.stamp.json").read_text())["key"] for name in ("encoder", "ranker")}
    wanted = lambda model, name: name == REFERENCE or not only or f"{model}/{name}" in only  # noqa: E731
    report: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "margin": margin,
        "encoder": {},
        "ranker": {},
    }
    makers = {
        "encoder": encoder_makers(work, ref, distill_epochs, distill_max_steps, progress),
        "ranker": ranker_makers(work, ref, progress),
    }
    # a shop's own encoder (encoder.path), not MiniLM, pretrained or fine-tuned: no MiniLM layers to start from
    own_encoder = ref_key["encoder"].get("encoder") != text_encoder.fingerprint(text_encoder.pretrained_dir())
    kind = served_ranker_kind(work)
    for model, names in (("encoder", ENCODER_VARIANTS), ("ranker", RANKER_VARIANTS)):
        for name in names:
            if not wanted(model, name):
                continue
            if model == "ranker" and kind != "dcn" and name != REFERENCE:
                logger.info(
                    f"[variants] ranker/{name} skipped: the ranker variants compress the DCN-v2, and this build "
                    f"serves the {kind} ranker (ranker.kind: dcn to serve and compress the DCN)"
                )
                continue
            if own_encoder and name.startswith("distilled"):
                logger.info(
                    f"[variants] {model}/{name} skipped: distillation starts from MiniLM's layers, and this shop "
                    f"has its own encoder"
                )
                continue
            if name == REFERENCE:
                path, built = (ref.encoder_onnx if model == "encoder" else ref.ranker_onnx), {}
            else:
                path = variant_path(work, model, name)
                path.parent.mkdir(parents=True, exist_ok=True)
                key = {
                    "reference": ref_key,
                    "code": modules_key(__name__),  # this module and all it imports
                    "distill_epochs": distill_epochs,
                    "distill_max_steps": distill_max_steps,
                }
                built = ctx.cached(
                    f"variants/{model}/{name.replace('+', '_')}", key, [path], partial(makers[model][name], path)
                )
            logger.info(f"[measure] {model}/{name} quality")
            entry = {"file": str(path), "mb": evaluate.size_mb(path), "build": built}
            if model == "encoder":
                entry["quality"] = evaluate.encoder_quality(ref, path)
            else:
                entry["quality"] = evaluate.ranker_quality(ref, path)
            report[model][name] = entry
        logger.info(f"[measure] {model} speed, {speed_rounds} rounds in alternating order")
        paths = {name: Path(e["file"]) for name, e in report[model].items()}
        if model == "encoder":
            speeds = evaluate.interleaved(
                paths, lambda p: evaluate.encoder_speed(p, ref.queries, tokenizer=ref.tokenizer), speed_rounds
            )
        else:
            speeds = evaluate.interleaved(paths, lambda p: evaluate.ranker_speed(p, ref.rows["test"]), speed_rounds)
        for name, speed in speeds.items():
            report[model][name]["speed"] = speed
        reference = report[model][REFERENCE]
        for name, entry in report[model].items():
            entry["gate"] = gate.verdict(f"{model}/{name}", entry["quality"], reference["quality"], margin)
    evaluate.write_json(work / "variants" / "report.json", report)
    return report


def summary(report: dict) -> str:
    lines = []
    for model in ("encoder", "ranker"):
        entries = report[model]
        if not entries:
            continue
        ref = entries[REFERENCE]
        speed_key = "p50_ms_8tok" if model == "encoder" else "p50_ms_200rows"
        lines.append(
            f"{model:<8} {'variant':<16} {'MB':>7} {'p50 ms':>8} {'speed-up':>8} {'NDCG@10':>8} "
            f"{'drop':>7} {'AUC':>7}  gate"
        )
        for name, e in entries.items():
            lines.append(
                f"{'':<8} {name:<16} {e['mb']:7.1f} {e['speed'][speed_key]:8.3f} "
                f"{ref['speed'][speed_key] / e['speed'][speed_key]:7.2f}x {e['quality']['ndcg@10']:8.4f} "
                f"{e['gate']['relative_drop']:7.2%} {e['quality']['auc']:7.4f}  "
                f"{'pass' if e['gate']['passed'] else 'REFUSED'}"
            )
    return "\n".join(lines)
