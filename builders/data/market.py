"""A second generated shop, made by another generator than the demo's: a grocery and book market.

The demo shop (``builders/data/shop.py``) is an electronics-and-fashion store whose queries mostly use the
catalogue's words. This one is hard in the ways a real shop's search is hard:

* **queries never share a word with a title**: shoppers type needs, moods, slang and other
  languages ("wachmacher", "hygge", "whodunit", "calming hot drink", "brekkie"); the generator
  checks every query, typos included, against the titles' vocabulary;
* **an intent spans categories** ("hygge": candles, blankets, tea) and **relevance is visible only
  through clicks**: within a category, only items with a hidden tag suit an intent (a herbal tea for
  "calming hot drink", not a black one); no title or attribute says so;
* **titles in four languages** (German, French, Italian, English), string SKUs with leading zeros,
  anonymous sessions, add-to-cart events;
* **a head and a long tail**: intents and their phrasings are Zipf-distributed (head queries are
  typed hundreds of times); a share of the searches are one-off typos and modified phrasings, most of
  them never seen before the test days;
* **a poor logging policy**: the shop's old search showed a fixed off-intent category for each
  phrasing (a lexical false friend: "hygge" showed crime novels), the rest by popularity; shoppers
  scan in a cascade (a strong position bias) and often stop after a click.

``generate(profile)`` returns the contract's three tables (pyarrow) for ``PROFILES[profile]``;
``write(profile, folder)`` writes them as Parquet with a ``shoprank.yaml`` that builds them through
``--config`` like any shop. The events carry the hidden true relevance of each impression
(``relevance``), named in ``evaluation.true_relevance``; a real shop has no such column.

Over 400 lines on purpose: one generated world (its categories, phrasings, shoppers and their scanning)
whose parts share one random stream; split, a change to one part would silently change the others' draws.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from builders.data.load import write_export

GENERATOR_VERSION = 3
START = 1_790_812_800  # 2026-10-01T00:00:00Z
LANGUAGES = ("de", "fr", "it", "en")
LANGUAGE_SHARE = (0.4, 0.2, 0.15, 0.25)

# Category path -> product nouns by language (the words titles use).
CATEGORIES: list[tuple[str, dict[str, list[str]]]] = [
    (
        "Lebensmittel > Kaffee",
        {
            "de": ["Kaffeebohnen", "Röstkaffee gemahlen"],
            "fr": ["Café en grains", "Café moulu"],
            "it": ["Caffè in grani", "Caffè macinato"],
            "en": ["Coffee Beans", "Ground Coffee"],
        },
    ),
    (
        "Lebensmittel > Tee",
        {
            "de": ["Kräutertee", "Schwarztee", "Grüntee"],
            "fr": ["Tisane", "Thé noir", "Thé vert"],
            "it": ["Tisana", "Tè nero"],
            "en": ["Herbal Infusion", "Black Tea", "Green Tea"],
        },
    ),
    (
        "Lebensmittel > Schokolade",
        {
            "de": ["Zartbitterschokolade", "Vollmilchschokolade"],
            "fr": ["Chocolat noir", "Chocolat au lait"],
            "it": ["Cioccolato fondente"],
            "en": ["Dark Chocolate Bar", "Milk Chocolate"],
        },
    ),
    (
        "Lebensmittel > Energydrinks",
        {
            "de": ["Energydrink Dose"],
            "fr": ["Boisson énergisante"],
            "it": ["Bevanda energetica"],
            "en": ["Energy Shot"],
        },
    ),
    (
        "Lebensmittel > Wein",
        {
            "de": ["Rotwein trocken", "Weißwein"],
            "fr": ["Vin rouge", "Vin blanc"],
            "it": ["Rosso", "Bianco"],
            "en": ["Red Blend"],
        },
    ),
    (
        "Lebensmittel > Käse",
        {
            "de": ["Bergkäse", "Rohmilchkäse"],
            "fr": ["Comté affiné", "Tomme"],
            "it": ["Pecorino", "Taleggio"],
            "en": ["Aged Cheddar"],
        },
    ),
    (
        "Lebensmittel > Müsli",
        {
            "de": ["Knuspermüsli", "Haferflocken"],
            "fr": ["Muesli croustillant", "Flocons d'avoine"],
            "it": ["Muesli"],
            "en": ["Granola", "Rolled Oats"],
        },
    ),
    (
        "Wohnen > Kerzen",
        {
            "de": ["Duftkerze", "Teelichter"],
            "fr": ["Bougie parfumée"],
            "it": ["Candela profumata"],
            "en": ["Scented Candle"],
        },
    ),
    (
        "Wohnen > Decken",
        {
            "de": ["Kuscheldecke", "Wolldecke"],
            "fr": ["Plaid en laine"],
            "it": ["Coperta di lana"],
            "en": ["Throw Blanket"],
        },
    ),
    (
        "Drogerie > Badezusätze",
        {"de": ["Badesalz", "Schaumbad"], "fr": ["Sels de bain"], "it": ["Sali da bagno"], "en": ["Bath Bomb"]},
    ),
    (
        "Bücher > Krimis",
        {"de": ["Kriminalroman"], "fr": ["Roman policier"], "it": ["Giallo"], "en": ["Crime Novel"]},
    ),
    (
        "Bücher > Kochbücher",
        {"de": ["Kochbuch"], "fr": ["Livre de cuisine"], "it": ["Ricettario"], "en": ["Cookbook"]},
    ),
    (
        "Bücher > Kinderbücher",
        {"de": ["Bilderbuch"], "fr": ["Album jeunesse"], "it": ["Libro illustrato"], "en": ["Picture Book"]},
    ),
    (
        "Bücher > Science-Fiction",
        {
            "de": ["Science-Fiction-Roman"],
            "fr": ["Roman de science-fiction"],
            "it": ["Fantascienza"],
            "en": ["Space Opera"],
        },
    ),
    (
        "Bücher > Liebesromane",
        {"de": ["Liebesroman"], "fr": ["Roman sentimental"], "it": ["Romanzo rosa"], "en": ["Romance Novel"]},
    ),
    (
        "Bücher > Reiseführer",
        {"de": ["Reiseführer"], "fr": ["Guide de voyage"], "it": ["Guida turistica"], "en": ["Travel Guide"]},
    ),
]
BOOKS = {i for i, (path, _) in enumerate(CATEGORIES) if path.startswith("Bücher")}
C = {path.split(" > ")[1]: i for i, (path, _) in enumerate(CATEGORIES)}

# Intents: phrasings (head first), the categories that serve them, and the share of each category's
# items that suit the intent (a hidden tag: which teas calm, which books are page-turners).
INTENTS: list[tuple[list[str], dict[int, float], float]] = [
    (
        ["wachmacher", "something to wake me up", "need caffeine", "pick me up", "réveil difficile"],
        {C["Kaffee"]: 0.7, C["Energydrinks"]: 0.3},
        0.6,
    ),
    (
        ["hygge", "cozy evening", "gemütlicher abend", "soirée cocooning"],
        {C["Kerzen"]: 0.4, C["Decken"]: 0.35, C["Tee"]: 0.25},
        0.5,
    ),
    (["whodunit", "murder mystery", "spannung pur", "detective story"], {C["Krimis"]: 1.0}, 0.5),
    (["calming hot drink", "help me sleep", "beruhigend", "infuso rilassante"], {C["Tee"]: 1.0}, 0.35),
    (
        ["foodie gift", "geschenk hobbykoch", "regalo goloso"],
        {C["Kochbücher"]: 0.5, C["Schokolade"]: 0.25, C["Wein"]: 0.25},
        0.5,
    ),
    (["bedtime story", "gutenachtgeschichte", "histoire du soir"], {C["Kinderbücher"]: 1.0}, 0.6),
    (["sweet treat", "naschkram", "choccy", "gourmandise"], {C["Schokolade"]: 0.85, C["Müsli"]: 0.15}, 0.6),
    (
        ["date night", "romantic dinner", "dîner aux chandelles"],
        {C["Wein"]: 0.5, C["Kerzen"]: 0.3, C["Liebesromane"]: 0.2},
        0.5,
    ),
    (["brekkie", "healthy start", "frühstückstisch"], {C["Müsli"]: 0.8, C["Kaffee"]: 0.2}, 0.5),
    (["aliens and spaceships", "weltraumabenteuer", "futur lointain"], {C["Science-Fiction"]: 1.0}, 0.6),
    (["city trip", "urlaubsplanung", "weekend away"], {C["Reiseführer"]: 1.0}, 0.6),
    (["self care sunday", "wellness zuhause", "spa day"], {C["Badezusätze"]: 0.6, C["Kerzen"]: 0.4}, 0.5),
    (["cheese board", "apéro", "aperitivo"], {C["Käse"]: 0.6, C["Wein"]: 0.4}, 0.6),
    (["tearjerker", "herzschmerz", "broken heart"], {C["Liebesromane"]: 0.7, C["Schokolade"]: 0.3}, 0.5),
    (["all nighter", "lernphase", "exam week"], {C["Energydrinks"]: 0.5, C["Kaffee"]: 0.4, C["Schokolade"]: 0.1}, 0.5),
    (["fondue night", "raclette abend", "melty"], {C["Käse"]: 1.0}, 0.5),
]
MODIFIERS = ("cheap", "best", "please", "bio", "günstig", "ideas", "for mum", "2026")
BRANDS = {
    "food": ["Rösterei Adler", "Maison Dubois", "Casa Bellini", "Hilltop Farm", "Alpenhof", "Terra Viva", "Nordkap"],
    "home": ["Lumen & Co", "Wollwerk", "Atelier Doux", "Casa Calda"],
    "books": ["Ullmann Verlag", "Éditions Morel", "Mondadoro", "Penwick Press", "Kiepe & Sohn"],
}
TITLE_WORDS = {
    "de": [
        "Das Schweigen",
        "Der letzte Sommer",
        "Nebel über",
        "Die Insel",
        "Spuren im",
        "Ein Jahr in",
        "Kleine Sterne",
    ],
    "fr": ["Le Silence", "La Maison", "Les Ombres de", "Un été à", "La Nuit", "Le Secret de"],
    "it": ["Il Silenzio", "La Casa", "Ombre su", "Un'estate a", "La Notte", "Il Segreto di"],
    "en": ["The Silence", "The Last Summer", "Shadows over", "The Island", "A Year in", "Little Stars"],
}
PLACES = ["Lindau", "Bretagne", "Trieste", "Cornwall", "Husum", "Annecy", "Lucca", "Skye", "Ahrenshoop"]
AUTHORS = ["M. Keller", "C. Moreau", "G. Rinaldi", "J. Whitfield", "A. Brandt", "L. Fabre", "S. Conti", "E. Hart"]
SIZES = ["250 g", "500 g", "1 kg", "100 g", "0,75 l", "6 x 0,33 l", "1 Stk", "2er Set"]
FORMATS = {"de": "Taschenbuch", "fr": "Broché", "it": "Brossura", "en": "Paperback"}


@dataclass(frozen=True)
class MarketProfile:
    name: str
    n_items: int
    n_users: int
    n_sessions: int
    min_candidates: int = 20
    max_candidates: int = 50
    days: int = 60
    home_share: float = 0.25
    tail_share: float = 0.22  # of searches: a one-off typo or modified phrasing
    anonymous_share: float = 0.35
    seed: int = 20261201

    def key(self) -> dict:
        return {**asdict(self), "generator": "market", "generator_version": GENERATOR_VERSION}


PROFILES = {
    "market-small": MarketProfile("market-small", n_items=3_000, n_users=1_200, n_sessions=9_000),
    "market": MarketProfile("market", n_items=20_000, n_users=8_000, n_sessions=30_000),
}


def config_dict(name: str, folder: Path | str = ".") -> dict:
    """The ``shoprank.yaml`` of the market shop: string ids, its own column names, true relevance."""
    return {
        "name": name,
        "data": {
            "folder": str(folder),
            "items": "products",
            "users": "customers",
            "events": "clickstream",
            "columns": {
                "items": {"item_id": "ean", "title": "name"},
                "events": {"event": "action", "context_item_id": "viewed_ean"},
            },
            "id_type": "string",
        },
        "evaluation": {"true_relevance": "relevance"},
    }


_WORD = re.compile(r"\w+")


def vocabulary(texts) -> set[str]:
    return {w for t in texts for w in _WORD.findall(t.casefold())}


def shares_words(query: str, vocab: set[str]) -> bool:
    return any(w in vocab for w in _WORD.findall(query.casefold()))


def typo(text: str, rng: np.random.Generator) -> str:
    """One keyboard slip: a letter dropped, doubled or two neighbours swapped."""
    letters = [i for i, ch in enumerate(text) if ch.isalpha()]
    if len(letters) < 4:
        return text + text[-1]
    i = int(letters[rng.integers(1, len(letters) - 1)])
    kind = rng.integers(3)
    if kind == 0:
        return text[:i] + text[i + 1 :]
    if kind == 1:
        return text[:i] + text[i] + text[i:]
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :] if i + 1 < len(text) else text + "e"


def _catalogue(p: MarketProfile, rng: np.random.Generator) -> dict:
    n_cat = len(CATEGORIES)
    weights = rng.dirichlet(np.full(n_cat, 4.0))
    cat = rng.choice(n_cat, size=p.n_items, p=weights)
    lang = rng.choice(len(LANGUAGES), size=p.n_items, p=LANGUAGE_SHARE)
    titles, brands = [], []
    for i in range(p.n_items):
        c, lg = int(cat[i]), LANGUAGES[lang[i]]
        nouns = CATEGORIES[c][1][lg]
        noun = nouns[rng.integers(len(nouns))]
        if c in BOOKS:
            brand = BRANDS["books"][rng.integers(len(BRANDS["books"]))]
            words = TITLE_WORDS[lg]
            name = f"{words[rng.integers(len(words))]} {PLACES[rng.integers(len(PLACES))]}"
            titles.append(f"{name}: {noun} - {AUTHORS[rng.integers(len(AUTHORS))]} ({FORMATS[lg]})")
        else:
            pool = BRANDS["home"] if CATEGORIES[c][0].startswith(("Wohnen", "Drogerie")) else BRANDS["food"]
            brand = pool[rng.integers(len(pool))]
            titles.append(f"{brand} {noun} {SIZES[rng.integers(len(SIZES))]}")
        brands.append(brand)
    # leading zeros: ids that a CSV reader would turn into numbers (the config says id_type: string)
    eans = [f"0{n:012d}" for n in rng.choice(10**11, size=p.n_items, replace=False)]
    price = np.round(np.exp(rng.normal(2.2, 0.6, p.n_items)), 2)
    stock = np.where(rng.random(p.n_items) < 0.05, 0, rng.integers(1, 300, p.n_items))
    # hidden: which intents an item suits (only items of the intent's categories), quality, popularity
    suits = np.zeros((p.n_items, len(INTENTS)), bool)
    for j, (_, cats, share) in enumerate(INTENTS):
        inside = np.isin(cat, list(cats))
        suits[:, j] = inside & (rng.random(p.n_items) < share)
    return dict(
        cat=cat,
        titles=titles,
        brands=brands,
        eans=eans,
        price=price,
        stock=stock,
        suits=suits,
        quality=rng.normal(0, 1, p.n_items),
        popularity=np.clip(rng.gumbel(0, 0.9, p.n_items), -2, 4),
        cat_weights=weights,
    )


def _phrasings(vocab: set[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Every head phrasing, its intent, and its weight within the intent (Zipf); none shares a title word."""
    texts, intent, weight = [], [], []
    for j, (phrasings, _, _) in enumerate(INTENTS):
        for r, text in enumerate(phrasings):
            if shares_words(text, vocab):
                raise ValueError(f"market generator: query {text!r} shares a word with the titles")
            texts.append(text)
            intent.append(j)
            weight.append(1.0 / (r + 1) ** 1.2)
    return texts, np.array(intent), np.array(weight)


