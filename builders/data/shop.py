"""A deterministic, seeded synthetic shop: catalogue, users, search and homepage sessions, logs.

No e-commerce dataset can be downloaded here, so the models learn from this world. Its hidden
ground-truth relevance combines query match (category, brand, attribute), user preference (category,
brand, price sensitivity), item quality and popularity. The logged feed shows candidates in the order
of the shop's logging rankers (``LoggingPolicy``: popularity with noise; from the middle day on, a
re-rank with a merchandising boost; a small randomised slice all along), so one item is logged at many
positions, as a real shop's logs are after A/B tests and re-ranks; users examine position ``k`` with
probability ``examination(k)`` (the position bias), click with the relevance probability, and buy with a
stock- and relevance-dependent probability.

``generate(profile)`` returns a :class:`Shop` of numpy arrays; the same profile and seed always give
the same shop (bit for bit). ``builders.data.demo`` writes it as the data contract's files: the build
reads the demo shop exactly as it reads a real one.

Search traffic is realistic where it matters: ``MISMATCH_SHARE`` of the searches phrase the need
without the catalogue's words (synonyms, paraphrases, typos, other languages); their hidden
relevance is still defined by the shopper's intent (category, attribute).

Over 400 lines on purpose: one generated world (catalogue, users, query pool, logging policy, sessions,
product pages) whose parts share one random stream; split, a change to one part would silently change the
others' draws, and the demo's numbers in docs/ would move.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

GENERATOR_VERSION = 6
EXAMINATION_POWER = 0.6  # P(a shopper examines position k) = 1 / (1 + k) ** EXAMINATION_POWER
RANDOM_SHARE = 0.03  # of the lists: shown in a random order (the randomised slice an A/B platform keeps)
BOOST_SCALE = 0.8  # the second logging ranker's merchandising boost: one N(0, scale) number per item

# Product pages: what a shopper who opened an item's page also looks at. A session "compares" (other
# items of the viewed item's category) or "completes" (items of a complementary category: a laptop,
# then a laptop backpack); which is the hidden intent behind the page's true relevance.
COMPLEMENTS: dict[str, list[str]] = {
    "running shoes": ["smartwatch", "t-shirt", "headphones"],
    "hiking boots": ["tent", "backpack"],
    "t-shirt": ["jeans", "sunglasses"],
    "jeans": ["t-shirt", "running shoes"],
    "laptop": ["backpack", "headphones", "desk lamp"],
    "smartphone": ["headphones", "smartwatch"],
    "headphones": ["smartphone", "laptop"],
    "smartwatch": ["running shoes", "smartphone"],
    "coffee maker": ["blender"],
    "blender": ["coffee maker"],
    "backpack": ["laptop", "tent", "hiking boots"],
    "sofa": ["desk lamp"],
    "desk lamp": ["sofa", "laptop"],
    "tent": ["hiking boots", "backpack"],
    "yoga mat": ["t-shirt", "smartwatch"],
    "sunglasses": ["t-shirt", "tent"],
}
PAGE_SHARE = 0.5  # of the lists with a click: the shopper opens the first clicked item's page
NEXT_PAGE_SHARE = 0.35  # of the pages with a click: and then the page of the first item clicked there
COMPLETE_SHARE = 0.5  # of the sessions: the shopper completes (complements) rather than compares

# Real shoppers do not use the catalogue's words. For every category: (query, attribute intent or None).
# Synonyms, paraphrases, typos and other languages; none contains the category's own phrase, so the
# catalogue-vocabulary parser finds no category in them and only the text encoder can match them.
MISMATCH_QUERIES: dict[str, list[tuple[str, str | None]]] = {
    "running shoes": [
        ("shoes for jogging", None),
        ("jogging sneakers", None),
        ("marathon trainers", None),
        ("laufschuhe", None),
        ("zapatillas para correr", None),
        ("runing shoes", None),
    ],
    "hiking boots": [
        ("mountain walking boots", None),
        ("trekking shoes", None),
        ("wanderschuhe", None),
        ("chaussures de randonnée", None),
        ("hikking boots", None),
        ("boots for mountain walks", None),
    ],
    "t-shirt": [
        ("tee", None),
        ("short sleeve top", None),
        ("camiseta", None),
        ("tshirt", None),
        ("cotton tee", "cotton"),
    ],
    "jeans": [
        ("denim trousers", None),
        ("denim pants", None),
        ("vaqueros", None),
        ("jenas", None),
        ("slim fit denim", "slim"),
    ],
    "laptop": [
        ("notebook computer", None),
        ("labtop 16gb", "16gb"),
        ("portable computer for work", None),
        ("ordinateur portable", None),
        ("gaming notebook", "gaming"),
    ],
    "smartphone": [
        ("mobile phone", None),
        ("cell phone", None),
        ("handy", None),
        ("téléphone portable", None),
        ("smarphone 5g", "5g"),
    ],
    "headphones": [
        ("noise cancelling earbuds", "noise-cancelling"),
        ("earphones", None),
        ("over-ear cans", None),
        ("kopfhörer", None),
        ("écouteurs sans fil", "wireless"),
        ("hedphones", None),
    ],
    "smartwatch": [
        ("fitness tracker watch", "fitness"),
        ("reloj inteligente", None),
        ("smart wrist watch", None),
        ("smartwach", None),
        ("watch that counts steps", None),
    ],
    "coffee maker": [
        ("espresso machine", "espresso"),
        ("machine à café", None),
        ("kaffeemaschine", None),
        ("coffee brewer", None),
        ("cofee maker", None),
    ],
    "blender": [
        ("smoothie maker", None),
        ("food mixer", None),
        ("licuadora", None),
        ("mixer for shakes", None),
        ("blendr", None),
    ],
    "backpack": [
        ("rucksack", None),
        ("school bag", None),
        ("daypack for trips", None),
        ("sac à dos étanche", "waterproof"),
        ("mochila", None),
        ("backpak", None),
    ],
    "sofa": [("couch", None), ("settee", None), ("canapé", None), ("corner couch", "corner"), ("divano", None)],
    "desk lamp": [
        ("reading light", None),
        ("table light", None),
        ("schreibtischlampe", None),
        ("lampe de bureau", None),
        ("led reading light", "led"),
        ("desk lmap", None),
    ],
    "tent": [
        ("camping shelter", None),
        ("zelt", None),
        ("tienda de campaña", None),
        ("dome shelter for two", None),
        ("tnet", None),
    ],
    "yoga mat": [
        ("exercise mat", None),
        ("pilates mat", None),
        ("gym floor mat", None),
        ("tapis de yoga", None),
        ("yogamatte", None),
    ],
    "sunglasses": [
        ("shades", None),
        ("sun glasses", None),
        ("polarised shades", "polarized"),
        ("gafas de sol", None),
        ("sonnenbrille", None),
        ("sunglases", None),
    ],
}
MISMATCH_SHARE = 0.35  # of search sessions: at least a third of the search traffic
# Departments: the catalogue's categories are paths, as real shops export them.
DEPARTMENTS = {
    "running shoes": "Shoes",
    "hiking boots": "Shoes",
    "t-shirt": "Clothing",
    "jeans": "Clothing",
    "laptop": "Electronics",
    "smartphone": "Electronics",
    "headphones": "Electronics",
    "smartwatch": "Electronics",
    "coffee maker": "Kitchen",
    "blender": "Kitchen",
    "backpack": "Bags",
    "sofa": "Home",
    "desk lamp": "Home",
    "tent": "Outdoor",
    "yoga mat": "Sports",
    "sunglasses": "Accessories",
}

# Category noun phrase, its attribute words, and a typical log-price (EUR).
CATEGORIES: list[tuple[str, list[str], float]] = [
    ("running shoes", ["black", "white", "red", "blue", "waterproof", "lightweight", "trail", "kids"], 4.4),
    ("hiking boots", ["waterproof", "leather", "brown", "black", "insulated", "lightweight"], 4.7),
    ("t-shirt", ["cotton", "black", "white", "oversized", "organic", "striped", "kids"], 3.0),
    ("jeans", ["slim", "blue", "black", "stretch", "vintage", "straight"], 4.0),
    ("laptop", ["16gb", "32gb", "gaming", "lightweight", "oled", "1tb", "touchscreen"], 6.9),
    ("smartphone", ["128gb", "256gb", "5g", "black", "blue", "unlocked", "dual-sim"], 6.4),
    ("headphones", ["wireless", "noise-cancelling", "bluetooth", "black", "white", "kids", "sport"], 4.6),
    ("smartwatch", ["gps", "waterproof", "black", "sport", "steel", "fitness"], 5.3),
    ("coffee maker", ["espresso", "stainless", "automatic", "compact", "black", "milk-frother"], 5.0),
    ("blender", ["stainless", "compact", "portable", "glass", "1200w"], 4.2),
    ("backpack", ["waterproof", "laptop", "travel", "black", "leather", "kids"], 4.0),
    ("sofa", ["leather", "velvet", "grey", "corner", "3-seater", "modular"], 6.8),
    ("desk lamp", ["led", "dimmable", "wireless", "black", "white", "usb"], 3.5),
    ("tent", ["2-person", "4-person", "waterproof", "lightweight", "family", "camping"], 5.0),
    ("yoga mat", ["non-slip", "thick", "eco", "travel", "purple", "cork"], 3.3),
    ("sunglasses", ["polarized", "black", "aviator", "sport", "round", "kids"], 4.3),
]
BRAND_NAMES = [
    "Nordwind",
    "Altavia",
    "Brio",
    "Corvex",
    "Dunmore",
    "Elara",
    "Fjordline",
    "Galen",
    "Helix",
    "Ivora",
    "Juno",
    "Kestrel",
    "Lumio",
    "Marlow",
    "Nexa",
    "Orbit",
    "Pellucid",
    "Quorra",
    "Ridgeway",
    "Solace",
    "Tundra",
    "Umbra",
    "Vantor",
    "Wexley",
    "Xylo",
    "Yarrow",
    "Zephyr",
    "Arcadia",
    "Bolt",
    "Cinder",
    "Delmar",
    "Evergreen",
    "Flint",
    "Granite",
    "Harbor",
    "Indigo",
    "Jasper",
    "Kinetic",
    "Lattice",
    "Monarch",
]
SERIES = ["Pro", "Max", "Lite", "Air", "Plus", "Classic", "Sport", "Ultra", "Mini", "Eco", "Prime", "Core"]


@dataclass(frozen=True)
class ShopProfile:
    """Sizes of the generated world. ``small`` is for tests and CI, ``default`` for real builds."""

    name: str
    n_items: int
    n_users: int
    n_sessions: int
    min_candidates: int
    max_candidates: int
    days: int = 60
    home_share: float = 0.2
    seed: int = 20261123

    def key(self) -> dict:
        return {**asdict(self), "generator_version": GENERATOR_VERSION}


PROFILES: dict[str, ShopProfile] = {
    "small": ShopProfile("small", n_items=2_000, n_users=600, n_sessions=4_000, min_candidates=10, max_candidates=40),
    # 50,000 items; 25,000 sessions x 20..60 candidates (40 on average) = about 1,000,000 impressions.
    "default": ShopProfile(
        "default", n_items=50_000, n_users=20_000, n_sessions=25_000, min_candidates=20, max_candidates=60
    ),
}


@dataclass
class Shop:
    """Everything generated. Item/user arrays are indexed by row; ids are sparse int64 like real SKUs."""

    profile: ShopProfile
    # catalogue
    item_ids: np.ndarray  # [I] int64
    item_titles: list[str]  # [I]
    item_category: np.ndarray  # [I] int64
    item_brand: np.ndarray  # [I] int64, index into brands
    item_attrs: np.ndarray  # [I, 2] int64, index into attributes (-1 none)
    item_price: np.ndarray  # [I] float32, EUR
    item_stock: np.ndarray  # [I] int64, units in stock
    item_quality: np.ndarray  # [I] float32, hidden
    item_popularity: np.ndarray  # [I] float32, hidden
    brands: list[str]
    attributes: list[str]
    # users
    user_ids: np.ndarray  # [U] int64
    user_segment: np.ndarray  # [U] int64
    user_cat_pref: np.ndarray  # [U, C] float32, hidden
    user_fav_brands: np.ndarray  # [U, 3] int64, hidden
    user_price_sens: np.ndarray  # [U] float32, hidden
    # queries (the pool sessions draw from)
    queries: list[str]
    query_category: np.ndarray  # [Q] int64
    query_brand: np.ndarray  # [Q] int64 (-1 none)
    query_attr: np.ndarray  # [Q] int64 (-1 none)
    query_mismatch: np.ndarray  # [Q] bool: phrased without the catalogue's words
    # sessions
    session_user: np.ndarray  # [S] int64 user row
    session_day: np.ndarray  # [S] int64
    session_query: np.ndarray  # [S] int64 query index, -1 for a homepage session or a product page
    session_context: np.ndarray  # [S] int64 item row whose product page showed the list, -1 = none
    session_root: np.ndarray  # [S] int64 the list that began the shopper's visit (its own index for the first)
    session_depth: np.ndarray  # [S] int64 0 for the first list, 1 the page opened from it, 2 the next page
    # impressions (flat; session_offsets[s]:session_offsets[s+1] belong to session s)
    session_offsets: np.ndarray  # [S+1] int64
    imp_item: np.ndarray  # [N] int64 item row
    imp_position: np.ndarray  # [N] int64, 0 = top
    imp_relevance: np.ndarray  # [N] float32, hidden ground truth
    imp_click: np.ndarray  # [N] int8
    imp_purchase: np.ndarray  # [N] int8

    @property
    def n_impressions(self) -> int:
        return int(self.imp_item.shape[0])

    def impression_session(self) -> np.ndarray:
        """[N] session index of each impression."""
        return np.repeat(np.arange(len(self.session_user)), np.diff(self.session_offsets))


def examination(position: np.ndarray | int) -> np.ndarray:
    """The generator's true examination probability of (0-based) ``position``: the position bias."""
    return 1.0 / (1.0 + np.asarray(position, np.float64)) ** EXAMINATION_POWER


