"""Train the ranker: the DCN-v2 (``dcn.py``) or LightGBM's LambdaMART (``gbdt.py``) on the shop's logs.

``ranker.kind``: auto trains both on the same rows (``rows.py``) and keeps the better one on the
validation window's debiased NDCG@10; ``train`` returns the trained models and the report
(``evaluation.py``) of the held-out days. Run as the build's ``ranker`` step (``builders/steps.py``);
hyper-parameters come from the config.
"""

from __future__ import annotations

import logging

import numpy as np

from builders.data.config import RankerConfig
from builders.data.dataset import ShopData
from builders.learning import gbdt
from builders.learning.dcn import predict_parts, train_dcn
from builders.learning.evaluation import baselines, quality, test_report, val_metric
from builders.learning.gbdt import GBDTRanker
from builders.learning.rows import Rows, datasets, propensities
from runtime.features import FeatureStore

logger = logging.getLogger(__name__)


def parts(model, rows: Rows) -> tuple[np.ndarray, np.ndarray]:
    """``(logit, sim_weight)`` of ``rows`` with either kind of ranker."""

    if isinstance(model, GBDTRanker):
        return model.parts(rows.cat, rows.dense)
    return predict_parts(model, rows)


def train_kinds(rows: dict[str, Rows], store: FeatureStore, hp, progress: bool = True) -> dict:
    """Every kind ``hp.kind`` asks for (auto: both), trained on the same rows: ``{kind: (model, info)}``."""

    tr, va = rows["train"], rows["val"]
    score_val = val_metric(va)
    kinds = ("dcn", "gbdt") if hp.kind == "auto" else (hp.kind,)
    out = {}
    for kind in kinds:
        learned = None
        if kind == "dcn":
            model, dcn_fit = train_dcn(tr, va, store, hp, progress)
            history, learned = dcn_fit.history, dcn_fit.learned_examination
        else:
            model, history = gbdt.train(tr, va, hp.gbdt, hp.position_bias == "pal", score_val)
        logit, weight = parts(model, va)
        info = {"val_ndcg@10_selection": float(score_val(logit + weight * va.sim)), "history": history}
        out[kind] = (model, {**info, **({"learned_examination": learned} if learned else {})})
    return out


def train(
    shop: ShopData,
    store: FeatureStore,
    item_emb: np.ndarray,
    query_emb: np.ndarray,
    user_profiles: np.ndarray,
    hp=None,
    progress: bool = True,
    test_store: FeatureStore | None = None,
):
    """Train the ranker kind(s) of ``hp`` (``RankerConfig``) and keep the better on the validation window;
    the held-out days' rows read ``test_store`` where given (the served tables), else ``store``.

    Returns ``(models, report)``: ``models`` maps each trained kind to its model (``report["kind"]`` is the
    kept one); the report has the test split's quality next to the baselines in the three views, by kind of
    list, and the similarity breakdown (``similarity_breakdown``) of the test searches.
    """

    hp = hp or RankerConfig()
    curve = propensities(shop)
    rows = datasets(shop, store, item_emb, query_emb, user_profiles, hp.cold_share, curve, test_store)
    tables = store.tables
    tr, va, te = rows["train"], rows["val"], rows["test"]
    trained = train_kinds(rows, store, hp, progress)
    kind = max(trained, key=lambda k: trained[k][1]["val_ndcg@10_selection"])
    test_parts = {k: parts(m, te) for k, (m, _) in trained.items()}
    logit, weight = test_parts[kind]
    scores = {
        "ranker": logit + weight * te.sim,
        **{f"ranker_{k}": lg + w * te.sim for k, (lg, w) in test_parts.items()},
        **baselines(tables, te),
    }
    if len(trained) == 1:
        del scores[f"ranker_{kind}"]
    test = {name: quality(te, score) for name, score in scores.items()}
    if te.relevance is not None:
        test["ground_truth"] = quality(te, te.relevance)
        scores["ground_truth"] = te.relevance
    about = {
        "selection": "NDCG@10 on the validation window, "
        + ("debiased (IPS)" if va.ips_gain is not None else "on logged gains"),
        "position_bias": hp.position_bias,
        "propensity": curve,
        "rows": {"train": len(tr), "val": len(va), "test": len(te)},
    }
    infos = {k: info for k, (_, info) in trained.items()}
    report = test_report(shop, te, scores, test, logit, weight, infos, kind, about)
    return {k: m for k, (m, _) in trained.items()}, report
