"""The listing modules without a server: the catalogue tables, the options' parser and filters, the page
(sort, groups, offset, facets) and query understanding, on a small hand-made catalogue."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runtime.catalog import Catalog, Vocabulary, build_catalog, price_edges
from runtime.errors import InvalidInput
from runtime.listing import arrange, first_per_group, order_of
from runtime.options import ItemView, ListingOptions, parse_filter, parse_options
from runtime.understand import QueryUnderstanding

pytestmark = pytest.mark.unit

ATTRIBUTES = ["colour:black", "colour:navy", "size:M", "size:L", "waterproof"]
CATEGORIES = ["Women > Dresses", "Women > Coats", "Men > Coats", "Womenswear"]
BRANDS = ["Nordlys", "Maison Pell"]
# rows: (category, brand, attributes, price, stock, created, group)
ROWS = [
    (0, 0, [0, 2], 40.0, 3, 100, 0),
    (0, 0, [1, 2, 3], 45.0, 0, 110, 0),
    (0, 1, [1], 80.0, 5, 120, 1),
    (1, 1, [0, 4], 150.0, 2, 130, -1),
    (2, 0, [0, 3], 120.0, 1, -1, 2),
    (3, -1, [], 20.0, 9, 140, -1),
]


@pytest.fixture()
def catalog(tmp_path) -> Catalog:
    cols = list(zip(*ROWS, strict=True))
    vocab = Vocabulary(CATEGORIES, BRANDS, ATTRIBUTES, price_edges(np.array(cols[3])), n_groups=3)
    built = build_catalog(
        np.array(cols[0]), np.array(cols[1]), list(cols[2]), np.array(cols[3]), np.array(cols[4]),
        np.array(cols[5]), np.array(cols[6]), vocab, ["G0", "G1", "G2"],
    )  # fmt: skip
    built.save(tmp_path, "feature_store")
    return Catalog.load(tmp_path, "feature_store")  # what a served model reads: the round trip


def view(catalog: Catalog, rows: list[int] | None = None) -> ItemView:
    r = np.arange(catalog.n_items) if rows is None else np.array(rows)
    return ItemView(r, catalog.price[r], catalog.in_stock[r].astype(float), 1000 + r)


def matching(catalog: Catalog, tree: dict) -> list[int]:
    return np.flatnonzero(parse_filter(tree, catalog)(catalog, view(catalog))).tolist()


def test_catalogue_round_trip(catalog):
    assert catalog.n_items == 6 and catalog.has_groups
    assert catalog.group.tolist() == [0, 0, 1, 3 + 3, 2, 3 + 5, -1]  # ungrouped rows: a group of their own
    assert catalog.names == ["attribute", "colour", "size"]
    assert bytes(catalog.group_keys[1]) == b"G1" and catalog.group_key(7, b"SKU") == b"SKU"
    assert not catalog.in_stock[-1] and np.isnan(catalog.price[-1])  # the unknown item's row matches nothing


@pytest.mark.parametrize(
    ("tree", "rows"),
    [
        ({"category": "Women"}, [0, 1, 2, 3]),  # whole segments: not "Womenswear"
        ({"category": ["women > coats", "Men"]}, [3, 4]),
        ({"brand": "maison pell"}, [2, 3]),
        ({"colour": "Black"}, [0, 3, 4]),
        ({"colour": ["navy"], "size": "L"}, [1]),
        ({"attribute": "waterproof"}, [3]),
        ({"price": {"min": 40, "max": 80}}, [0, 1]),  # min <= price < max
        ({"in_stock": False}, [1]),
        ({"created_after": 115}, [2, 3, 5]),  # an unknown date never matches
        ({"exclude": [1000, 1003]}, [1, 2, 4, 5]),
        ({"any": [{"brand": "Nordlys"}, {"attribute": "waterproof"}]}, [0, 1, 3, 4]),
        ({"not": {"category": "Women"}}, [4, 5]),
        ({"all": [{"colour": "black"}, {"not": {"price": {"max": 100}}}]}, [3, 4]),
    ],
)
def test_filters_match_what_they_say(catalog, tree, rows):
    assert matching(catalog, tree) == rows


@pytest.mark.parametrize(
    ("raw", "field", "problem"),
    [
        ("{", "shoprank_options", "not valid JSON"),
        ('["filter"]', "shoprank_options", "JSON object"),
        ('{"filtre": {}}', "shoprank_options.filtre", "unknown option"),
        ('{"filter": {"fabric": "silk"}}', "shoprank_options.filter.fabric", "unknown field"),
        ('{"filter": {"price": {"min": 50, "max": 20}}}', "shoprank_options.filter.price", "not below"),
        ('{"filter": {"price": {"max": "cheap"}}}', "shoprank_options.filter.price.max", "number"),
        ('{"filter": {"colour": []}}', "shoprank_options.filter.colour", "empty list"),
        ('{"filter": {"any": [{"colour": 3}]}}', "shoprank_options.filter.any[0].colour", "non-empty string"),
        (
            '{"filter": {"not": {"not": {"not": {"not": {"not": {"size": "M"}}}}}}}',
            "shoprank_options.filter.not",
            "deeper",
        ),
        ('{"per_group": true}', "shoprank_options.per_group", "integer"),
        ('{"offset": 5000}', "shoprank_options.offset", "0..1000"),
        ('{"facets": ["category.x"]}', "shoprank_options.facets[0]", "unknown facet"),
        ('{"understand": "guess"}', "shoprank_options.understand", "expected one of"),
    ],
)
def test_bad_options_name_their_field(catalog, raw, field, problem):
    with pytest.raises(InvalidInput) as err:
        parse_options(raw, catalog)
    assert err.value.field.startswith(field) and problem in err.value.problem


def test_too_many_values_and_conditions(catalog):
    with pytest.raises(InvalidInput, match="limit of 100"):
        parse_options(json.dumps({"filter": {"brand": ["x"] * 101}}), catalog)
    with pytest.raises(InvalidInput, match="more than 32 conditions"):
        parse_options(json.dumps({"filter": {"any": [{"size": "M"}] * 33}}), catalog)
    with pytest.raises(InvalidInput, match="built without the catalogue"):
        parse_options('{"offset": 1}', None)
    assert parse_options(None, None) == ListingOptions() and parse_options("", catalog).per_group == 1


def test_filters_combine_with_and(catalog):
    a, b = parse_filter({"colour": "black"}, catalog), parse_filter({"brand": "Nordlys"}, catalog)
    both = a & b
    assert np.flatnonzero(both(catalog, view(catalog))).tolist() == [0, 4]
    assert (a & None) is a and both.text != a.text


def test_order_and_groups():
    scores = np.array([3.0, 2.0, 1.0, 0.5])
    prices = np.array([30.0, np.nan, 10.0, 20.0])
    assert order_of(scores, "relevance", prices, np.zeros(4)).tolist() == [0, 1, 2, 3]
    assert order_of(scores, "price_asc", prices, np.zeros(4)).tolist() == [2, 3, 0, 1]  # unknown price last
    assert order_of(scores, "price_desc", prices, np.zeros(4)).tolist() == [0, 3, 2, 1]
    assert order_of(scores, "newest", prices, np.array([5, -1, 9, 5])).tolist() == [2, 0, 3, 1]
    groups = np.array([7, 7, 3, 7, 3, 1])
    assert first_per_group(groups, 1).tolist() == [True, False, True, False, False, True]
    assert first_per_group(groups, 2).tolist() == [True, True, True, False, True, True]
    assert first_per_group(groups, 0).all()


def test_arrange_pages_groups_and_facets(catalog):
    rows = np.array([0, 1, 2, 3, 4, 5, -1])
    ids = 1000 + np.arange(7)
    ids[-1] = 55  # an item the build does not know: a group of its own
    scores = np.array([6.0, 7.0, 5.0, 4.0, 3.0, 2.0, 1.0])
    prices = np.array([40, 45, 80, 150, 120, 20, 9], np.float64)
    opts = ListingOptions(facets=("brand", "colour", "price", "category", "category.2"))
    page = arrange(catalog, opts, scores, rows, ids, prices, k=3)
    assert page.page.tolist() == [1, 2, 3]  # row 0 is row 1's variant (group G0): the better one represents it
    assert page.matched.tolist() == [2, 1, 1] and page.info["matches"] == 6
    nxt = arrange(catalog, ListingOptions(offset=3), scores, rows, ids, prices, k=3)
    assert nxt.page.tolist() == [4, 5, 6]
    facets = page.info["facets"]
    assert facets["brand"] == [{"value": "Maison Pell", "count": 2}, {"value": "Nordlys", "count": 2}]  # ties by name
    assert {f["value"]: f["count"] for f in facets["colour"]} == {"black": 3, "navy": 2}  # G0 counts once each
    assert {f["value"]: f["count"] for f in facets["category"]} == {"Women": 3, "Men": 1, "Womenswear": 1}
    edges = catalog.vocabulary.price_edges
    groups = catalog.group_of(rows, ids)
    brute = {}
    for price, group in zip(prices, groups, strict=True):
        brute.setdefault(int(np.searchsorted(edges, price, side="right")), set()).add(int(group))
    assert [f["count"] for f in facets["price"]] == [len(brute[b]) for b in sorted(brute)]  # a group once a bucket
    assert all("min" in f or "max" in f for f in facets["price"])
    assert arrange(None, ListingOptions(), scores, rows, ids, prices, k=2).page.tolist() == [1, 0]


def test_understanding_finds_values_and_applies_some(catalog):
    understand = QueryUnderstanding(catalog)
    got = understand("Black coats under 100 €")
    fields = {c["field"]: c for c in got.chips}
    assert fields["price"]["max"] == 100 and fields["colour"]["value"] == "black"
    assert fields["category"]["value"] == ["Women > Coats", "Men > Coats"] and not fields["category"]["applied"]
    assert got.tree == {"price": {"max": 100.0}, "colour": "black"}
    brand = understand("maison pell dress between 90 and 30", fields=("brand", "price"))
    assert brand.tree == {"price": {"min": 30.0, "max": 90.0}, "brand": "Maison Pell"}
    assert understand("m l dress", "filter").tree == {}  # one-letter sizes are not read from a query
    assert understand("black dress", "off").chips == ()
    assert understand("over 80 under 20").tree == {}  # an empty range is not understood