class LoggingPolicy:
    """The rankers that ordered the logged lists, from a random stream of their own (the shop's other draws
    stay what they were): popularity with noise, then (from day ``switch_day`` on) the same plus a per-item
    merchandising boost, and ``RANDOM_SHARE`` of the lists shuffled. Position then varies for a given item
    independently of its relevance, so the examination curve can be estimated from the logs."""

    def __init__(self, seed: int, n_items: int, switch_day: int):
        self.rng = np.random.default_rng(seed)
        self.boost = self.rng.normal(0.0, BOOST_SCALE, n_items)
        self.switch_day = switch_day

    def order(self, scores: np.ndarray, items: np.ndarray, day: int) -> np.ndarray:
        """The positions' order of ``items`` (their noisy popularity ``scores``) on ``day``."""
        if self.rng.random() < RANDOM_SHARE:
            return self.rng.permutation(len(items))
        return np.argsort(-(scores + (self.boost[items] if day >= self.switch_day else 0.0)))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def true_relevance(
    shop_like: dict, users: np.ndarray, items: np.ndarray, q_cat: np.ndarray, q_brand: np.ndarray, q_attr: np.ndarray
) -> np.ndarray:
    """Hidden ground-truth relevance (a logit) of item rows for (user, query) rows; q_cat -1 = homepage."""
    cat = shop_like["item_category"][items]
    brand = shop_like["item_brand"][items]
    attrs = shop_like["item_attrs"][items]
    has_q = q_cat >= 0
    cat_match = (cat == q_cat) & has_q
    brand_q = q_brand >= 0
    brand_match = brand_q & (brand == q_brand)
    attr_match = (q_attr >= 0) & ((attrs[:, 0] == q_attr) | (attrs[:, 1] == q_attr))
    match = 2.2 * cat_match + 1.1 * brand_match - 0.6 * (brand_q & ~brand_match) + 0.9 * attr_match
    match = np.where(has_q, match - 1.6, 0.0)
    pref = shop_like["user_cat_pref"][users, cat]
    fav = (shop_like["user_fav_brands"][users] == brand[:, None]).any(axis=1)
    cat_price = np.asarray([c[2] for c in CATEGORIES])[cat]
    price_z = np.log(shop_like["item_price"][items]) - cat_price
    personal = 2.5 * pref + 0.7 * fav - 1.2 * shop_like["user_price_sens"][users] * price_z
    personal = np.where(has_q, personal, 1.8 * personal)
    base = 0.6 * shop_like["item_quality"][items] + 0.5 * shop_like["item_popularity"][items]
    out_of_stock = shop_like["item_stock"][items] == 0
    return (match + personal + base - 1.2 - 1.0 * out_of_stock).astype(np.float32)


