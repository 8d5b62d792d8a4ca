"""The DCN-v2 ranker: a cross network and a deep MLP side by side, in PyTorch, exported to ONNX.

Inputs per candidate: categorical ids (user, item, category, brand, price bucket, segment, query
category) through embedding tables, and dense features (query match, affinities, popularity, CTR,
stock, price). The head has two outputs per candidate: ``logit`` and ``sim_weight``; the final score
adds ``sim_weight * z(cos(context, item title))`` (``runtime/scoring.py``). The twin of ``gbdt.py``
(LightGBM's LambdaMART); ``ranker.py`` trains either and keeps the better.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from builders.learning.dcn_model import build_model
from builders.learning.evaluation import quality
from builders.learning.rows import MAX_POSITION, Rows
from runtime.contract import CAT_FEATURES, DENSE_FEATURES, LOGIT, N_DENSE, SIM_WEIGHT
from runtime.features import FeatureStore
from runtime.ort_runner import make_session
from runtime.tables import FeatureTables

OPSET = 17


SEEN_LR = 0.05  # Adam step of the examination logits (the model's own step is the config's learning_rate)


def cardinalities(tables: FeatureTables, n_categories: int, n_brands: int) -> list[int]:
    """Embedding-table sizes for the categorical columns (index 0 = unknown)."""
    return [
        tables.n_users + 1,
        tables.n_items + 1,
        n_categories + 1,
        n_brands + 1,
        int(tables.item_price_bucket.max()) + 2,
        int(tables.user_segment.max()) + 2,
        n_categories + 1,
    ]


def predict_parts(model, rows: Rows, batch: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """``(logit, sim_weight)`` of ``rows`` with the torch model."""
    import torch

    logit = np.empty(len(rows), np.float32)
    weight = np.empty(len(rows), np.float32)
    with torch.no_grad():
        for s in range(0, len(rows), batch):
            lg, w = model(torch.from_numpy(rows.cat[s : s + batch]), torch.from_numpy(rows.dense[s : s + batch]))
            logit[s : s + batch], weight[s : s + batch] = lg[:, 0].numpy(), w[:, 0].numpy()
    return logit, weight


def predict(model, rows: Rows, batch: int = 65536) -> np.ndarray:
    """Final scores (logit + sim_weight * sim) of ``rows`` with the torch model."""
    logit, weight = predict_parts(model, rows, batch)
    return logit + weight * rows.sim


@dataclass
class Fit:
    """What ``fit`` learned besides the weights: the per-epoch validation history, and the examination
    curve (relative to the top position) where PAL modelled position bias, else None."""

    history: list[dict]
    learned_examination: list[float] | None = None


def fit(
    model,
    tr: Rows,
    va: Rows,
    epochs: int = 4,
    batch: int = 2048,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = True,
    desc: str = "train ranker",
    position_bias: str = "pal",
):
    """Train ``model`` on ``tr`` with BCE on clicks; keep the epoch with the best val NDCG@10 (debiased, IPS,
    where the rows have it).

    ``position_bias="pal"`` (where the rows know positions): a click is modelled as seen x relevant,
    ``P(click) = sigmoid(b[position]) * sigmoid(score)`` with one learned ``b`` per position (PAL, Guo et
    al., RecSys 2019), trained jointly; only ``score`` is the model, exported and served, so the ranker
    learns what shoppers click once they see an item, not the old ranking's order. ``"none"``: BCE of
    ``sigmoid(score)`` on clicks. Used for the reference ranker and for fine-tuning its compressed variants
    (pruned, low-rank). Returns the per-epoch val history.
    """
    import torch
    from tqdm import tqdm

    torch.set_num_threads(os.cpu_count() or 1)
    pal = position_bias == "pal" and tr.position is not None
    seen = torch.zeros(MAX_POSITION + 2, requires_grad=True)  # examination logits, training only
    groups: list[dict] = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    if pal:  # a few dozen numbers that must travel far (deep positions are rarely seen): their own step size
        groups.append({"params": [seen], "lr": SEEN_LR})
    opt = torch.optim.Adam(groups, lr=lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    logsig = torch.nn.functional.logsigmoid
    rng = np.random.default_rng(seed)
    best, best_state, history = -1.0, None, []
    for epoch in range(epochs):
        model.train()
        perm = rng.permutation(len(tr))
        for s in tqdm(
            range(0, len(tr), batch), desc=f"{desc} epoch {epoch + 1}/{epochs}", disable=not progress, unit="batch"
        ):
            idx = perm[s : s + batch]
            logit, w = model(torch.from_numpy(tr.cat[idx]), torch.from_numpy(tr.dense[idx]))
            score = logit[:, 0] + w[:, 0] * torch.from_numpy(tr.sim[idx])
            y = torch.from_numpy(tr.click[idx])
            if pal and tr.position is not None:
                log_p = logsig(seen[torch.from_numpy(tr.position[idx])]) + logsig(score)
                log_not = torch.log1p(-torch.exp(log_p).clamp(max=1 - 1e-6))
                loss = -(y * log_p + (1 - y) * log_not).mean()
            else:
                loss = loss_fn(score, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        val = quality(va, predict(model, va))
        history.append({"epoch": epoch + 1, **val})
        if val.get("ndcg@10_ips", val["ndcg@10"]) > best:  # the debiased view where the rows have it
            best = val.get("ndcg@10_ips", val["ndcg@10"])
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    model.eval()
    learned = None
    if pal:  # what PAL learned of the examination curve, relative to the top position (docs/quality.md plots it)
        curve = torch.sigmoid(seen.detach()).numpy()
        learned = [round(float(x), 5) for x in curve[: MAX_POSITION + 1] / curve[0]]
    return Fit(history, learned)


def train_dcn(tr: Rows, va: Rows, store: FeatureStore, hp, progress: bool = True):
    """The DCN-v2 ranker on ``tr``, best epoch on ``va``; returns ``(model, Fit)``."""
    import torch

    torch.manual_seed(hp.seed)
    mean, std = tr.dense.mean(0), tr.dense.std(0)
    # A column constant in training (item_known is 1 on every training row) keeps a scale of 1: with
    # std + 1e-3 a cold item's 0 became -1,000 standard deviations, and its logit about 7,000 (cold items
    # ranked first). Training is unchanged: the column is 0 after centering either way.
    std = np.where(std < 1e-3, 1.0, std + 1e-3)
    model = build_model(
        cardinalities(store.tables, len(store.lexicon.categories), len(store.lexicon.brands)),
        mean,
        std,
        emb_dim=hp.embedding_dim,
        cross_layers=hp.cross_layers,
        hidden=tuple(hp.hidden),
    )
    learned = fit(
        model, tr, va, hp.epochs, hp.batch_size, hp.learning_rate, hp.seed, progress, position_bias=hp.position_bias
    )
    return model, learned


def export_onnx(model, out: Path) -> Path:
    """Export with a dynamic candidate axis; written to a temp name, then renamed."""
    import torch

    n_cat = len(model.embeddings)
    cat = torch.zeros((3, n_cat), dtype=torch.int64)
    dense = torch.zeros((3, N_DENSE), dtype=torch.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.onnx")
    with torch.no_grad():
        torch.onnx.export(
            model,
            (cat, dense),
            str(tmp),
            dynamo=False,
            opset_version=OPSET,
            input_names=[CAT_FEATURES, DENSE_FEATURES],
            output_names=[LOGIT, SIM_WEIGHT],
            dynamic_axes={CAT_FEATURES: {0: "n"}, DENSE_FEATURES: {0: "n"}, LOGIT: {0: "n"}, SIM_WEIGHT: {0: "n"}},
        )
    os.replace(tmp, out)
    return out


def parity(model, onnx_path: Path, cat: np.ndarray, dense: np.ndarray) -> dict:
    """Largest absolute difference between PyTorch and ONNX Runtime outputs on the same rows."""
    import torch

    with torch.no_grad():
        ref = [t.numpy() for t in model(torch.from_numpy(cat), torch.from_numpy(dense))]
    got = make_session(str(onnx_path)).run([LOGIT, SIM_WEIGHT], {CAT_FEATURES: cat, DENSE_FEATURES: dense})
    return {
        "n": len(cat),
        "max_abs_diff": float(max(np.abs(r - g).max() for r, g in zip(ref, got, strict=True))),
        "max_abs_output": float(max(np.abs(r).max() for r in ref)),
    }
