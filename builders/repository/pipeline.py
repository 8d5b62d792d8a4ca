"""The served pipeline run in-process: same files, same code, ONNX Runtime, no server.

Reads a built model repository exactly as the server does (the tokenizer of ``query_tokens``, the
feature store of ``search_features``, ``model.onnx`` of the encoder and the ranker, the item embeddings
of ``topk``) and chains the steps in
one Python process. Used as the reference in the server-parity test and as the baseline in
``make bench``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from builders.repository.assemble import retrieval_scan
from builders.repository.model_specs import spec_by_name
from runtime import contract as c
from runtime.features import FeatureStore
from runtime.ort_runner import make_session
from runtime.retrieval import Retriever
from runtime.scoring import TopK
from runtime.text import QueryTokens


class InProcessPipeline:
    """``version``: the version folder every model is read from (1 in a build's repository; a served
    repository holds the live release and the previous one, ``server/publish.py``)."""

    def __init__(self, repo: str | Path, version: int = 1):
        repo = Path(repo)
        specs = spec_by_name()
        v = str(version)
        self.version = version
        # One query per encoder run, as in the fused layout: its tokens are not padded (runtime/text.py)
        self.search_store = FeatureStore.load(repo / c.SEARCH_FEATURES / v, query_pad_multiple=c.ONE_QUERY_PAD_MULTIPLE)
        self.recommend_store = FeatureStore.load(
            repo / c.RECOMMEND_FEATURES / v, with_tokenizer=False, with_profiles=True
        )
        self.topk = TopK.load(repo / c.TOPK / v)
        self.query_tokens = QueryTokens.load(repo / c.QUERY_TOKENIZER / v, pad_multiple=c.ONE_QUERY_PAD_MULTIPLE)
        self.repo = repo
        self._retrievers: dict[str, Retriever] = {}  # loaded on first use (older repositories have none)
        self.last_candidates = np.zeros(0, np.int64)  # the last recommend_catalog's candidates, before ranking
        self.last_response: dict[str, np.ndarray] = {}  # topk's whole answer to the last call (groups, info)

        def session(name: str):
            threads = int(specs[name].parameters.get("intra_op_thread_count", "1"))
            return make_session(str(repo / name / v / "model.onnx"), intra_op_threads=threads)

        self.encoder = session(c.TEXT_ENCODER)
        self.search_store.embed = self.embed  # a query the statistics do not know borrows by its embedding
        self.ranker = session(c.RANKER)

    def _rank(
        self, feats: dict, context: np.ndarray, item_ids: np.ndarray, k: int, options: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        logit, sim_weight = self.ranker.run(
            [c.LOGIT, c.SIM_WEIGHT], {c.CAT_FEATURES: feats[c.CAT_FEATURES], c.DENSE_FEATURES: feats[c.DENSE_FEATURES]}
        )
        out = self.topk.rank(
            context,
            logit,
            sim_weight,
            feats[c.ITEM_ROWS],
            item_ids,
            np.array([k], np.int32),
            feats.get(c.AVAILABLE),
            feats.get(c.NEW_EMBEDDINGS),
            feats.get(c.PRICES),
            feats.get(c.NOTES),
            feats.get(c.BOOSTS),
            feats.get(c.PINS),
            options,
        )
        self.last_response = out
        return out[c.TOP_ITEM_IDS], out[c.TOP_SCORES]

    def search(
        self, user_id: int, query: str | bytes, item_ids: np.ndarray, k: int, options: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``options``: the request's ``shoprank_options`` JSON (``runtime/options.py``), as every call takes."""
        raw = query.encode("utf-8") if isinstance(query, str) else query
        item_ids = np.asarray(item_ids, np.int64)
        feats = self.search_store.search(
            np.array([user_id], np.int64), np.array([raw], object), item_ids, options=options
        )
        (emb,) = self.encoder.run(
            [c.SENTENCE_EMBEDDING], {c.INPUT_IDS: feats[c.INPUT_IDS], c.ATTENTION_MASK: feats[c.ATTENTION_MASK]}
        )
        return self._rank(feats, emb, item_ids, k, options)

    def recommend(
        self, user_id: int, item_ids: np.ndarray, k: int, options: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        item_ids = np.asarray(item_ids, np.int64)
        feats = self.recommend_store.recommend(np.array([user_id], np.int64), item_ids, options=options)
        return self._rank(feats, feats[c.CONTEXT_EMBEDDING], item_ids, k, options)

    def retriever(self, recommend: bool) -> Retriever:
        name = c.RETRIEVE_RECOMMEND if recommend else c.RETRIEVE_SEARCH
        if name not in self._retrievers:
            scan = retrieval_scan(self.repo, name)  # the item_scan model where the repository's configs use it
            folder = self.repo / name / str(self.version)
            self._retrievers[name] = Retriever.load(folder, recommend=recommend, scan=scan)
        return self._retrievers[name]

    def embed(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """The encoder's ``[1, D]`` embedding of one query's tokens (what search_features asks through BLS)."""
        (emb,) = self.encoder.run([c.SENTENCE_EMBEDDING], {c.INPUT_IDS: input_ids, c.ATTENTION_MASK: attention_mask})
        return emb

    def query_embedding(self, query: str | bytes) -> np.ndarray:
        """The encoder's ``[1, D]`` embedding of a query, tokenised and checked as ``query_tokens`` does."""
        raw = query.encode("utf-8") if isinstance(query, str) else query
        tokens = self.query_tokens.tokens(np.array([raw], object))
        (emb,) = self.encoder.run([c.SENTENCE_EMBEDDING], tokens)
        return emb

    def search_catalog(
        self,
        user_id: int,
        query: str | bytes,
        k: int,
        exclude: np.ndarray | None = None,
        options: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """search_catalog: retrieve from the whole catalogue, rank, the best ``k``."""
        raw = query.encode("utf-8") if isinstance(query, str) else query
        emb = self.query_embedding(raw)
        feats = self.retriever(False).search(
            np.array([user_id], np.int64), np.array([raw], object), emb, _ids(exclude), options=options
        )
        self.last_candidates = feats[c.ITEM_IDS]
        return self._rank(feats, emb, feats[c.ITEM_IDS], k, options)

    def recommend_catalog(
        self,
        user_id: int,
        k: int,
        context: np.ndarray | None = None,
        exclude: np.ndarray | None = None,
        recent: np.ndarray | None = None,
        options: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """recommend_catalog: retrieve for the user (and the context items), rank, the best ``k``. ``recent``:
        the user's recent interactions (ids, newest first), as the online store would hold them."""
        feats = self.retriever(True).recommend(
            np.array([user_id], np.int64),
            _ids(context),
            _ids(exclude),
            recent=None if recent is None else _ids(recent),
            options=options,
        )
        self.last_candidates = feats[c.ITEM_IDS]  # what the ranker saw (the benchmarks' retrieval recall)
        return self._rank(feats, feats[c.CONTEXT_EMBEDDING], feats[c.ITEM_IDS], k, options)


def _ids(values: np.ndarray | None) -> np.ndarray:
    return np.zeros(0, np.int64) if values is None else np.asarray(values, np.int64)