def _catalogue(p: ShopProfile, rng: np.random.Generator) -> dict:
    n_cat = len(CATEGORIES)
    attributes = sorted({a for _, attrs, _ in CATEGORIES for a in attrs})
    attr_index = {a: i for i, a in enumerate(attributes)}
    cat_brands = [rng.choice(len(BRAND_NAMES), size=8, replace=False) for _ in range(n_cat)]
    cat_weights = rng.dirichlet(np.full(n_cat, 3.0))
    category = rng.choice(n_cat, size=p.n_items, p=cat_weights)
    brand = np.empty(p.n_items, np.int64)
    attrs = np.full((p.n_items, 2), -1, np.int64)
    titles: list[str] = []
    brand_tier = rng.normal(0, 0.35, size=len(BRAND_NAMES))
    for i in range(p.n_items):
        c = category[i]
        noun, cat_attrs, _ = CATEGORIES[c]
        brand[i] = cat_brands[c][min(int(rng.zipf(1.6)) - 1, 7)]
        n_attr = rng.choice(3, p=[0.15, 0.45, 0.4])
        chosen = rng.choice(len(cat_attrs), size=n_attr, replace=False)
        words = [cat_attrs[j] for j in chosen]
        attrs[i, :n_attr] = [attr_index[w] for w in words]
        series = f"{SERIES[rng.integers(len(SERIES))]} {rng.integers(1, 10)}"
        title = f"{BRAND_NAMES[brand[i]]} {series} {' '.join(words[:1])} {noun.title()} {' '.join(words[1:])}"
        titles.append(" ".join(title.split()))
    log_price = np.array([CATEGORIES[c][2] for c in category]) + brand_tier[brand] + rng.normal(0, 0.3, p.n_items)
    price = np.round(np.exp(log_price), 2).astype(np.float32)
    stock = np.where(rng.random(p.n_items) < 0.06, 0, rng.integers(1, 500, p.n_items)).astype(np.int64)
    item_ids = (100_000 + rng.permutation(p.n_items * 3)[: p.n_items]).astype(np.int64)
    return dict(
        item_ids=item_ids,
        item_titles=titles,
        item_category=category.astype(np.int64),
        item_brand=brand,
        item_attrs=attrs,
        item_price=price,
        item_stock=stock,
        item_quality=rng.normal(0, 1, p.n_items).astype(np.float32),
        item_popularity=np.clip(rng.gumbel(0, 0.8, p.n_items), -2, 4).astype(np.float32),
        brands=list(BRAND_NAMES),
        attributes=attributes,
        cat_brands=cat_brands,
        cat_weights=cat_weights,
    )


