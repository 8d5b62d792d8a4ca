"""The gradient-boosted ranker: LightGBM's LambdaMART on the DCN-v2's features, exported to ONNX.

The trees read the ranker's dense features and its low-cardinality categorical columns (category,
brand, price bucket, segment, query category) as numbers; user and item ids stay with the DCN's
embedding tables (a tree splitting on an id memorises it). The served score has the DCN's form,
``logit + sim_weight * z(cos)``: ``sim_weight`` is one number per model, chosen on the validation
window from ``GBDTConfig.sim_weights``, and the trees are boosted from ``sim_weight * z(cos)`` as
their initial score, so they learn what the similarity term misses.

Position bias: with ``debias`` the training rows carry their logged position and LightGBM's
unbiased lambdarank (``lambdarank_position_bias_regularization``, LightGBM >= 4.1) learns one
examination factor per position jointly with the trees; serving needs no position.

Exported with onnxmltools (``TreeEnsembleRegressor``, run by ONNX Runtime, so by Triton's
onnxruntime backend) behind a few standard ops that take the ranker's two inputs (``cat_features``,
``dense_features``) and give its two outputs (``logit``, ``sim_weight``): the repository, the
ensembles and the clients cannot tell the kinds apart. Triton's FIL backend (NGC image only, GPU)
could serve the same booster file (``model.txt``); it is not built here (docs/serving.md).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.contract import CAT_COLUMNS, CAT_FEATURES, DENSE_COLUMNS, DENSE_FEATURES, LOGIT, N_CAT, SIM_WEIGHT
from runtime.ort_runner import make_session

logger = logging.getLogger(__name__)

TREE_CAT_COLUMNS = ("category", "brand", "price_bucket", "segment", "query_category")
TREE_CAT_INDEX = [CAT_COLUMNS.index(name) for name in TREE_CAT_COLUMNS]
FEATURE_NAMES = [*DENSE_COLUMNS, *TREE_CAT_COLUMNS]
ONNX_ML_OPSET = 15  # the highest default-domain opset onnxmltools 1.16's LightGBM converter writes
BOOSTER_FILE = "model.txt"  # LightGBM's own text format (what the FIL backend would load)
META_FILE = "gbdt.json"


def features(cat: np.ndarray, dense: np.ndarray) -> np.ndarray:
    """The trees' input matrix: the dense features, then the categorical columns as float32."""
    return np.concatenate([dense, cat[:, TREE_CAT_INDEX].astype(np.float32)], axis=1)


