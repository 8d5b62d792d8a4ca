"""The peer a team would write instead of our Triton stack: FastAPI around the same ONNX files, run by ONNX
Runtime in process (``builders/repository/pipeline.py``: the same feature code, the same models).

Benchmark-only (``make bench-peer`` installs its pinned dependencies from requirements-bench.txt):

    SHOPRANK_PEER_REPO=build/default/bench_repo uvicorn benchmarks.peer_service:app --port 8090 --workers 1

``POST /search`` ``{"user_id", "query", "item_ids", "k"}``, ``POST /search_catalog`` ``{"user_id", "query",
"k"}`` and ``POST /recommend_catalog`` ``{"user_id", "context", "k"}`` answer ``{"item_ids", "scores"}``;
plain ``def`` endpoints, so FastAPI runs them on its thread pool, as such a service usually does.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel

from builders.repository.pipeline import InProcessPipeline

app = FastAPI()


@lru_cache(maxsize=1)
def pipeline() -> InProcessPipeline:
    return InProcessPipeline(os.environ["SHOPRANK_PEER_REPO"])


class Search(BaseModel):
    user_id: int
    query: str
    item_ids: list[int]
    k: int = 10


class SearchCatalog(BaseModel):
    user_id: int
    query: str
    k: int = 10


class RecommendCatalog(BaseModel):
    user_id: int
    context: list[int] = []
    k: int = 10


def _answer(ids: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    return {"item_ids": ids.tolist(), "scores": scores.tolist()}


@app.on_event("startup")
def _load() -> None:
    pipeline()


@app.get("/ready")
def ready() -> dict[str, bool]:
    return {"ready": True}


@app.post("/search")
def search(req: Search) -> dict[str, Any]:
    return _answer(*pipeline().search(req.user_id, req.query, np.asarray(req.item_ids, np.int64), req.k))


@app.post("/search_catalog")
def search_catalog(req: SearchCatalog) -> dict[str, Any]:
    return _answer(*pipeline().search_catalog(req.user_id, req.query, req.k))


@app.post("/recommend_catalog")
def recommend_catalog(req: RecommendCatalog) -> dict[str, Any]:
    return _answer(*pipeline().recommend_catalog(req.user_id, req.k, np.asarray(req.context, np.int64)))