def _users(p: ShopProfile, rng: np.random.Generator, cat_weights: np.ndarray) -> dict:
    n_cat = len(CATEGORIES)
    pref = rng.dirichlet(np.full(n_cat, 0.25), size=p.n_users).astype(np.float32)
    return dict(
        user_ids=(5_000_000 + 7 * rng.permutation(p.n_users * 2)[: p.n_users]).astype(np.int64),
        user_segment=rng.choice(4, size=p.n_users, p=[0.4, 0.3, 0.2, 0.1]).astype(np.int64),
        user_cat_pref=pref,
        user_fav_brands=rng.integers(0, len(BRAND_NAMES), size=(p.n_users, 3)).astype(np.int64),
        user_price_sens=rng.beta(2, 2, p.n_users).astype(np.float32),
        user_activity=rng.pareto(1.5, p.n_users) + 0.2,
    )


def _query_pool(rng: np.random.Generator, cat_brands: list[np.ndarray], attributes: list[str]) -> dict:
    """Every (category, brand?, attribute?) query, with a Zipf popularity inside its category."""
    attr_index = {a: i for i, a in enumerate(attributes)}
    texts, q_cat, q_brand, q_attr, q_weight = [], [], [], [], []
    for c, (noun, cat_attrs, _) in enumerate(CATEGORIES):
        combos = [(-1, -1)] + [(int(b), -1) for b in cat_brands[c]] + [(-1, attr_index[a]) for a in cat_attrs]
        combos += [(int(b), attr_index[a]) for b in cat_brands[c][:4] for a in cat_attrs]
        order = rng.permutation(len(combos))
        order = np.concatenate([[0], order[order != 0]])  # the bare noun is the head query
        for rank, k in enumerate(order):
            b, a = combos[k]
            words = ([BRAND_NAMES[b].lower()] if b >= 0 else []) + ([attributes[a]] if a >= 0 else []) + [noun]
            texts.append(" ".join(words))
            q_cat.append(c)
            q_brand.append(b)
            q_attr.append(a)
            q_weight.append(1.0 / (rank + 1) ** 1.1)
    mismatch = [False] * len(texts)
    for c, (noun, _, _) in enumerate(CATEGORIES):
        for text, attr in MISMATCH_QUERIES[noun]:
            texts.append(text)
            q_cat.append(c)
            q_brand.append(-1)
            q_attr.append(attr_index[attr] if attr else -1)
            q_weight.append(1.0)
            mismatch.append(True)
    return dict(
        queries=texts,
        query_category=np.array(q_cat, np.int64),
        query_brand=np.array(q_brand, np.int64),
        query_attr=np.array(q_attr, np.int64),
        query_weight=np.array(q_weight),
        query_mismatch=np.array(mismatch),
    )


