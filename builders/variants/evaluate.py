"""Measure a variant the same way as its reference: size, in-process speed, ranking quality.

Quality is on the test split of the build (the sessions after the validation cut):

* ranker variants score the test rows with the reference features and the reference query
  embeddings;
* encoder variants re-embed the query pool, so only the query–title cosine term of the score
  changes (titles keep their offline teacher embeddings, as served); the reference ranker's outputs
  are reused. Cosine to the teacher is reported on the query pool and on held-out titles.

Speed is in-process ONNX Runtime with the served thread settings (encoder: 2 intra-op threads, one
query of 8 and of 16 tokens, and a batch of 32 queries; ranker: 1 thread, 200 candidates, and a
batch of 4,096 rows). Served numbers come from ``benchmarks/variants.py``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from builders.data.dataset import ShopData
from builders.learning.evaluation import ndcg_of_lists, quality
from builders.learning.rows import datasets
from builders.learning.text_encoder import encode, pretrained_dir
from runtime.contract import ATTENTION_MASK, CAT_FEATURES, DENSE_FEATURES, INPUT_IDS, LOGIT, QUERY_TOKENS, SIM_WEIGHT
from runtime.features import FeatureStore
from runtime.ort_runner import make_session
from runtime.scoring import standardize_lists
from runtime.text import TextTokenizer

ENCODER_THREADS = 2
RANKER_THREADS = 1
HOLDOUT_TITLES = 2000


@dataclass
class Reference:
    """The reference build's data, loaded once for all variants."""

    work: Path
    titles: list[str]
    queries: list[str]
    item_emb: np.ndarray
    query_emb: np.ndarray
    rows: dict  # train / val / test Rows
    encoder_onnx: Path
    ranker_onnx: Path
    _ranker_out: tuple | None = None

    @property
    def tokenizer(self) -> Path:
        """The reference encoder's tokenizer.json (written next to it by the build's encoder step)."""
        return self.encoder_onnx.parent / "tokenizer.json"

    @classmethod
    def load(cls, work: Path, encoder_onnx: Path) -> Reference:

        shop = ShopData.load(work / "data")
        store = FeatureStore.load(work / "features", with_tokenizer=False, with_profiles=True)
        item_emb = np.load(work / "embeddings" / "items.npy")
        query_emb = np.load(work / "embeddings" / "queries.npy")
        rows = datasets(shop, store, item_emb, query_emb, store.profiles())
        return cls(
            work,
            list(shop.item_titles),
            list(shop.queries),
            item_emb,
            query_emb,
            rows,
            encoder_onnx,
            work / "ranker" / "model.onnx",
        )

    def ranker_outputs(self, onnx_path: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(logit, sim_weight)`` of the test rows; the reference's are cached."""
        if onnx_path is None and self._ranker_out is not None:
            return self._ranker_out

        te = self.rows["test"]
        session = make_session(str(onnx_path or self.ranker_onnx), intra_op_threads=2)
        out = [
            session.run(
                [LOGIT, SIM_WEIGHT], {CAT_FEATURES: te.cat[s : s + 65536], DENSE_FEATURES: te.dense[s : s + 65536]}
            )
            for s in range(0, len(te), 65536)
        ]
        logit, weight = (np.concatenate([o[i][:, 0] for o in out]) for i in (0, 1))
        if onnx_path is None:
            self._ranker_out = (logit, weight)
        return logit, weight


def _quality(rows, scores: np.ndarray) -> dict:

    return quality(rows, scores)


def ranker_quality(ref: Reference, onnx_path: Path) -> dict:
    logit, weight = ref.ranker_outputs(onnx_path)
    return _quality(ref.rows["test"], logit + weight * ref.rows["test"].sim)


def encoder_contribution(te, logit: np.ndarray, weight: np.ndarray, sim: np.ndarray) -> dict:
    """What the encoder adds to the searches' NDCG@10, and the share of it a variant keeps.

    NDCG@10 over all lists barely sees an encoder (homepage lists do not use it, logged clicks are
    position-biased): the gate needs the encoder's own contribution. It is measured on the search
    lists, with true relevance where the data has it (a generated shop), else logged gains:
    ``gain`` = NDCG@10(logit + w * sim) - NDCG@10(logit), and ``retained`` = the variant's gain
    over the reference encoder's (whose similarity is ``te.sim``).
    """

    searches = te.list_query() >= 0
    true = te.relevance is not None
    without = ndcg_of_lists(te, logit, searches, true)
    reference = ndcg_of_lists(te, logit + weight * te.sim, searches, true)
    variant = ndcg_of_lists(te, logit + weight * sim, searches, true)
    if without is None or reference is None or variant is None or reference <= without:
        return {}
    return {
        "searches_metric": "ndcg@10_true" if true else "ndcg@10",
        "ndcg@10_searches": variant,
        "encoder_gain": variant - without,
        "encoder_gain_retained": (variant - without) / (reference - without),
    }


def embed(onnx_path: Path, texts: list[str], length: int, tokenizer: Path | None = None) -> np.ndarray:

    return encode(onnx_path, texts, length, progress=False, tokenizer=tokenizer)


def encoder_quality(ref: Reference, onnx_path: Path) -> dict:

    te = ref.rows["test"]
    q_emb = embed(onnx_path, ref.queries, QUERY_TOKENS, ref.tokenizer)
    has_q = te.query >= 0
    cosine = te.cosine.copy()
    cosine[has_q] = (q_emb[te.query[has_q]] * ref.item_emb[te.item[has_q]]).sum(1)
    sim = standardize_lists(cosine, te.offsets)  # as served: z-scores over each request's candidates
    logit, weight = ref.ranker_outputs()
    quality = _quality(te, logit + weight * sim)
    quality.update(encoder_contribution(te, logit, weight, sim))
    held_out = ref.titles[-HOLDOUT_TITLES:]
    t_emb = embed(onnx_path, held_out, 32, ref.tokenizer)
    t_ref = ref.item_emb[len(ref.titles) - len(held_out) : len(ref.titles)]
    quality["cosine_queries"] = float(np.mean((q_emb * ref.query_emb).sum(1)))
    quality["cosine_queries_min"] = float(np.min((q_emb * ref.query_emb).sum(1)))
    quality["cosine_held_out_titles"] = float(np.mean((t_emb * t_ref).sum(1)))
    return quality


def _p50_ms(fn, repeats: int, warmup: int = 20) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def encoder_speed(onnx_path: Path, queries: list[str], repeats: int = 100, tokenizer: Path | None = None) -> dict:

    tok = TextTokenizer(tokenizer or pretrained_dir() / "tokenizer.json")
    session = make_session(str(onnx_path), intra_op_threads=ENCODER_THREADS)
    ids, mask = tok.encode(queries)
    by_len = {int(-(-m.sum() // 4) * 4): i for i, m in enumerate(mask)}
    out = {}
    for width in (8, 16):
        i = by_len.get(width, 0)
        feed = {INPUT_IDS: ids[i : i + 1, :width], ATTENTION_MASK: mask[i : i + 1, :width]}
        out[f"p50_ms_{width}tok"] = _p50_ms(lambda f=feed: session.run(None, f), repeats)
    batch = [i for i, m in enumerate(mask) if m.sum() <= 8][:32]
    feed = {INPUT_IDS: ids[batch, :8], ATTENTION_MASK: mask[batch, :8]}
    out["queries_per_s_batch32"] = len(batch) / (_p50_ms(lambda: session.run(None, feed), max(10, repeats // 10)) / 1e3)
    return out


def ranker_speed(onnx_path: Path, rows, repeats: int = 100) -> dict:

    session = make_session(str(onnx_path), intra_op_threads=RANKER_THREADS)
    small = {CAT_FEATURES: rows.cat[:200], DENSE_FEATURES: rows.dense[:200]}
    big = {CAT_FEATURES: rows.cat[:4096], DENSE_FEATURES: rows.dense[:4096]}
    return {
        "p50_ms_200rows": _p50_ms(lambda: session.run(None, small), repeats),
        "rows_per_s_batch4096": 4096 / (_p50_ms(lambda: session.run(None, big), max(10, repeats // 10)) / 1e3),
    }


def interleaved(paths: dict[str, Path], measure, rounds: int = 3) -> dict[str, dict]:
    """``measure(path)`` for every variant, ``rounds`` times in alternating order; the median per number.

    On a shared 2-core machine the speed drifts over minutes; interleaving makes the drift hit every
    variant alike, so the ratios between variants are fair.
    """
    runs: dict[str, list[dict]] = {name: [] for name in paths}
    for r in range(rounds):
        for name in list(paths) if r % 2 == 0 else list(reversed(paths)):
            runs[name].append(measure(paths[name]))
    return {name: {key: float(np.median([m[key] for m in ms])) for key in ms[0]} for name, ms in runs.items()}


def size_mb(path: Path) -> float:
    return path.stat().st_size / 1e6


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
