"""A third generated shop, by a generator of its own: a fashion store sold as colour variants.

Neither the demo's generator (``builders/data/shop.py``) nor the market's (``builders/data/market.py``)
knows variants. This shop is hard in the ways a fashion shop's search and product pages are:

* **one style, many rows**: each style (a dress, a coat) is sold in 1-5 colours, each colour its own row
  and SKU with the style's ``item_group_id``, as a Google Merchant Center feed has it. Variants share the
  title's words, so a ranking without groups fills a row with one dress in five colours;
* **the colour is often not in the title**: 45% of the titles leave it out (it is only in the
  ``colour:`` attribute), and a share names it the brand's way ("midnight" for navy, "ecru" for white);
* **sizes are attributes** (``size:S``...), each colour sold in some of them; 15% of the colours are sold
  out, and some colours are on sale at another price than the style's;
* **structured queries**: attribute queries ("black dress", "navy coat"), price queries ("dress under 50")
  whose number no title holds, brand queries, and intent queries ("party dress", "winter coat");
* **shoppers bend their words**: a shopper who typed "black dress" clicks a navy one now and then, and
  one who typed "under 50" a dress at 55; the logged lists are the old site's, by popularity with noise,
  seen in a cascade.

The hidden truth of each (query, item) is in the events' ``relevance`` column (``evaluation.true_relevance``):
the item is of the query's category, and has its colour, brand or price where the query names one. A real
shop has no such column. ``write(profile, folder)`` writes the Parquet files and the ``shoprank.yaml`` that
builds them through ``--config``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from builders.data.load import write_export

GENERATOR_VERSION = 1
START = 1_790_812_800  # 2026-10-01T00:00:00Z
DAY = 86_400

# category path, noun in titles and queries, log-price centre, sizes sold, intent phrases (query, extra word)
CATEGORIES: list[tuple[str, str, float, tuple[str, ...], tuple[str, ...]]] = [
    ("Women > Dresses", "dress", 4.0, ("XS", "S", "M", "L", "XL"), ("party dress", "summer dress", "maxi dress")),
    ("Women > Coats", "coat", 4.9, ("XS", "S", "M", "L", "XL"), ("winter coat", "long coat")),
    ("Women > Tops", "top", 3.2, ("XS", "S", "M", "L", "XL"), ("going out top", "basic top")),
    ("Women > Jeans", "jeans", 3.9, ("24", "26", "28", "30", "32"), ("skinny jeans", "mom jeans")),
    ("Men > Shirts", "shirt", 3.6, ("S", "M", "L", "XL", "XXL"), ("office shirt", "linen shirt")),
    ("Men > Coats", "jacket", 4.8, ("S", "M", "L", "XL", "XXL"), ("rain jacket", "winter jacket")),
    ("Men > Trousers", "chinos", 3.8, ("30", "32", "34", "36"), ("slim chinos", "smart trousers")),
    ("Shoes > Sneakers", "sneakers", 4.4, ("38", "39", "40", "41", "42", "43"), ("running sneakers", "white trainers")),
    ("Shoes > Boots", "boots", 4.7, ("37", "38", "39", "40", "41", "42"), ("ankle boots", "chelsea boots")),
    ("Accessories > Bags", "bag", 4.2, ("one size",), ("tote bag", "crossbody bag")),
]
# colour, its share of the catalogue, the brands' own names for it in titles
COLOURS: list[tuple[str, float, tuple[str, ...]]] = [
    ("black", 0.22, ("onyx", "jet")),
    ("white", 0.14, ("ecru", "ivory")),
    ("navy", 0.12, ("midnight", "ink")),
    ("grey", 0.1, ("charcoal", "slate")),
    ("beige", 0.1, ("sand", "camel")),
    ("red", 0.09, ("cherry", "crimson")),
    ("green", 0.09, ("olive", "sage")),
    ("pink", 0.07, ("blush", "rose")),
    ("blue", 0.07, ("denim", "sky")),
]
BRANDS = ("Nordlys", "Maison Pell", "Urbana", "Kestrel", "Loom & Co", "Verano", "Basalt", "Odette", "Tidewell")
STYLE_WORDS = ("Mila", "Aria", "Juno", "Vera", "Nova", "Lina", "Cleo", "Ivy", "Rhea", "Zoe", "Ines", "Maya")
CUTS = ("Wrap", "Classic", "Relaxed", "Slim", "Tailored", "Oversized", "Cropped", "Pleated", "Belted", "Soft")
PRICE_LIMITS = (30, 50, 80, 100, 150)
QUERY_CLASSES = ("attribute", "price", "brand", "intent")
QUERY_SHARE = (0.35, 0.2, 0.15, 0.3)


@dataclass(frozen=True)
class FashionProfile:
    name: str
    n_styles: int
    n_users: int
    n_sessions: int
    days: int = 60
    min_shown: int = 20
    max_shown: int = 40
    sold_out_share: float = 0.15  # of the colour variants
    colour_in_title: float = 0.55  # of the titles name the colour (a third of those in the brand's words)
    anonymous_share: float = 0.4
    seed: int = 20261204

    def key(self) -> dict:
        return {**asdict(self), "generator": "fashion", "generator_version": GENERATOR_VERSION}


PROFILES = {
    "fashion-small": FashionProfile("fashion-small", n_styles=900, n_users=1_500, n_sessions=9_000),
    "fashion": FashionProfile("fashion", n_styles=8_000, n_users=10_000, n_sessions=40_000),
}


def config_dict(name: str, folder: Path | str = ".") -> dict:
    """The ``shoprank.yaml`` of the fashion shop: string SKUs, a Merchant Center style ``item_group_id``."""
    return {
        "name": name,
        "data": {
            "folder": str(folder),
            "items": "catalog",
            "users": "customers",
            "events": "events",
            "columns": {"items": {"item_id": "sku"}},
            "id_type": "string",
        },
        "evaluation": {"true_relevance": "relevance"},
        "encoder": {"fine_tune": "off"},
    }


def _catalogue(p: FashionProfile, rng: np.random.Generator) -> dict:
    n_cat = len(CATEGORIES)
    colour_p = np.array([c[1] for c in COLOURS])
    colour_p = colour_p / colour_p.sum()
    style_cat = rng.choice(n_cat, size=p.n_styles, p=rng.dirichlet(np.full(n_cat, 6.0)))
    style_brand = rng.choice(len(BRANDS), size=p.n_styles, p=rng.dirichlet(np.full(len(BRANDS), 2.0)))
    brand_tier = rng.normal(0, 0.3, len(BRANDS))
    style_price = np.exp(np.array([CATEGORIES[c][2] for c in style_cat]) + brand_tier[style_brand])
    style_price = np.round(style_price * np.exp(rng.normal(0, 0.35, p.n_styles)), 0) - 0.01
    style_quality = rng.normal(0, 1, p.n_styles)
    rows: dict[str, list] = {k: [] for k in ("sku", "title", "cat", "brand", "colour", "price", "stock", "attrs")}
    rows.update(group=[], created=[], quality=[], popularity=[])
    for s in range(p.n_styles):
        c, b = int(style_cat[s]), int(style_brand[s])
        path, noun, _, sizes, _ = CATEGORIES[c]
        name = f"{STYLE_WORDS[rng.integers(len(STYLE_WORDS))]} {CUTS[rng.integers(len(CUTS))]} {noun.title()}"
        n_colours = int(rng.choice(5, p=[0.3, 0.25, 0.2, 0.15, 0.1])) + 1
        colours = rng.choice(len(COLOURS), size=n_colours, replace=False, p=colour_p)
        created = START - int(rng.integers(0, 240)) * DAY
        for v, col in enumerate(colours):
            colour, _, own_words = COLOURS[int(col)]
            said = rng.random()
            if said < p.colour_in_title * 2 / 3:
                title = f"{BRANDS[b]} {name} in {colour.title()}"
            elif said < p.colour_in_title:
                title = f"{BRANDS[b]} {name} in {own_words[rng.integers(2)].title()}"
            else:
                title = f"{BRANDS[b]} {name}"
            sold = [sz for sz in sizes if rng.random() < 0.7] or [sizes[0]]
            on_sale = rng.random() < 0.15
            rows["sku"].append(f"ST{s:05d}-{colour.upper()}")
            rows["title"].append(title)
            rows["cat"].append(c)
            rows["brand"].append(b)
            rows["colour"].append(int(col))
            rows["price"].append(round(float(style_price[s]) * (0.7 if on_sale else 1.0), 2))
            rows["stock"].append(0 if rng.random() < p.sold_out_share else int(rng.integers(1, 60)))
            rows["attrs"].append([f"colour:{colour}", *(f"size:{sz}" for sz in sold)])
            rows["group"].append(f"ST{s:05d}")
            rows["created"].append(created + v * DAY)
            rows["quality"].append(float(style_quality[s] + rng.normal(0, 0.3)))
            rows["popularity"].append(float(rng.gumbel(0, 0.8)))
    world = {k: np.array(v) if k not in ("attrs", "title", "sku", "group") else v for k, v in rows.items()}
    world["by_cat"] = [np.flatnonzero(world["cat"] == c) for c in range(n_cat)]
    return world


def _queries(rng: np.random.Generator, n: int) -> list[tuple[str, str, int, dict]]:
    """``n`` searches: (text, class, category, constraints); constraints name a colour, a brand or a price."""
    out = []
    for _ in range(n):
        kind = QUERY_CLASSES[rng.choice(len(QUERY_CLASSES), p=QUERY_SHARE)]
        c = int(rng.integers(len(CATEGORIES)))
        noun = CATEGORIES[c][1]
        if kind == "attribute":
            col = int(rng.choice(len(COLOURS), p=np.array([x[1] for x in COLOURS]) / sum(x[1] for x in COLOURS)))
            out.append((f"{COLOURS[col][0]} {noun}", kind, c, {"colour": col}))
        elif kind == "price":
            limit = int(rng.choice(PRICE_LIMITS))
            word = ("under", "below", "less than")[int(rng.choice(3, p=[0.7, 0.2, 0.1]))]
            out.append((f"{noun} {word} {limit}", kind, c, {"max_price": limit}))
        elif kind == "brand":
            b = int(rng.integers(len(BRANDS)))
            out.append((f"{BRANDS[b].lower()} {noun}", kind, c, {"brand": b}))
        else:
            phrases = CATEGORIES[c][4]
            out.append((phrases[int(rng.integers(len(phrases)))], kind, c, {}))
    return out


def truth(world: dict, items: np.ndarray, category: int, constraints: dict) -> np.ndarray:
    """1 where an item is what the query asks for (its category, and its colour, brand or price), else 0."""
    ok = world["cat"][items] == category
    if "colour" in constraints:
        ok &= world["colour"][items] == constraints["colour"]
    if "brand" in constraints:
        ok &= world["brand"][items] == constraints["brand"]
    if "max_price" in constraints:
        ok &= world["price"][items] < constraints["max_price"]
    return ok.astype(np.float32)


def _appeal(world: dict, items: np.ndarray, category: int, constraints: dict, user_colour: int) -> np.ndarray:
    """What draws a click: the truth, bent (a near colour, a price a little over), quality and taste."""
    cat_ok = world["cat"][items] == category
    score = np.where(cat_ok, 1.0, -2.5) + 0.35 * world["quality"][items]
    if "colour" in constraints:
        score += np.where(world["colour"][items] == constraints["colour"], 1.2, -0.6)
    if "brand" in constraints:
        score += np.where(world["brand"][items] == constraints["brand"], 1.2, -0.8)
    if "max_price" in constraints:
        over = world["price"][items] / constraints["max_price"]
        score += np.where(over < 1, 1.0, np.where(over < 1.15, 0.0, -1.2))
    if user_colour >= 0:
        score += 0.4 * (world["colour"][items] == user_colour)
    return score - 1.6


def generate(p: FashionProfile) -> dict[str, pa.Table]:
    """The contract's three tables of the fashion shop ``p`` (deterministic)."""
    rng = np.random.default_rng(p.seed)
    world = _catalogue(p, rng)
    n_items = len(world["sku"])
    user_ids = [f"cust-{u:06d}" for u in rng.choice(10**6, size=p.n_users, replace=False)]
    user_colour = rng.choice(len(COLOURS), size=p.n_users)
    activity = rng.pareto(1.3, p.n_users) + 0.2
    s_user = np.where(
        rng.random(p.n_sessions) < p.anonymous_share,
        -1,
        rng.choice(p.n_users, size=p.n_sessions, p=activity / activity.sum()),
    )
    s_time = START + np.sort(rng.integers(0, p.days * DAY, p.n_sessions))
    searches = _queries(rng, p.n_sessions)
    pop = np.exp(world["popularity"])
    rec: dict[str, list] = {k: [] for k in ("timestamp", "session_id", "user_id", "query", "item_id", "position")}
    rec.update(event=[], relevance=[])
    for s in range(p.n_sessions):
        text, _, c, constraints = searches[s]
        k = int(rng.integers(p.min_shown, p.max_shown + 1))
        same = world["by_cat"][c]
        inside = rng.choice(same, size=min(int(0.6 * k), len(same)), replace=False, p=pop[same] / pop[same].sum())
        rest = rng.choice(n_items, size=k - len(inside), replace=False, p=pop / pop.sum())
        cands = np.unique(np.concatenate([inside, rest]))
        shown = cands[np.argsort(-(world["popularity"][cands] + rng.normal(0, 1.0, len(cands))))]
        u = int(s_user[s])
        rel = truth(world, shown, c, constraints)
        appeal = _appeal(world, shown, c, constraints, int(user_colour[u]) if u >= 0 else -1)
        t0, examining = int(s_time[s]), True
        for pos, item in enumerate(shown.tolist()):
            rec_event(rec, t0 + pos, s, u, user_ids, text, world["sku"][item], pos, "impression", rel[pos])
            if not examining:
                continue
            if rng.random() < 1 / (1 + np.exp(-appeal[pos])) / (1 + pos) ** 0.3:
                t = t0 + 30 + 20 * pos
                rec_event(rec, t, s, u, user_ids, text, world["sku"][item], pos, "click", np.nan)
                if world["stock"][item] > 0 and rng.random() < 0.15 * (1 + rel[pos]):
                    rec_event(rec, t + 300, s, u, user_ids, text, world["sku"][item], pos, "purchase", np.nan)
                examining = rng.random() < 0.7
            else:
                examining = rng.random() < 0.96
    items = pa.table(
        {
            "sku": world["sku"],
            "title": world["title"],
            "category": [CATEGORIES[c][0] for c in world["cat"]],
            "brand": [BRANDS[b] for b in world["brand"]],
            "price": pa.array(world["price"], pa.float64()),
            "stock": pa.array(world["stock"], pa.int64()),
            "attributes": pa.array(world["attrs"], pa.list_(pa.string())),
            "created_at": pa.array(np.array(world["created"], np.int64) * 1_000_000, pa.timestamp("us", tz="UTC")),
            "item_group_id": world["group"],
        }
    )
    events = pa.table(
        {
            "timestamp": pa.array(np.array(rec["timestamp"], np.int64) * 1_000_000, pa.timestamp("us", tz="UTC")),
            **{k: rec[k] for k in ("session_id", "user_id", "query", "item_id")},
            "position": pa.array(rec["position"], pa.int64()),
            "event": rec["event"],
            "relevance": pa.array(np.array(rec["relevance"], np.float32), from_pandas=True),
        }
    )
    return {"catalog": items, "customers": pa.table({"user_id": user_ids}), "events": events}


