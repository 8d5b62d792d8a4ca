"""Write the golden request set of a built repository: requests of every kind and the build's answers.

The answers come from the in-process pipeline (``builders.repository.pipeline``): the repository's own
files and code run under ONNX Runtime on the build machine, the reference the server-parity tests hold
the server to. The file's format and its reader are ``rollout/golden.py``; ``python -m rollout verify``
compares the pods' answers with these.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from builders.repository.pipeline import InProcessPipeline
from rollout.golden import CATALOGUE, GoldenRequest, GoldenSet, repository_checksum
from runtime import contract as c
from runtime.catalog import Catalog
from runtime.contract import GOLDEN_FILE
from runtime.errors import InvalidInput
from runtime.lexicon import CATEGORY_SEPARATOR
from shoprank_client.listing import parse_info

# Scores may differ by this much (absolute, on the ranker's logit) between a pod and the build.
# cpu: the same ONNX files and code on ONNX Runtime; only float noise (the server-parity tests use 1e-4).
# gpu: TensorRT engines built on the node in fp16 or INT8. NOT MEASURED on these machines (no GPU): a
# starting point to tighten from `verify` runs on the node type (`--tolerance`).
TOLERANCE = {"cpu": 1e-3, "gpu/fp16": 0.05, "gpu/int8": 0.25}
UNKNOWN_ITEM_BASE = 10**15  # ids no catalogue of the demo or the contract's hashes is likely to hold
COLD_USER_BASE = 9 * 10**15


def _plan(
    users: np.ndarray, items: np.ndarray, queries: Sequence[str], size: int, seed: int, catalog: Catalog | None = None
) -> list[dict]:
    """The requests, without answers: every kind, in proportions that keep the common paths dominant; with the
    release's ``catalog``, listing requests too (``_listing``)."""
    rng = np.random.default_rng(seed)

    def cands(n: int, unknown: int = 0) -> list[int]:
        picked = rng.choice(items, size=min(n, len(items)), replace=False).astype(np.int64)
        extra = UNKNOWN_ITEM_BASE + rng.choice(10**6, size=unknown, replace=False)
        out = np.concatenate([picked, extra.astype(np.int64)])
        rng.shuffle(out)
        return [int(x) for x in out]

    def user(cold: bool) -> int:
        return int(COLD_USER_BASE + rng.integers(10**6)) if cold or len(users) == 0 else int(rng.choice(users))

    def query() -> str:
        return str(queries[int(rng.integers(len(queries)))]) if queries else "gift"

    def size_k() -> tuple[int, int]:
        n = int(rng.choice([5, 20, 50, 100, 200]))
        return n, int(rng.choice([1, 5, 10, 20, n]))

    shares = [  # kind, model, share of the set, (cold user, unknown items)
        ("search/known-user", "search", 0.35, (False, 0)),
        ("search/cold-user", "search", 0.12, (True, 0)),
        ("search/unknown-items", "search", 0.10, (False, 3)),
        ("recommend/known-user", "recommend", 0.23, (False, 0)),
        ("recommend/cold-user", "recommend", 0.10, (True, 0)),
        ("recommend/unknown-items", "recommend", 0.06, (False, 3)),
    ]
    plan: list[dict] = []
    for kind, model, share, (cold, unknown) in shares:
        for _ in range(max(1, round(size * share))):
            n, k = size_k()
            plan.append(
                dict(kind=kind, model=model, user_id=user(cold), item_ids=cands(n, unknown), k=k)
                | ({"query": query()} if model == "search" else {})
            )
    # Edges: one candidate, the most candidates a request may carry, a long non-ASCII query, an
    # all-unknown candidate list, a k larger than the list.
    long_query = ("größe 42 laufschuhe wasserdicht " * 40)[: c.MAX_QUERY_BYTES // 2]
    plan += [
        dict(kind="search/one-candidate", model="search", user_id=user(False), item_ids=cands(1), k=1, query=query()),
        dict(
            kind="search/max-candidates",
            model="search",
            user_id=user(False),
            item_ids=cands(c.MAX_CANDIDATES),
            k=10,
            query=query(),
        ),
        dict(kind="search/long-query", model="search", user_id=user(False), item_ids=cands(50), k=10, query=long_query),
        dict(kind="recommend/all-unknown", model="recommend", user_id=user(True), item_ids=cands(0, 8), k=5),
        dict(kind="recommend/k-above-n", model="recommend", user_id=user(False), item_ids=cands(7), k=50),
    ]
    # Bad requests: the pod must refuse them with the field named, and keep serving.
    dup = cands(10)
    plan += [
        dict(
            kind="error/duplicate-candidates",
            model="search",
            user_id=user(False),
            item_ids=dup + dup[:1],
            k=5,
            query=query(),
        ),
        dict(kind="error/empty-query", model="search", user_id=user(False), item_ids=cands(10), k=5, query=""),
        dict(kind="error/k-zero", model="recommend", user_id=user(False), item_ids=cands(10), k=0),
        dict(
            kind="error/too-many-candidates",
            model="recommend",
            user_id=user(False),
            item_ids=cands(0, c.MAX_CANDIDATES + 1),
            k=5,
        ),
    ]
    # Catalogue requests (no candidate list; after the others, so their draws are unchanged)
    catalogue = [  # kind, model, share, (cold user, excluded, context items)
        ("search_catalog/known-user", c.SEARCH_CATALOG, 0.05, (False, 2, 0)),
        ("search_catalog/cold-user", c.SEARCH_CATALOG, 0.02, (True, 0, 0)),
        ("recommend_catalog/known-user", c.RECOMMEND_CATALOG, 0.04, (False, 2, 1)),
        ("recommend_catalog/cold-user", c.RECOMMEND_CATALOG, 0.02, (True, 0, 0)),
    ]
    for kind, model, share, (cold, excluded, context) in catalogue:
        for _ in range(max(1, round(size * share))):
            plan.append(
                dict(
                    kind=kind,
                    model=model,
                    user_id=user(cold),
                    item_ids=[],
                    k=int(rng.choice([1, 5, 10, 20])),
                    exclude_ids=cands(int(rng.integers(excluded + 1))),
                    context_ids=cands(context) if model == c.RECOMMEND_CATALOG else [],
                )
                | ({"query": query()} if model == c.SEARCH_CATALOG else {})
            )
    plan.append(
        dict(
            kind="error/catalogue-blank-query", model=c.SEARCH_CATALOG, user_id=user(False), item_ids=[], k=5, query=" "
        )
    )
    if catalog is not None:  # last, so the draws above are unchanged
        plan += _listing(catalog, user, cands, query)
    return plan


def _listing(
    catalog: Catalog, user: Callable[[bool], int], cands: Callable[[int], list[int]], query: Callable[[], str]
) -> list[dict]:
    """Listing requests over this catalogue's own values: a price filter with facets, a query whose words are
    understood, a category page's second page sorted by price, a product page with two variants per group,
    re-ranking filtered and sorted, a page of a recommendation with a facet, and a filter on a field the
    catalogue does not have (refused, naming it)."""
    shown = (catalog.in_stock[:-1] > 0) & np.isfinite(catalog.price[:-1]) & (catalog.price[:-1] > 0)
    prices = catalog.price[:-1][shown] if shown.any() else np.array([50.0])
    median = float(np.format_float_positional(float(np.median(prices)), precision=2, unique=True, trim="-"))
    known = catalog.category[:-1][catalog.category[:-1] >= 0]
    top = int(np.bincount(known).argmax()) if known.size else -1
    category = catalog.vocabulary.categories[top].split(CATEGORY_SEPARATOR)[0].strip() if top >= 0 else None
    on_page = {"filter": {"category": category}} if category else {}

    def ask(kind: str, model: str, options: dict, k: int = 10, **request: object) -> dict:
        base = dict(kind=kind, model=model, user_id=user(False), item_ids=[], k=k)
        return base | request | {"options": json.dumps(options, sort_keys=True)}

    return [
        ask(
            "search_catalog/filter-facets",
            c.SEARCH_CATALOG,
            {"filter": {"price": {"max": median}}, "facets": ["brand", "price"]},
            query=query(),
        ),
        ask("search_catalog/understood", c.SEARCH_CATALOG, {"facets": ["price"]}, query=f"{query()} under {median:g}"),
        ask(
            "recommend_catalog/category-page-2",
            c.RECOMMEND_CATALOG,
            {**on_page, "offset": 10, "sort": "price_asc", "per_group": 0},
            context_ids=[],
        ),
        ask(
            "recommend_catalog/product-page-groups",
            c.RECOMMEND_CATALOG,
            {"per_group": 2, "facets": ["category"]},
            context_ids=cands(1),
        ),
        ask(
            "search/filter-sorted",
            c.SEARCH_ENSEMBLE,
            {"filter": {"in_stock": True}, "sort": "price_desc"},
            item_ids=cands(100),
            query=query(),
        ),
        ask("recommend/page-facet", c.RECOMMEND_ENSEMBLE, {"offset": 5, "facets": ["brand"]}, k=5, item_ids=cands(80)),
        ask(
            "error/unknown-filter-field",
            c.SEARCH_CATALOG,
            {"filter": {"no_such_field": "x"}},
            k=5,
            query=query(),
        ),
    ]


def make(
    repo: Path,
    queries: Sequence[str],
    shop: str,
    target: str = "cpu",
    precision: str | None = None,
    size: int = 300,
    seed: int = 2026,
) -> GoldenSet:
    """The golden set of a built repository: ``size`` requests (plus the edge and error cases), answered
    by the in-process pipeline over the repository's own files."""
    repo = Path(repo)
    pipe = InProcessPipeline(repo)
    tables = pipe.search_store.tables
    plan = _plan(tables.user_ids_sorted, tables.item_ids_sorted, queries, size, seed, pipe.search_store.catalog)
    requests = []
    for i, spec in enumerate(plan):
        cand = np.asarray(spec["item_ids"], np.int64)

        def rank(
            k: int, options: str | None, spec: dict = spec, cand: np.ndarray = cand
        ) -> tuple[np.ndarray, np.ndarray]:
            user, model = spec["user_id"], spec["model"]
            exclude = np.asarray(spec.get("exclude_ids", []), np.int64)
            if model == c.SEARCH_CATALOG:
                return pipe.search_catalog(user, spec["query"], k, exclude, options=options)
            if model == c.RECOMMEND_CATALOG:
                context = np.asarray(spec["context_ids"], np.int64)
                return pipe.recommend_catalog(user, k, context, exclude, options=options)
            if model == c.SEARCH_ENSEMBLE:
                return pipe.search(user, spec["query"], cand, k, options)
            return pipe.recommend(user, cand, k, options)

        options = spec.get("options")
        try:
            top_ids, top_scores = rank(spec["k"], options)  # as sent: the serving code's own checks apply
        except InvalidInput as err:
            requests.append(GoldenRequest(id=i, **spec, error=str(err)))
            continue
        listing = _listing_answer(pipe.last_response) if options is not None else {}
        # every candidate's score, to tell near-ties from differences (catalogue: every retrieved one's; a
        # listing request's whole relevant set: no page, no groups)
        catalogue = spec["model"] in CATALOGUE
        all_ids, all_scores = rank(c.MAX_CANDIDATES if catalogue else len(cand), _every(options))
        by_id = dict(zip(all_ids.tolist(), all_scores.tolist(), strict=True))
        ranked = all_ids if catalogue else cand
        requests.append(
            GoldenRequest(
                id=i,
                **spec,
                top_ids=[int(x) for x in top_ids],
                top_scores=[round(float(s), 6) for s in top_scores],
                candidate_scores=[None if (s := by_id.get(int(x))) is None else round(s, 6) for x in ranked],
                retrieved_ids=[int(x) for x in all_ids] if catalogue else [],
                **listing,
            )
        )
    key = "cpu" if target == "cpu" else f"gpu/{precision or 'fp16'}"
    note = (
        "the same ONNX files and code as the build: float noise only"
        if target == "cpu"
        else f"TensorRT {precision or 'fp16'} engines vs the build's fp32 ONNX Runtime answers: NOT MEASURED on a "
        "GPU by this project; tighten with --tolerance after a verify run on your node type. Catalogue "
        "requests: the GPU scan may retrieve another float16 near-tie at the N-th place"
    )
    return GoldenSet(shop, target, repository_checksum(repo), TOLERANCE[key], note, requests)


def _every(options: str | None) -> str | None:
    """A listing request's options for its whole relevant set: the same filter and understood words, every
    variant, from the first, by relevance, no facets."""
    if options is None:
        return None
    whole = {k: v for k, v in json.loads(options).items() if k not in ("offset", "sort", "facets")}
    return json.dumps({**whole, "per_group": 0})


def _listing_answer(response: dict[str, np.ndarray]) -> dict:
    """What the build answered beside the items: the variant groups, their matching variants, RESULT_INFO
    (without ``release``: the serving release's number, not the build's)."""
    info = parse_info(response[c.RESULT_INFO])  # as the SDK reads it
    info.pop("release", None)
    return {
        "groups": [bytes(g).decode() for g in response[c.TOP_GROUP_KEYS].reshape(-1)],
        "group_matches": [int(m) for m in response[c.TOP_GROUP_MATCHES].reshape(-1)],
        "info": info,
    }


def write(golden: GoldenSet, repo: Path) -> Path:
    """Write ``golden.json`` at the repository's root (atomically: a reader never sees half a file)."""
    path = Path(repo) / GOLDEN_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(golden.to_json(), separators=(",", ":")))
    os.replace(tmp, path)
    return path