def generate(p: ShopProfile) -> Shop:
    """Generate the whole shop for ``p`` (deterministic for a given profile)."""
    rng = np.random.default_rng(p.seed)
    cat = _catalogue(p, rng)
    users = _users(p, rng, cat["cat_weights"])
    qp = _query_pool(rng, cat["cat_brands"], cat["attributes"])
    n_cat = len(CATEGORIES)
    world = {**cat, **users}

    by_cat = [np.flatnonzero(cat["item_category"] == c) for c in range(n_cat)]
    pop_w = [np.exp(cat["item_popularity"][rows]) for rows in by_cat]
    pop_w = [w / w.sum() for w in pop_w]
    q_by_cat = [np.flatnonzero((qp["query_category"] == c) & ~qp["query_mismatch"]) for c in range(n_cat)]
    q_w = [qp["query_weight"][rows] / qp["query_weight"][rows].sum() for rows in q_by_cat]
    mm_by_cat = [np.flatnonzero((qp["query_category"] == c) & qp["query_mismatch"]) for c in range(n_cat)]

    act = users["user_activity"] / users["user_activity"].sum()
    s_user = rng.choice(p.n_users, size=p.n_sessions, p=act).astype(np.int64)
    s_day = np.sort(rng.integers(0, p.days, size=p.n_sessions)).astype(np.int64)
    is_home = rng.random(p.n_sessions) < p.home_share
    n_cand = rng.integers(p.min_candidates, p.max_candidates + 1, size=p.n_sessions)
    s_query = np.full(p.n_sessions, -1, np.int64)
    s_cat = np.empty(p.n_sessions, np.int64)
    mix = np.cumsum(0.7 * users["user_cat_pref"].astype(np.float64) + 0.3 * cat["cat_weights"][None, :], axis=1)
    u = rng.random(p.n_sessions) * mix[s_user, -1]
    s_cat[:] = np.minimum((mix[s_user] < u[:, None]).sum(axis=1), n_cat - 1)
    mismatch = rng.random(p.n_sessions) < MISMATCH_SHARE
    for s in range(p.n_sessions):
        if is_home[s]:
            continue
        if mismatch[s]:
            s_query[s] = mm_by_cat[s_cat[s]][rng.integers(len(mm_by_cat[s_cat[s]]))]
        else:
            s_query[s] = q_by_cat[s_cat[s]][rng.choice(len(q_by_cat[s_cat[s]]), p=q_w[s_cat[s]])]

    # Candidates from the retrieval stage: mostly the intent category, some from elsewhere.
    policy = LoggingPolicy(p.seed + 2, p.n_items, p.days // 2)
    items_per_session = []
    for s in range(p.n_sessions):
        n = int(n_cand[s])
        c = s_cat[s]
        n_in = min(int(round(n * 0.75)), len(by_cat[c]))
        inside = rng.choice(by_cat[c], size=n_in, replace=False, p=pop_w[c])
        outside = rng.choice(p.n_items, size=n - n_in, replace=False)
        cands = np.unique(np.concatenate([inside, outside]))
        # The logging rankers show them by popularity with noise (and a re-rank): the source of position bias.
        order = policy.order(cat["item_popularity"][cands] + rng.normal(0, 0.7, len(cands)), cands, int(s_day[s]))
        items_per_session.append(cands[order])
    lengths = np.array([len(x) for x in items_per_session])
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    imp_item = np.concatenate(items_per_session).astype(np.int64)
    imp_session = np.repeat(np.arange(p.n_sessions), lengths)
    imp_pos = (np.arange(len(imp_item)) - offsets[imp_session]).astype(np.int64)
    q = s_query[imp_session]
    has_q = q >= 0
    q_cat = np.where(has_q, qp["query_category"][np.maximum(q, 0)], -1)
    q_brand = np.where(has_q, qp["query_brand"][np.maximum(q, 0)], -1)
    q_attr = np.where(has_q, qp["query_attr"][np.maximum(q, 0)], -1)
    rel = true_relevance(world, s_user[imp_session], imp_item, q_cat, q_brand, q_attr)
    click = rng.random(len(imp_item)) < examination(imp_pos) * _sigmoid(rel)
    buy_p = _sigmoid(rel - 1.0) * 0.5 * (cat["item_stock"][imp_item] > 0)
    purchase = click & (rng.random(len(imp_item)) < buy_p)
    lists: dict[str, Any] = {
        "user": s_user,
        "day": s_day,
        "query": s_query,
        "context": np.full(p.n_sessions, -1, np.int64),
        "root": np.arange(p.n_sessions, dtype=np.int64),
        "depth": np.zeros(p.n_sessions, np.int64),
        "items": np.split(imp_item, offsets[1:-1]),
        "relevance": np.split(rel, offsets[1:-1]),
        "click": np.split(click, offsets[1:-1]),
        "purchase": np.split(purchase, offsets[1:-1]),
    }
    # a stream of its own: the search and homepage lists above stay what they were before product pages
    _product_pages(p, np.random.default_rng(p.seed + 1), world, by_cat, pop_w, lists, policy)
    lengths = np.array([len(x) for x in lists["items"]])
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    imp_item = np.concatenate(lists["items"]).astype(np.int64)
    imp_pos = (np.arange(len(imp_item)) - np.repeat(offsets[:-1], lengths)).astype(np.int64)
    rel = np.concatenate(lists["relevance"]).astype(np.float32)
    click = np.concatenate(lists["click"])
    purchase = np.concatenate(lists["purchase"])

    return Shop(
        profile=p,
        item_ids=cat["item_ids"],
        item_titles=cat["item_titles"],
        item_category=cat["item_category"],
        item_brand=cat["item_brand"],
        item_attrs=cat["item_attrs"],
        item_price=cat["item_price"],
        item_stock=cat["item_stock"],
        item_quality=cat["item_quality"],
        item_popularity=cat["item_popularity"],
        brands=cat["brands"],
        attributes=cat["attributes"],
        user_ids=users["user_ids"],
        user_segment=users["user_segment"],
        user_cat_pref=users["user_cat_pref"],
        user_fav_brands=users["user_fav_brands"],
        user_price_sens=users["user_price_sens"],
        queries=qp["queries"],
        query_category=qp["query_category"],
        query_brand=qp["query_brand"],
        query_attr=qp["query_attr"],
        query_mismatch=qp["query_mismatch"],
        session_user=lists["user"],
        session_day=lists["day"],
        session_query=lists["query"],
        session_context=lists["context"],
        session_root=lists["root"],
        session_depth=lists["depth"],
        session_offsets=offsets,
        imp_item=imp_item,
        imp_position=imp_pos,
        imp_relevance=rel,
        imp_click=click.astype(np.int8),
        imp_purchase=purchase.astype(np.int8),
    )


def page_relevance(
    world: dict, users: np.ndarray, items: np.ndarray, viewed: np.ndarray, complete: np.ndarray
) -> np.ndarray:
    """Hidden true relevance (a logit) of item rows on the product page of item rows ``viewed`` for the
    (user, intent) rows: ``complete`` shoppers want a complement of the viewed item, the others an
    alternative to it (its category; more so with its brand or an attribute in common)."""
    none = np.full(len(items), -1, np.int64)
    personal = true_relevance(world, users, items, none, none, none)
    cat, v_cat = world["item_category"][items], world["item_category"][viewed]
    same = cat == v_cat
    ia, va = world["item_attrs"][items], world["item_attrs"][viewed]
    shared_attr = ((ia[:, :, None] == va[:, None, :]) & (va[:, None, :] >= 0)).any(axis=(1, 2))
    akin = same & ((world["item_brand"][items] == world["item_brand"][viewed]) | shared_attr)
    comp = np.zeros(len(items), bool)
    nouns = [c[0] for c in CATEGORIES]
    for c, noun in enumerate(nouns):
        rows = v_cat == c
        if rows.any():
            comp[rows] = np.isin(cat[rows], [nouns.index(x) for x in COMPLEMENTS[noun]])
    context = np.where(complete, 2.2 * comp - 0.4 * same, 1.8 * same + 0.7 * akin + 0.2 * comp)
    return (0.5 * personal + context - 1.4 - 0.8 * (items == viewed)).astype(np.float32)


def _product_pages(
    p: ShopProfile, rng: np.random.Generator, world: dict, by_cat, pop_w, lists: dict, policy: LoggingPolicy
) -> None:
    """Append product-page lists to ``lists`` (in place): after a list with a click, the shopper may open the
    first clicked item's page, and from there the page of the first item clicked on it. A page shows
    items of the viewed item's category, of its complementary categories and of the whole catalogue,
    ordered as the old site did (the logging rankers of the search lists: position bias again)."""
    nouns = [c[0] for c in CATEGORIES]
    complements = [np.concatenate([by_cat[nouns.index(x)] for x in COMPLEMENTS[n]]) for n in nouns]
    comp_w = [np.exp(world["item_popularity"][rows]) for rows in complements]
    comp_w = [w / w.sum() for w in comp_w]
    complete_of_root = rng.random(len(lists["user"])) < COMPLETE_SHARE
    scalars = ("user", "day", "query", "context", "root", "depth")
    for key in scalars:
        lists[key] = lists[key].tolist()
    queue = list(range(len(lists["user"])))
    while queue:
        s = queue.pop(0)
        clicked = np.flatnonzero(lists["click"][s])
        share = PAGE_SHARE if lists["depth"][s] == 0 else NEXT_PAGE_SHARE
        if clicked.size == 0 or lists["depth"][s] >= 2 or rng.random() >= share:
            continue
        viewed = int(lists["items"][s][clicked[0]])
        c = int(world["item_category"][viewed])
        k = int(rng.integers(10, 21))
        parts = [
            rng.choice(by_cat[c], size=min(int(0.4 * k), len(by_cat[c])), replace=False, p=pop_w[c]),
            rng.choice(complements[c], size=min(int(0.3 * k), len(complements[c])), replace=False, p=comp_w[c]),
            rng.choice(p.n_items, size=k - int(0.4 * k) - int(0.3 * k), replace=False),
        ]
        cands = np.setdiff1d(np.unique(np.concatenate(parts)), [viewed])
        day = int(lists["day"][s])
        order = policy.order(world["item_popularity"][cands] + rng.normal(0, 0.7, len(cands)), cands, day)
        shown = cands[order].astype(np.int64)
        root = int(lists["root"][s])
        user = int(lists["user"][s])
        rel = page_relevance(
            world,
            np.full(len(shown), user),
            shown,
            np.full(len(shown), viewed),
            np.full(len(shown), complete_of_root[root]),
        )
        click = rng.random(len(shown)) < examination(np.arange(len(shown))) * _sigmoid(rel)
        buy_p = _sigmoid(rel - 1.0) * 0.5 * (world["item_stock"][shown] > 0)
        purchase = click & (rng.random(len(shown)) < buy_p)
        for key, value in (
            ("user", user),
            ("day", lists["day"][s]),
            ("query", -1),
            ("context", viewed),
            ("root", root),
            ("depth", lists["depth"][s] + 1),
        ):
            lists[key].append(int(value))
        lists["items"].append(shown)
        lists["relevance"].append(rel)
        lists["click"].append(click)
        lists["purchase"].append(purchase)
        queue.append(len(lists["user"]) - 1)
    for key in scalars:
        lists[key] = np.array(lists[key], np.int64)
