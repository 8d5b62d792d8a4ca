"""The gpu target's build step: configs, INT8 calibration caches and, where TensorRT runs, engines.

Called by ``builders.build.build(target="gpu")`` after the shared steps (data, encoder, features,
ranker). Without TensorRT (always so on the project's machines) the repository holds the ONNX
sources and the configs, and the engines are built on the GPU node (the chart's engine-build step,
or ``python -m builders.gpu.engine --repo ...`` on a GPU host).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from builders.gpu import calibration_cache, engine, naming
from builders.gpu import specs as gpu_specs
from builders.learning.rows import make_rows
from builders.learning.text_encoder import pretrained_dir
from builders.variants import calibration
from runtime import contract as c
from runtime.features import FeatureStore
from runtime.text import TextTokenizer

logger = logging.getLogger(__name__)

CALIBRATION_SESSIONS = 2000
PARITY_BATCHES = 4


def shop_feeds(work: Path, shop) -> dict[str, list[dict[str, np.ndarray]]]:
    """Real batches of the shop for both models: titles and queries in the served length buckets,
    and the feature rows of the first sessions, computed by the serving code."""

    tok = TextTokenizer(pretrained_dir() / "tokenizer.json")
    store = FeatureStore.load(work / "features", with_tokenizer=False, with_profiles=True)
    rows = make_rows(
        shop,
        store,
        np.load(work / "embeddings" / "items.npy"),
        np.load(work / "embeddings" / "queries.npy"),
        store.profiles(),
        np.arange(min(CALIBRATION_SESSIONS, len(shop.session_user))),
    )
    return {
        c.TEXT_ENCODER: calibration.encoder_batches(tok, list(shop.item_titles) + list(shop.queries)),
        c.RANKER: calibration.ranker_batches(rows.cat, rows.dense),
    }


def build_gpu(
    work: Path,
    shop,
    sources: dict[str, Path],
    runtime: str,
    precision: str,
    embed_dim: int = c.EMBED_DIM,
    scan: bool = True,
    ranker_kind: str = "dcn",
) -> tuple[list, dict]:
    """``(model specs, report)``; ``report["files"][model]`` are the extra files of each version folder.
    ``scan``: retrieval by the ``item_scan`` model on the GPU (the config's ``retrieval.engine``).
    ``ranker_kind="gbdt"``: TensorRT compiles no tree ensemble, so the ranker keeps its CPU spec (the
    onnxruntime backend runs the trees on CPU instances) and gets no engine or calibration cache.

    Raises ``ValueError`` for a runtime/precision pair that is not offered.
    """

    model_specs = gpu_specs.specs(runtime, precision, embed_dim=embed_dim, scan=scan)
    files: dict[str, dict[str, Path]] = {name: {} for name in sources}
    report: dict = {"runtime": runtime, "precision": precision, "files": files, "ranker_kind": ranker_kind}
    if ranker_kind == "gbdt":
        model_specs = [gpu_specs.trees_on_cpu(s) if s.name == c.RANKER else s for s in model_specs]
        sources = {name: src for name, src in sources.items() if name != c.RANKER}
        logger.info(
            "[gpu] ranker: gradient-boosted trees stay on CPU instances of the onnxruntime backend (no TensorRT)"
        )
    by_name = {s.name: s for s in model_specs}
    if runtime != "tensorrt":
        return model_specs, report  # ORT-TRT: ONNX Runtime builds the engine when the model loads
    reason = engine.unavailable_reason()
    feeds = shop_feeds(work, shop) if precision == "int8" or reason is None else {}
    for name, src in sources.items():
        out_dir = work / "gpu" / name
        calib = None
        if precision == "int8":
            trt_int = naming.trt_version_int(naming.TRT_OF_RELEASE[naming.SERVING_RELEASE])
            report[f"{name}_calibration"] = calibration_cache.write(src, feeds[name], out_dir, trt_int)
            calib = files[name]["calibration.cache"] = out_dir / "calibration.cache"
            logger.info(f"[gpu] {name}: INT8 calibration cache of {report[f'{name}_calibration']['tensors']} tensors")
        if reason is None:
            plan = engine.build(src, out_dir, by_name[name], precision, calib)
            files[name][plan.name] = plan
            report[f"{name}_parity"] = engine.parity(plan, src, feeds[name][:PARITY_BATCHES])
            logger.info(f"[gpu] built {plan}; parity vs ONNX Runtime {report[f'{name}_parity']}")
    if reason is not None:
        report["engines"] = f"not built here: {reason}"
        logger.info(f"[gpu] TensorRT engines NOT built on this machine: {reason}")
    return model_specs, report
