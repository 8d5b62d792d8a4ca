"""The ranker: a DCN-v2 style CTR model, trained on the shop's logs and exported to ONNX.

Inputs per candidate: categorical ids (user, item, category, brand, price bucket, segment, query
category) through embedding tables, and dense features (query match, affinities, popularity, CTR,
stock, price). A cross network and a deep MLP run side by side on the concatenation. The head has two
outputs per candidate: ``logit`` and ``sim_weight``; the final score adds ``sim_weight * cos(context,
item title)`` (``runtime/scoring.py``), the query-item similarity from the text encoder.

CLI: ``python -m builders.ranker --work build/small`` (needs the earlier build steps' files).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from builders.feature_tables import STATS_FRACTION
from builders.metrics import auc, ndcg_at_k
from builders.shop import Shop, impressions_of, split_by_time
from runtime.contract import CAT_FEATURES, DENSE_FEATURES, LOGIT, N_DENSE, SIM_WEIGHT
from runtime.features import FeatureTables, Lexicon, candidate_features

OPSET = 17


@dataclass
class Rows:
    """A training/evaluation matrix: one row per impression, grouped by session."""

    cat: np.ndarray
    dense: np.ndarray
    sim: np.ndarray
    click: np.ndarray
    gain: np.ndarray        # 2^(click + purchase) - 1 (graded logged feedback)
    relevance: np.ndarray   # hidden ground truth, for the oracle and the "true" NDCG
    offsets: np.ndarray     # session boundaries within these rows
    query: np.ndarray       # index into the shop's query pool, -1 = no query (recommend)
    item: np.ndarray        # item index (row of the title embeddings)

    def __len__(self) -> int:
        return len(self.click)


def make_rows(shop: Shop, tables: FeatureTables, lexicon: Lexicon, item_emb: np.ndarray,
              query_emb: np.ndarray, user_profiles: np.ndarray, sessions: np.ndarray) -> Rows:
    """Features for every impression of ``sessions``, computed by the serving code (``candidate_features``)."""
    imp = impressions_of(shop, sessions)
    sess = shop.impression_session()[imp]
    users = shop.session_user[sess]
    items = shop.imp_item[imp]
    q = shop.session_query[sess]
    has_q = q >= 0
    intents = [lexicon.parse(text) for text in shop.queries]
    q_cat = np.array([i.category for i in intents] + [-1])[q]   # q = -1 reads the trailing -1
    q_brand = np.array([i.brand for i in intents] + [-1])[q]
    q_attr = np.array([i.attribute for i in intents] + [-1])[q]
    cat, dense = candidate_features(tables, users, items, has_q, q_cat, q_brand, q_attr)
    context = np.where(has_q[:, None], query_emb[np.maximum(q, 0)], user_profiles[users])
    sim = (context * item_emb[items]).sum(1).astype(np.float32)
    lengths = np.diff(shop.session_offsets)[sessions]
    return Rows(cat, dense, sim, shop.imp_click[imp].astype(np.float32),
                (2.0 ** (shop.imp_click[imp] + shop.imp_purchase[imp]) - 1).astype(np.float32),
                shop.imp_relevance[imp], np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), q, items)


def cardinalities(tables: FeatureTables, n_categories: int, n_brands: int) -> list[int]:
    """Embedding-table sizes for the categorical columns (index 0 = unknown)."""
    return [tables.n_users + 1, tables.n_items + 1, n_categories + 1, n_brands + 1,
            int(tables.item_price_bucket.max()) + 2, int(tables.user_segment.max()) + 2, n_categories + 1]


def build_model(cards: list[int], dense_mean: np.ndarray, dense_std: np.ndarray, emb_dim: int = 16,
                cross_layers: int = 2, hidden: tuple[int, ...] = (128, 64)):
    import torch
    from torch import nn

    class DCNv2Ranker(nn.Module):
        def __init__(self):
            super().__init__()
            self.embeddings = nn.ModuleList([nn.Embedding(c, emb_dim) for c in cards])
            self.register_buffer("dense_mean", torch.as_tensor(dense_mean, dtype=torch.float32))
            self.register_buffer("dense_std", torch.as_tensor(dense_std, dtype=torch.float32))
            width = emb_dim * len(cards) + N_DENSE
            self.cross = nn.ModuleList([nn.Linear(width, width) for _ in range(cross_layers)])
            layers, prev = [], width
            for h in hidden:
                layers += [nn.Linear(prev, h), nn.ReLU()]
                prev = h
            self.deep = nn.Sequential(*layers)
            self.head = nn.Linear(width + prev, 2)

        def forward(self, cat_features, dense_features):
            embs = [emb(cat_features[:, i]) for i, emb in enumerate(self.embeddings)]
            dense = (dense_features - self.dense_mean) / self.dense_std
            x0 = torch.cat(embs + [dense], dim=1)
            x = x0
            for layer in self.cross:
                x = x0 * layer(x) + x  # DCN-v2 cross layer
            out = self.head(torch.cat([x, self.deep(x0)], dim=1))
            return out[:, :1], out[:, 1:]

    return DCNv2Ranker()


def predict(model, rows: Rows, batch: int = 65536) -> np.ndarray:
    """Final scores (logit + sim_weight * sim) of ``rows`` with the torch model."""
    import torch

    out = np.empty(len(rows), np.float32)
    with torch.no_grad():
        for s in range(0, len(rows), batch):
            logit, w = model(torch.from_numpy(rows.cat[s:s + batch]), torch.from_numpy(rows.dense[s:s + batch]))
            out[s:s + batch] = (logit[:, 0] + w[:, 0] * torch.from_numpy(rows.sim[s:s + batch])).numpy()
    return out


def quality(rows: Rows, scores: np.ndarray) -> dict:
    return {
        "auc": auc(rows.click, scores),
        "ndcg@10": ndcg_at_k(rows.gain, scores, rows.offsets, 10),
        "ndcg@10_true": ndcg_at_k(1.0 / (1.0 + np.exp(-rows.relevance)), scores, rows.offsets, 10),
    }


def datasets(shop: Shop, tables: FeatureTables, lexicon: Lexicon, item_emb: np.ndarray, query_emb: np.ndarray,
             user_profiles: np.ndarray) -> dict[str, Rows]:
    """Train (sessions between the stats window and the train cut), val and test rows."""
    split = split_by_time(shop)
    stats_end = int(round(shop.profile.days * STATS_FRACTION))
    train_sessions = split["train"][shop.session_day[split["train"]] >= stats_end]
    make = lambda s: make_rows(shop, tables, lexicon, item_emb, query_emb, user_profiles, s)  # noqa: E731
    return {"train": make(train_sessions), "val": make(split["val"]), "test": make(split["test"])}


def fit(model, tr: Rows, va: Rows, epochs: int = 4, batch: int = 2048, lr: float = 2e-3, seed: int = 0,
        progress: bool = True, desc: str = "train ranker"):
    """Train ``model`` on ``tr`` with BCE on clicks; keep the epoch with the best val NDCG@10.

    Used for the reference ranker and for fine-tuning its compressed variants (pruned, low-rank).
    Returns the per-epoch val history.
    """
    import torch
    from tqdm import tqdm

    torch.set_num_threads(os.cpu_count() or 1)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    rng = np.random.default_rng(seed)
    best, best_state, history = -1.0, None, []
    for epoch in range(epochs):
        model.train()
        perm = rng.permutation(len(tr))
        for s in tqdm(range(0, len(tr), batch), desc=f"{desc} epoch {epoch + 1}/{epochs}",
                      disable=not progress, unit="batch"):
            idx = perm[s:s + batch]
            logit, w = model(torch.from_numpy(tr.cat[idx]), torch.from_numpy(tr.dense[idx]))
            score = logit[:, 0] + w[:, 0] * torch.from_numpy(tr.sim[idx])
            loss = loss_fn(score, torch.from_numpy(tr.click[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        val = quality(va, predict(model, va))
        history.append({"epoch": epoch + 1, **val})
        if val["ndcg@10"] > best:
            best = val["ndcg@10"]
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    model.eval()
    return history


def train(shop: Shop, tables: FeatureTables, lexicon: Lexicon, item_emb: np.ndarray, query_emb: np.ndarray,
          user_profiles: np.ndarray, epochs: int = 4, batch: int = 2048, lr: float = 2e-3, seed: int = 0,
          progress: bool = True):
    """Train the reference ranker; pick the best epoch on val.

    Returns ``(model, report)``; the report has test-split quality next to the baselines.
    """
    import torch

    torch.manual_seed(seed)
    rows = datasets(shop, tables, lexicon, item_emb, query_emb, user_profiles)
    tr, va, te = rows["train"], rows["val"], rows["test"]
    mean, std = tr.dense.mean(0), tr.dense.std(0) + 1e-3
    model = build_model(cardinalities(tables, len(lexicon.categories), len(lexicon.brands)), mean, std)
    history = fit(model, tr, va, epochs, batch, lr, seed, progress)
    pop = tables.item_log_clicks[shop.imp_item[impressions_of(shop, split_by_time(shop)["test"])]]
    rand = np.random.default_rng(1).random(len(te)).astype(np.float32)
    report = {
        "rows": {"train": len(tr), "val": len(va), "test": len(te)},
        "val_history": history,
        "test": {"ranker": quality(te, predict(model, te)), "popularity": quality(te, pop),
                 "random": quality(te, rand), "ground_truth": quality(te, te.relevance)},
    }
    return model, report


def export_onnx(model, out: Path) -> Path:
    """Export with a dynamic candidate axis; written to a temp name, then renamed."""
    import torch

    n_cat = len(model.embeddings)
    cat = torch.zeros((3, n_cat), dtype=torch.int64)
    dense = torch.zeros((3, N_DENSE), dtype=torch.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.onnx")
    with torch.no_grad():
        torch.onnx.export(model, (cat, dense), str(tmp), dynamo=False, opset_version=OPSET,
                          input_names=[CAT_FEATURES, DENSE_FEATURES], output_names=[LOGIT, SIM_WEIGHT],
                          dynamic_axes={CAT_FEATURES: {0: "n"}, DENSE_FEATURES: {0: "n"}, LOGIT: {0: "n"},
                                        SIM_WEIGHT: {0: "n"}})
    os.replace(tmp, out)
    return out


def parity(model, onnx_path: Path, cat: np.ndarray, dense: np.ndarray) -> dict:
    """Largest absolute difference between PyTorch and ONNX Runtime outputs on the same rows."""
    import torch

    from server.ort_runner import make_session

    with torch.no_grad():
        ref = [t.numpy() for t in model(torch.from_numpy(cat), torch.from_numpy(dense))]
    got = make_session(str(onnx_path)).run([LOGIT, SIM_WEIGHT], {CAT_FEATURES: cat, DENSE_FEATURES: dense})
    return {"n": len(cat), "max_abs_diff": float(max(np.abs(r - g).max() for r, g in zip(ref, got)))}