def rec_event(
    rec: dict, t: int, s: int, u: int, users: list[str], query: str, sku: str, pos: int, kind: str, rel: float
) -> None:
    rec["timestamp"].append(t)
    rec["session_id"].append(f"F{s:07d}")
    rec["user_id"].append(users[u] if u >= 0 else None)
    rec["query"].append(query)
    rec["item_id"].append(sku)
    rec["position"].append(pos)
    rec["event"].append(kind)
    rec["relevance"].append(float(rel))


def query_sample(profile: str, n: int, seed: int = 7) -> list[tuple[str, str, int, dict]]:
    """``n`` searches of the shop's kinds (text, class, category, constraints), from a stream of their own:
    the evaluation's requests (``benchmarks/listing_quality.py``)."""
    return _queries(np.random.default_rng(PROFILES[profile].seed + seed), n)


def write(profile: str, out: Path, seed: int | None = None, name: str | None = None) -> Path:
    """Write the fashion shop of ``profile`` (``seed``: another sample of it) into ``out`` (Parquet); returns
    the path of its ``shoprank.yaml`` (``name``: the build's name in it, by default the profile's)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown fashion profile {profile!r}; choose one of {sorted(PROFILES)}")
    p = PROFILES[profile] if seed is None else FashionProfile(**{**asdict(PROFILES[profile]), "seed": seed})
    comment = f"The fashion shop ({profile}), written by `python -m builders demo-data --profile {profile}`."
    return write_export(out, generate(p), config_dict(name or profile), comment)