def relevance(world: dict, users: np.ndarray, items: np.ndarray, intents: np.ndarray) -> np.ndarray:
    """Hidden true relevance (a logit) of item rows for (user, intent) rows; intent -1 = homepage."""
    cat = world["cat"][items]
    search = intents >= 0
    serves = np.zeros(len(items))
    for j, (_, cats, _) in enumerate(INTENTS):
        rows = np.flatnonzero(intents == j)
        if rows.size:
            w = np.array([cats.get(int(c), 0.0) for c in cat[rows]])
            serves[rows] = 2.0 * (w > 0) + 1.0 * w + 1.8 * world["suits"][items[rows], j]
    pref = world["user_pref"][np.maximum(users, 0), cat] * (users >= 0)
    personal = 3.0 * pref
    base = 0.5 * world["quality"][items] + 0.4 * world["popularity"][items] - 0.8 * (world["stock"][items] == 0)
    return np.where(search, serves + 0.5 * personal + base - 2.6, personal + 1.3 * base - 1.8).astype(np.float32)


PAGE_SHARE = 0.5  # of the lists with a click: the shopper opens the first clicked item's page
NEXT_PAGE_SHARE = 0.35  # of the pages with a click: and then the page of the first item clicked there


def _page(
    rng: np.random.Generator, world: dict, by_cat: list, pop: np.ndarray, viewed: int, user: int, intent: int
) -> tuple[np.ndarray, np.ndarray]:
    """A product page of item ``viewed``: what the old site showed (items of its category and of the whole
    catalogue, by popularity) and their true relevance. The truth follows the visit's intent (a search's,
    or for a homepage visit one the viewed item suits): on the page of a scented candle after "hygge",
    the blankets and teas that suit hygge; a shared hidden tag, not a shared word."""
    c = int(world["cat"][viewed])
    k = int(rng.integers(12, 25))
    same = rng.choice(
        by_cat[c], size=min(k // 2, len(by_cat[c])), replace=False, p=pop[by_cat[c]] / pop[by_cat[c]].sum()
    )
    rest = rng.choice(len(pop), size=k - len(same), replace=False, p=pop / pop.sum())
    cands = np.setdiff1d(np.unique(np.concatenate([same, rest])), [viewed])
    shown = cands[np.argsort(-(world["popularity"][cands] + rng.normal(0, 1.0, len(cands))))]
    if intent < 0:
        suited = np.flatnonzero(world["suits"][viewed])
        intent = int(rng.choice(suited)) if suited.size and rng.random() < 0.7 else -1
    rel = relevance(world, np.full(len(shown), user), shown, np.full(len(shown), intent))
    rel = rel + 0.6 * (world["cat"][shown] == c) - 0.3
    return shown, rel.astype(np.float32)


def _scan(rng: np.random.Generator, world: dict, shown: np.ndarray, rel: np.ndarray, t0: int, rec: dict) -> list[int]:
    """The shopper scans ``shown`` in a cascade (often done after a click); appends the events' time, position,
    item, action and relevance to ``rec`` and returns the clicked items, in order."""
    events: list[tuple[int, int, int, str, float]] = []
    examining = True
    clicked = []
    for pos, item in enumerate(shown):
        events.append((t0 + pos, pos, int(item), "impression", float(rel[pos])))
        if not examining:
            continue
        if rng.random() < 1.0 / (1.0 + np.exp(-rel[pos])):
            t = t0 + 20 + 15 * pos
            events.append((t, pos, int(item), "click", np.nan))
            clicked.append(int(item))
            if rng.random() < 0.45 / (1.0 + np.exp(-(rel[pos] - 0.5))):
                events.append((t + 40, pos, int(item), "add_to_cart", np.nan))
                if world["stock"][item] > 0 and rng.random() < 0.55:
                    events.append((t + 400, pos, int(item), "purchase", np.nan))
            examining = rng.random() < 0.75  # often done after a click
        else:
            examining = rng.random() < 0.97  # the cascade: each unclicked item may end the scan
    for t, pos, item, action, r in sorted(events, key=lambda e: (e[0], e[1])):
        rec["timestamp"].append(t)
        rec["item_id"].append(world["eans"][item])
        rec["position"].append(pos)
        rec["action"].append(action)
        rec["relevance"].append(r)
    return clicked


def _record(rec: dict, session: str, user: str | None, query: str | None, context: str | None) -> None:
    """Fill the per-list columns of the events ``_scan`` just appended."""
    missing = len(rec["timestamp"]) - len(rec["session_id"])
    for key, value in (("session_id", session), ("user_id", user), ("query", query), ("context", context)):
        rec[key].extend([value] * missing)


def generate(p: MarketProfile) -> dict[str, pa.Table]:
    """The contract's ``items``, ``users`` and ``events`` tables of the market shop ``p`` (deterministic)."""
    rng = np.random.default_rng(p.seed)
    world = _catalogue(p, rng)
    vocab = vocabulary(world["titles"])
    head, head_intent, head_weight = _phrasings(vocab)
    n_cat = len(CATEGORIES)
    world["user_pref"] = rng.dirichlet(np.full(n_cat, 0.3), size=p.n_users)
    user_ids = [f"kunde-{u:06d}" for u in rng.choice(10**6, size=p.n_users, replace=False)]
    activity = rng.pareto(1.3, p.n_users) + 0.2
    intent_w = 1.0 / np.arange(1, len(INTENTS) + 1) ** 0.8
    intent_w = rng.permutation(intent_w / intent_w.sum())
    # the old search's false friend per phrasing: one off-intent category it always showed
    false_friend = np.array(
        [rng.choice([c for c in range(n_cat) if c not in INTENTS[j][1]]) for j in head_intent], np.int64
    )
    by_cat = [np.flatnonzero(world["cat"] == c) for c in range(n_cat)]
    pop = np.exp(world["popularity"])

    n = p.n_sessions
    s_user = np.where(rng.random(n) < p.anonymous_share, -1, rng.choice(p.n_users, size=n, p=activity / activity.sum()))
    s_time = START + np.sort(rng.integers(0, p.days * 86_400, n))
    home = rng.random(n) < p.home_share
    s_intent = np.where(home, -1, rng.choice(len(INTENTS), size=n, p=intent_w))
    s_text: list[str | None] = []
    s_head = np.full(n, -1, np.int64)
    for s in range(n):
        j = s_intent[s]
        if j < 0:
            s_text.append(None)
            continue
        rows = np.flatnonzero(head_intent == j)
        h = int(rows[rng.choice(len(rows), p=head_weight[rows] / head_weight[rows].sum())])
        s_head[s] = h
        text = head[h]
        if rng.random() < p.tail_share:  # the long tail: a slip of the keyboard, or a modifier
            for _ in range(10):
                variant = typo(text, rng) if rng.random() < 0.6 else f"{text} {MODIFIERS[rng.integers(len(MODIFIERS))]}"
                if not shares_words(variant, vocab):
                    text = variant
                    break
        s_text.append(text)

    rec: dict[str, list] = {
        k: []
        for k in (
            "timestamp",
            "session_id",
            "user_id",
            "query",
            "context",
            "item_id",
            "position",
            "action",
            "relevance",
        )
    }
    # product pages draw from a stream of their own: the search and homepage lists stay as they were
    page_rng = np.random.default_rng(p.seed + 1)
    for s in range(n):
        j, k = int(s_intent[s]), int(rng.integers(p.min_candidates, p.max_candidates + 1))
        if j >= 0:
            cats = INTENTS[j][1]
            n_in = int(0.35 * k)
            pool_in = np.concatenate([by_cat[c] for c in cats])
            inside = rng.choice(
                pool_in, size=min(n_in, len(pool_in)), replace=False, p=pop[pool_in] / pop[pool_in].sum()
            )
            friend = by_cat[false_friend[s_head[s]]]
            lure = rng.choice(friend, size=min(int(0.3 * k), len(friend)), replace=False)
        else:
            inside = lure = np.zeros(0, np.int64)
        rest = rng.choice(p.n_items, size=k, replace=False, p=pop / pop.sum())
        cands = np.unique(np.concatenate([inside, lure, rest]))[: p.max_candidates]
        order = np.argsort(-(world["popularity"][cands] + rng.normal(0, 1.0, len(cands))))
        shown = cands[order]
        rel = relevance(world, np.full(len(shown), s_user[s]), shown, np.full(len(shown), j))
        clicked = _scan(rng, world, shown, rel, int(s_time[s]), rec)
        _record(rec, f"S{s:07d}", user_ids[s_user[s]] if s_user[s] >= 0 else None, s_text[s], None)
        # the product pages opened from it, each the page of the first item clicked on the one before
        t, depth = int(s_time[s]), 0
        while clicked and depth < 2 and page_rng.random() < (PAGE_SHARE if depth == 0 else NEXT_PAGE_SHARE):
            viewed, depth, t = clicked[0], depth + 1, t + 1800
            shown, rel = _page(page_rng, world, by_cat, pop, viewed, int(s_user[s]), j)
            clicked = _scan(page_rng, world, shown, rel, t, rec)
            user = user_ids[s_user[s]] if s_user[s] >= 0 else None
            _record(rec, f"S{s:07d}", user, None, world["eans"][viewed])
    items = pa.table(
        {
            "ean": world["eans"],
            "name": world["titles"],
            "category": [CATEGORIES[c][0] for c in world["cat"]],
            "brand": world["brands"],
            "price": pa.array(world["price"], pa.float64()),
            "stock": pa.array(world["stock"], pa.int64()),
        }
    )
    users = pa.table({"user_id": user_ids})
    events = pa.table(
        {
            "timestamp": pa.array(np.array(rec["timestamp"], np.int64) * 1_000_000, pa.timestamp("us", tz="UTC")),
            **{k: rec[k] for k in ("session_id", "user_id", "query")},
            "viewed_ean": rec["context"],
            "item_id": rec["item_id"],
            "position": pa.array(rec["position"], pa.int64()),
            "action": rec["action"],
            "relevance": pa.array(np.array(rec["relevance"], np.float32), from_pandas=True),
        }
    )
    return {"products": items, "customers": users, "clickstream": events}


def write(profile: str, out: Path) -> Path:
    """Write the market shop of ``profile`` into ``out`` (Parquet); returns the path of its ``shoprank.yaml``."""
    if profile not in PROFILES:
        raise ValueError(f"unknown market profile {profile!r}; choose one of {sorted(PROFILES)}")
    comment = f"The market shop ({profile}), written by `python -m builders demo-data --profile {profile}`."
    return write_export(out, generate(PROFILES[profile]), config_dict(profile), comment)