@dataclass
class GBDTRanker:
    """A trained booster and its similarity weight: scores ``logit + sim_weight * z(cos)``."""

    booster: object  # lightgbm.Booster
    sim_weight: float

    def parts(self, cat: np.ndarray, dense: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(logit, sim_weight)`` per row, as the exported model gives them."""
        logit = self.booster.predict(features(cat, dense), raw_score=True).astype(np.float32)  # type: ignore[attr-defined]
        return logit, np.full(len(logit), self.sim_weight, np.float32)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(folder / BOOSTER_FILE))  # type: ignore[attr-defined]
        (folder / META_FILE).write_text(json.dumps({"sim_weight": self.sim_weight, "features": FEATURE_NAMES}))

    @classmethod
    def load(cls, folder: Path) -> GBDTRanker:
        import lightgbm as lgb

        meta = json.loads((folder / META_FILE).read_text())
        return cls(lgb.Booster(model_file=str(folder / BOOSTER_FILE)), float(meta["sim_weight"]))


def float32_thresholds(booster):
    """The same booster with every split threshold moved down to the largest float32 at or below it.

    LightGBM compares ``x <= threshold`` in double precision; ONNX's tree ensemble holds float32
    thresholds, and a threshold between two adjacent float32 values rounded to the upper one sent a
    row down the other branch (parity off by a whole leaf). For float32 features ``x <= t`` and
    ``x <= t32`` (``t32`` rounded down) agree exactly, so the booster predicts what it did and the
    export is exact.
    """
    import lightgbm as lgb

    # tree_sizes (the byte length of every tree, for parallel loading) no longer holds once values change
    lines = [line for line in booster.model_to_string().split("\n") if not line.startswith("tree_sizes=")]
    for i, line in enumerate(lines):
        if line.startswith("threshold="):
            values = np.array(line[len("threshold=") :].split(), np.float64)
            down = values.astype(np.float32)
            above = down.astype(np.float64) > values
            down[above] = np.nextafter(down[above], np.float32(-np.inf))
            lines[i] = "threshold=" + " ".join(repr(float(v)) for v in down)
    return lgb.Booster(model_str="\n".join(lines))


def _dataset(rows, init: np.ndarray, position: bool):
    import lightgbm as lgb

    label = np.rint(np.log2(rows.gain + 1.0)).astype(np.int32)  # gain 2^(click + purchase) - 1 -> click + purchase
    return lgb.Dataset(
        features(rows.cat, rows.dense),
        label,
        group=np.diff(rows.offsets),
        init_score=init,
        position=rows.position if position and rows.position is not None else None,
        feature_name=FEATURE_NAMES,
        free_raw_data=False,
    )


def train(tr, va, hp, debias: bool, score_val) -> tuple[GBDTRanker, list[dict]]:
    """Boost one model per candidate similarity weight (``fit_weights``) and keep the best; a weight within
    ``hp.sim_tie`` of the best ties with it, and the larger weight of a tie is kept (``choose``). Returns the
    ranker and one history entry per weight."""
    models, history = fit_weights(tr, va, hp, debias, score_val)
    return models[choose(history, hp.sim_tie)], history


def fit_weights(tr, va, hp, debias: bool, score_val) -> tuple[list[GBDTRanker], list[dict]]:
    """One model per candidate similarity weight (``hp.sim_weights``), each stopped early on ``score_val``
    (the caller's validation metric, of the whole served score: the initial similarity score included),
    with one history entry each."""
    import lightgbm as lgb

    def feval(preds, _data):
        return "val_ndcg@10", score_val(preds), True

    params = {
        "objective": "lambdarank",
        "metric": "None",
        "learning_rate": hp.learning_rate,
        "num_leaves": hp.num_leaves,
        "min_data_in_leaf": hp.min_data_in_leaf,
        "feature_fraction": hp.feature_fraction,
        "lambdarank_truncation_level": 20,
        "num_threads": os.cpu_count() or 1,
        "seed": hp.seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbose": -1,
    }
    if debias:
        params["lambdarank_position_bias_regularization"] = hp.position_regularization
    models = []
    history = []
    for w in hp.sim_weights:
        train_set = _dataset(tr, w * tr.sim, debias)
        val_set = _dataset(va, w * va.sim, False)
        booster = lgb.train(
            params,
            train_set,
            num_boost_round=hp.rounds,
            valid_sets=[val_set],
            feval=feval,
            callbacks=[lgb.early_stopping(hp.early_stopping, verbose=False)],
        )
        model = GBDTRanker(float32_thresholds(booster), float(w))
        logit, weight = model.parts(va.cat, va.dense)
        value = float(score_val(logit + weight * va.sim))
        history.append({"sim_weight": float(w), "trees": booster.best_iteration or hp.rounds, "val": value})
        logger.info(f"[ranker] gbdt sim_weight {w}: {history[-1]['trees']} trees, validation {value:.4f}")
        models.append(model)
    return models, history


def choose(history: list[dict], tie: float) -> int:
    """The index of the kept weight: the best validation value, or among those within ``tie`` of it the
    largest weight. A new item's only signal is its title's similarity, and the validation window, made of
    items with history, cannot see that: a weight the validation cannot tell from the best keeps it."""
    best = max(h["val"] for h in history)
    tied = [i for i, h in enumerate(history) if h["val"] >= best - tie]
    return max(tied, key=lambda i: history[i]["sim_weight"])


def export_onnx(model: GBDTRanker, out: Path) -> Path:
    """The booster as ONNX with the ranker's inputs and outputs; written to a temp name, then renamed."""
    import onnx
    import onnxmltools
    from onnx import TensorProto, helper
    from onnxmltools.convert.common.data_types import FloatTensorType

    n_features = len(FEATURE_NAMES)
    trees = onnxmltools.convert_lightgbm(
        model.booster,
        initial_types=[("tree_features", FloatTensorType([None, n_features]))],
        target_opset=ONNX_ML_OPSET,
        zipmap=False,
    )
    graph = trees.graph
    tree_out = graph.output[0].name
    pre = [
        helper.make_node("Gather", [CAT_FEATURES, "tree_cat_index"], ["tree_cat"], axis=1),
        helper.make_node("Cast", ["tree_cat"], ["tree_cat_float"], to=TensorProto.FLOAT),
        helper.make_node("Concat", [DENSE_FEATURES, "tree_cat_float"], ["tree_features"], axis=1),
    ]
    post = [
        helper.make_node("Identity", [tree_out], [LOGIT]),
        helper.make_node("Shape", [LOGIT], ["logit_shape"]),
        helper.make_node("Expand", ["sim_weight_value", "logit_shape"], [SIM_WEIGHT]),
    ]
    nodes = [*pre, *graph.node, *post]
    inits = [
        *graph.initializer,
        helper.make_tensor("tree_cat_index", TensorProto.INT64, [len(TREE_CAT_INDEX)], TREE_CAT_INDEX),
        helper.make_tensor("sim_weight_value", TensorProto.FLOAT, [1, 1], [model.sim_weight]),
    ]
    new = helper.make_graph(
        nodes,
        "gbdt_ranker",
        [
            helper.make_tensor_value_info(CAT_FEATURES, TensorProto.INT64, ["n", N_CAT]),
            helper.make_tensor_value_info(DENSE_FEATURES, TensorProto.FLOAT, ["n", len(DENSE_COLUMNS)]),
        ],
        [
            helper.make_tensor_value_info(LOGIT, TensorProto.FLOAT, ["n", 1]),
            helper.make_tensor_value_info(SIM_WEIGHT, TensorProto.FLOAT, ["n", 1]),
        ],
        inits,
    )
    # sorted by domain: the converter lists them in hash-set order, which differs from run to run, and the
    # repository's checksum (the golden set's, the chart's) must not change when the model did not
    opsets = sorted(trees.opset_import, key=lambda o: o.domain)
    proto = helper.make_model(new, opset_imports=opsets, producer_name="shoprank-gbdt")
    proto.ir_version = trees.ir_version
    onnx.checker.check_model(proto)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.onnx")
    onnx.save(proto, str(tmp))
    os.replace(tmp, out)
    return out


def parity(model: GBDTRanker, onnx_path: Path, cat: np.ndarray, dense: np.ndarray) -> dict:
    """Largest absolute difference between LightGBM's own prediction and ONNX Runtime's on the same rows."""

    ref = model.parts(cat, dense)
    got = make_session(str(onnx_path)).run([LOGIT, SIM_WEIGHT], {CAT_FEATURES: cat, DENSE_FEATURES: dense})
    return {
        "n": len(cat),
        "max_abs_diff": float(max(np.abs(r - g[:, 0]).max() for r, g in zip(ref, got, strict=True))),
        "max_abs_output": float(max(np.abs(r).max() for r in ref)),
    }
