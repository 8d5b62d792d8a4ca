"""A second, differently shaped shop for the tests: a grocery store, written as a warehouse would export it.

Unlike the demo shop: string SKUs (``SKU-00012-500G``) and string user ids, null brands (store
brand), anonymous sessions, category paths, French and German titles and queries, CSV and Parquet
mixed, warehouse column names (mapped in the config), one event of an item the catalogue does not
have and one duplicated event row. Clicks follow a simple hidden model (query-category match,
popularity, position bias), so a ranker has something to learn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import yaml

CATEGORIES = {
    "Épicerie > Pâtes": (["Fusilli", "Spaghetti", "Penne", "Tagliatelle"], "pâtes"),
    "Épicerie > Riz": (["Riz basmati", "Riz complet", "Risotto"], "riz"),
    "Frais > Fromages": (["Comté", "Camembert", "Emmental râpé", "Chèvre frais"], "fromages"),
    "Frais > Yaourts": (["Yaourt nature", "Yaourt aux fruits", "Fromage blanc"], "yaourts"),
    "Boissons > Jus": (["Jus d'orange", "Jus de pomme", "Nectar multifruits"], "jus"),
    "Boissons > Eaux": (["Eau minérale", "Eau gazeuse"], "eaux"),
    "Bio > Obst": (["Äpfel", "Bananen", "Birnen"], "obst"),
    "Bio > Gemüse": (["Karotten", "Brokkoli", "Zucchini"], "gemüse"),
    "Hygiène > Savons": (["Savon de Marseille", "Gel douche"], "savons"),
    "Boulangerie > Pains": (["Baguette", "Pain complet", "Brioche"], "pains"),
}
BRANDS = ["Barilla", "Lustucru", "Président", "Danone", "Evian", "Tropicana", "Alnatura", "Le Petit Marseillais"]
SIZES = ["250G", "500G", "1KG", "1L", "6X1L"]
ATTRIBUTES = ["bio", "sans gluten", "vegan", "lokal"]

CONFIG: dict[str, Any] = {
    "name": "groceries",
    "data": {
        "folder": ".",
        "items": "catalogue.csv",
        "users": "customers.parquet",
        "events": "events.csv",
        "columns": {
            "items": {"item_id": "sku", "title": "name", "price": "unit_price", "stock": "qty", "attributes": "labels"},
            "events": {"timestamp": "ts", "event": "type"},
        },
        "id_type": "string",
    },
    "features": {"user_segment": "tier"},
    "ranker": {"epochs": 3},
    "encoder": {"fine_tune": "off"},  # the test shop's own tiny encoder is served as it is
}


def generate(
    n_items: int = 3000,
    n_users: int = 400,
    n_sessions: int = 4000,
    days: int = 40,
    seed: int = 5,
    product_pages: float = 0.0,
):
    """``(catalogue, customers, events)`` as pyarrow tables in the warehouse's column names; with
    ``product_pages`` > 0 that share of the homepage lists is shown on a product page instead (an item of the
    wanted category, in a ``context_item_id`` column)."""
    rng = np.random.default_rng(seed)
    cats = list(CATEGORIES)
    cat = rng.integers(len(cats), size=n_items)
    brand = np.where(rng.random(n_items) < 0.3, -1, rng.integers(len(BRANDS), size=n_items))
    size = rng.integers(len(SIZES), size=n_items)
    names = []
    for i in range(n_items):
        product = CATEGORIES[cats[cat[i]]][0][rng.integers(len(CATEGORIES[cats[cat[i]]][0]))]
        maker = BRANDS[brand[i]] if brand[i] >= 0 else "Marque Repère"
        names.append(f"{maker} {product} {SIZES[size[i]].lower()}")
    skus = [f"SKU-{i:05d}-{SIZES[size[i]]}" for i in range(n_items)]
    labels = [";".join(rng.choice(ATTRIBUTES, size=rng.integers(0, 3), replace=False)) or None for _ in range(n_items)]
    popularity = rng.normal(0, 1, n_items)
    catalogue = pa.table(
        {
            "sku": skus,
            "name": names,
            "category": [cats[c] for c in cat],
            "brand": [BRANDS[b] if b >= 0 else None for b in brand],
            "unit_price": np.round(rng.uniform(0.5, 15, n_items), 2),
            "qty": np.where(rng.random(n_items) < 0.1, 0, rng.integers(1, 200, n_items)),
            "labels": labels,
            "supplier_code": rng.integers(1000, 9999, n_items),  # an extra column, ignored
        }
    )
    users = [f"client-{u:04d}" for u in range(n_users)]
    customers = pa.table({"user_id": users, "tier": rng.choice(["gold", "silver", "standard"], n_users)})

    rows: dict[str, list[Any]] = {
        k: [] for k in ("ts", "session_id", "user_id", "query", "item_id", "position", "type", "context_item_id")
    }
    start = 1_790_000_000
    by_cat = [np.flatnonzero(cat == c) for c in range(len(cats))]
    for s in range(n_sessions):
        t = start + int(s / n_sessions * days * 86_400)
        user = users[rng.integers(n_users)] if rng.random() > 0.25 else None  # a quarter anonymous
        want = int(rng.integers(len(cats)))
        query = (
            None
            if rng.random() < 0.3
            else rng.choice([CATEGORIES[cats[want]][1], CATEGORIES[cats[want]][0][0].lower()])
        )
        shown = np.unique(
            np.concatenate([rng.choice(by_cat[want], 8, replace=False), rng.choice(n_items, 4, replace=False)])
        )
        rng.shuffle(shown)
        context = None
        if product_pages and query is None and rng.random() < product_pages:
            context = skus[int(rng.choice(by_cat[want]))]
        session_rows = []
        for p, item in enumerate(shown):
            base = 3.0 * (cat[item] == want) * (query is not None) + 1.2 * popularity[item] - 2.5 - 0.1 * p
            session_rows.append(("impression", t + p, p, item))
            if rng.random() < 1 / (1 + np.exp(-base)):
                session_rows.append(("click", t + 30 + p, p, item))
                if rng.random() < 0.3:
                    session_rows.append(("purchase", t + 300 + p, p, item))
        for kind, ts, p, item in sorted(session_rows, key=lambda r: r[1]):  # exported in time order
            rows["ts"].append(ts)
            rows["session_id"].append(f"sess-{s}")
            rows["user_id"].append(user)
            rows["query"].append(query)
            rows["item_id"].append(skus[item])
            rows["position"].append(p)
            rows["type"].append(kind)
            rows["context_item_id"].append(context)
    # one event of an item the catalogue does not have, and one duplicated row
    for key, value in zip(
        rows, (start + 5, "sess-0", None, "fromages", "SKU-99999-1KG", 20, "impression", None), strict=True
    ):
        rows[key].append(value)
    for key in rows:
        rows[key].append(rows[key][0])
    columns = ["session_id", "user_id", "query", "item_id", "position", "type"]
    if product_pages:
        columns.append("context_item_id")
    events = pa.table(
        {
            "ts": pa.array(np.array(rows["ts"]) * 1_000_000, pa.timestamp("us")),
            **{k: pa.array(rows[k], pa.string() if k == "context_item_id" else None) for k in columns},
        }
    )
    return catalogue, customers, events


def write(folder: Path, tables: tuple | None = None, config: dict | None = None, **sizes) -> Path:
    """Write the grocery shop (or the given ``(catalogue, customers, events)``) into ``folder``;
    returns its ``shoprank.yaml`` (``CONFIG``, or ``config``)."""
    folder.mkdir(parents=True, exist_ok=True)
    catalogue, customers, events = tables or generate(**sizes)
    pacsv.write_csv(catalogue, folder / "catalogue.csv")
    pq.write_table(customers, folder / "customers.parquet")
    pacsv.write_csv(events, folder / "events.csv")
    path = folder / "shoprank.yaml"
    path.write_text(yaml.safe_dump(config or CONFIG, sort_keys=False, allow_unicode=True))
    return path
