"""Realistic request mix from the generated shop, prepared before a load test.

* Queries follow the shop's own search log: popular queries repeat (head), others are rarer (torso),
  and a share are queries the log never saw (long tail: new brand/attribute/category combinations).
* Candidate-list sizes are log-normal (median about 60), clipped to [10, 300]. Candidates come mostly
  from the query's category (what a retrieval stage returns) plus some from elsewhere.
* A share of requests come from users the shop does not know (cold start).
* Search and recommendation are mixed by weight.
* ``catalog_share`` of the requests send no candidates (kinds ``search_catalog`` / ``recommend_catalog``):
  the server retrieves from the whole catalogue; half the catalogue recommendations name an item being
  viewed (context), and a fifth of catalogue requests exclude a few items.
* With ``listing`` (and a release that has the catalogue), catalogue requests carry what search and
  category pages send (``listing_options``): every search counts brand and price facets, a share filter by
  price or brand, page further or sort by price; a recommendation without a viewed item (a category strip)
  filters by category half the time. Product pages send no options.

``prepare(...)`` writes the requests to a JSON-lines file; the Locust users only read it, so the
load generator does no heavy work per request. CLI: ``python -m loadtest.traffic --repo R --out F``.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from runtime.catalog import CATALOG_FILE, Vocabulary
from runtime.lexicon import CATEGORY_SEPARATOR, Lexicon, category_phrase
from runtime.tables import STORE_DIR, FeatureTables

UNKNOWN_USER_BASE = 9_000_000_000


@dataclass(frozen=True)
class TrafficProfile:
    search_weight: float = 0.8  # the rest is recommendation
    unknown_user_share: float = 0.05
    long_tail_share: float = 0.15  # queries the log never saw
    candidates_median: int = 60
    candidates_sigma: float = 0.6
    candidates_min: int = 10
    candidates_max: int = 300
    in_category_share: float = 0.8
    k: int = 10
    # requests without a candidate list (search_catalog / recommend_catalog: the server retrieves); 0: re-ranking
    catalog_share: float = 0.0
    listing: bool = True  # catalogue requests carry a search page's options (facets, filters, pages, sort)
    filter_share: float = 0.3  # of catalogue searches: a price or brand filter (a category strip: a category)
    page_share: float = 0.15  # of catalogue searches: page 2 or 3
    sort_share: float = 0.1  # of catalogue searches: cheapest first


def listing_options(
    rng: np.random.Generator,
    kind: str,
    has_context: bool,
    brands: list[str],
    categories: list[str],
    price: float,
    profile: TrafficProfile,
) -> dict:
    """The SDK keywords (``filters``, ``facets``, ``offset``, ``sort``) one catalogue request sends: a search
    page's facets and, by the profile's shares, a filter, a later page or a price sort; a category strip's
    category filter. ``price``: the catalogue's median price (the price filter's bound)."""
    if kind == "recommend_catalog":
        if has_context or not categories or rng.random() >= 0.5:
            return {}
        return {"filters": {"category": categories[int(rng.integers(len(categories)))]}}
    out: dict = {"facets": ["brand", "price"]}
    if rng.random() < profile.filter_share:
        if brands and rng.random() < 0.5:
            out["filters"] = {"brand": brands[int(rng.integers(len(brands)))]}
        else:
            out["filters"] = {"price": {"max": price}}
    if rng.random() < profile.page_share:
        out["offset"] = profile.k * int(rng.integers(1, 3))
    if rng.random() < profile.sort_share:
        out["sort"] = "price_asc"
    return out


def query_log(shop_dir: Path) -> list[tuple[str, int]]:
    """(query, count) from the shop's sessions, most frequent first."""
    with np.load(shop_dir / "shop.npz") as data:
        session_query = data["session_query"]
    texts = json.loads((shop_dir / "shop_text.json").read_text())["queries"]
    counts = Counter(int(q) for q in session_query if q >= 0)
    return [(texts[q], n) for q, n in counts.most_common()]


def prepare(
    repo: Path, shop_dir: Path, n: int, profile: TrafficProfile = TrafficProfile(), seed: int = 0
) -> list[dict]:

    rng = np.random.default_rng(seed)
    tables = FeatureTables.load(repo / "search_features" / "1" / STORE_DIR)
    lexicon = Lexicon.from_json((repo / "search_features" / "1" / "lexicon.json").read_text())
    log = query_log(shop_dir)
    log_texts = [q for q, _ in log]
    log_p = np.array([c for _, c in log], float)
    log_p /= log_p.sum()
    items = tables.item_ids_sorted
    item_cat = tables.item_category[tables.item_rows_sorted]
    by_cat = {c: items[item_cat == c] for c in np.unique(item_cat)}
    catalogue = repo / "retrieve_search" / "1" / CATALOG_FILE
    listing = profile.listing and catalogue.exists()  # a release without the catalogue takes no options
    brands, top_categories, median_price = [], [], 50.0
    if listing:
        vocabulary = Vocabulary.from_json(catalogue.read_text())
        brands = vocabulary.brands
        top_categories = sorted({path.split(CATEGORY_SEPARATOR)[0].strip() for path in vocabulary.categories})
        edges = vocabulary.price_edges
        median_price = float(edges[len(edges) // 2]) if edges else 50.0
    out = []
    for _ in range(n):
        kind = "search" if rng.random() < profile.search_weight else "recommend"
        if rng.random() < profile.unknown_user_share:
            user = UNKNOWN_USER_BASE + int(rng.integers(1_000_000))
        else:
            user = int(rng.choice(tables.user_ids_sorted))
        size = int(
            np.clip(
                rng.lognormal(np.log(profile.candidates_median), profile.candidates_sigma),
                profile.candidates_min,
                profile.candidates_max,
            )
        )
        req: dict = {"kind": kind, "user_id": user, "k": profile.k}
        category = int(rng.integers(len(lexicon.categories)))
        if kind == "search":
            if rng.random() < profile.long_tail_share:
                brand = lexicon.brands[int(rng.integers(len(lexicon.brands)))].lower()
                attr = lexicon.attributes[int(rng.integers(len(lexicon.attributes)))]
                req["query"] = f"{brand} {attr} {category_phrase(lexicon.categories[category])}"
            else:
                req["query"] = log_texts[int(rng.choice(len(log_texts), p=log_p))]
            parsed = lexicon.parse(req["query"]).category
            category = parsed if parsed >= 0 else category
        if profile.catalog_share > 0 and rng.random() < profile.catalog_share:
            req["kind"] = f"{kind}_catalog"
            req["exclude"] = [int(x) for x in rng.choice(items, 3)] if rng.random() < 0.2 else []
            if kind == "recommend":
                req["context"] = [int(rng.choice(items))] if rng.random() < 0.5 else []
            if listing:
                req["listing"] = listing_options(
                    rng, req["kind"], bool(req.get("context")), brands, top_categories, median_price, profile
                )
            out.append(req)
            continue
        pool = by_cat.get(category, items)
        n_in = min(int(round(size * profile.in_category_share)), len(pool))
        inside = rng.choice(pool, size=n_in, replace=False)
        rest = rng.choice(items, size=size - n_in + 20, replace=False)
        cands = np.concatenate([inside, rest[~np.isin(rest, inside)][: size - n_in]])
        req["candidates"] = [int(x) for x in cands]
        out.append(req)
    return out


def save(requests: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for r in requests:
            f.write(json.dumps(r) + "\n")


def load(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True, help="a built model repository")
    parser.add_argument("--shop", type=Path, required=True, help="the build's data folder (build/<name>/data)")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--catalog-share", type=float, default=0.0, help="requests without candidates")
    args = parser.parse_args(argv)
    profile = TrafficProfile(catalog_share=args.catalog_share)
    reqs = prepare(args.repo, args.shop, args.requests, profile, seed=args.seed)
    save(reqs, args.out)
    print(f"wrote {len(reqs)} requests to {args.out} ({asdict(profile)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
