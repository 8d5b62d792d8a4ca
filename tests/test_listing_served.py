"""Filters, variant groups, pages, sort, facets and query understanding on a real tritonserver, over the
fashion shop (colour variants grouped by item_group_id), checked against brute force over its catalogue."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from shoprank_client import Filters, InvalidRequest, RankingClient, any_of, none_of
from shoprank_client.cli import main as cli_main

pytestmark = [pytest.mark.triton, pytest.mark.slow]

ANONYMOUS = 0  # no profile and no purchases: nothing but the filter leaves items out


@pytest.fixture(scope="module")
def shop(fashion_build):
    _, items = fashion_build
    return {it["sku"]: it for it in items}


@pytest.fixture(scope="module")
def client(fashion_server):
    with RankingClient(fashion_server.grpc_url, timeout_s=10) as cl:
        yield cl


def attribute_values(item: dict, name: str) -> set[str]:
    return {a.split(":", 1)[1].strip().lower() for a in item["attributes"] if a.lower().startswith(f"{name}:")}


def passes(item: dict, tree: dict[str, Any]) -> bool:
    """The filter tree over one catalogue row, written apart from the server's code (runtime/options.py)."""
    for key, value in tree.items():
        values = [value] if isinstance(value, str) else value
        if key == "all":
            ok = all(passes(item, f) for f in value)
        elif key == "any":
            ok = any(passes(item, f) for f in value)
        elif key == "not":
            ok = not passes(item, value)
        elif key == "category":
            path = [p.strip().lower() for p in item["category"].split(">")]
            ok = any(path[: len(w)] == w for w in ([p.strip().lower() for p in v.split(">")] for v in values))
        elif key == "brand":
            ok = item["brand"].lower() in {v.lower() for v in values}
        elif key == "price":
            ok = value.get("min", -np.inf) <= item["price"] < value.get("max", np.inf)
        elif key == "in_stock":
            ok = (item["stock"] > 0) == value
        elif key == "created_after":
            ok = item["created_at"].timestamp() > value
        else:
            ok = bool(attribute_values(item, key) & {v.lower() for v in values})
        if not ok:
            return False
    return True


def random_filter(rng: np.random.Generator, items: list[dict]) -> dict[str, Any]:
    """One to three random leaves (category, brand, colour, size, price, stock, listing date), and/or/not."""
    pick = items[int(rng.integers(len(items)))]
    leaves: list[dict[str, Any]] = []
    for _ in range(int(rng.integers(1, 4))):
        kind = int(rng.integers(7))
        other = items[int(rng.integers(len(items)))]
        if kind == 0:
            parts = pick["category"].split(" > ")
            leaves.append({"category": " > ".join(parts[: int(rng.integers(1, len(parts) + 1))])})
        elif kind == 1:
            leaves.append({"brand": sorted({pick["brand"], other["brand"]})})
        elif kind == 2:
            leaves.append({"colour": sorted(attribute_values(pick, "colour") | attribute_values(other, "colour"))})
        elif kind == 3:
            leaves.append({"size": sorted(attribute_values(pick, "size"))[:2]})
        elif kind == 4:
            low, high = sorted(rng.choice([10, 25, 40, 60, 90, 150, 300], size=2, replace=False).tolist())
            leaves.append({"price": {"min": low, "max": high} if rng.random() < 0.5 else {"max": high}})
        elif kind == 5:
            leaves.append({"in_stock": True})
        else:
            leaves.append({"created_after": int(other["created_at"].timestamp())})
    shape = rng.random()
    if len(leaves) == 1:
        return leaves[0]
    if shape < 0.4:
        return {k: v for leaf in leaves for k, v in leaf.items()}  # one object: and
    if shape < 0.7:
        return {"any": leaves}
    return {"all": [leaves[0], {"not": {"any": leaves[1:]}}]}


def groups_matching(shop: dict, tree: dict) -> int:
    """Distinct styles with a variant in stock that passes the filter: what a full page can hold."""
    return len({it["item_group_id"] for it in shop.values() if it["stock"] > 0 and passes(it, tree)})


def test_random_filters_are_exact_and_fill_the_page(client, shop):
    """A property test against brute force: 30 random filters on both catalogue calls and on search with
    candidates; every returned item passes its filter, and a page of 10 is full wherever the catalogue has
    10 styles that pass it."""
    rng = np.random.default_rng(20261204)
    items = list(shop.values())
    candidates = [it["sku"] for it in items[::5]][:400]
    checked = filled = 0
    for _ in range(30):
        tree = random_filter(rng, items)
        available = groups_matching(shop, tree)
        for result in (
            client.search_catalog(ANONYMOUS, "dress", k=10, filters=tree, understand="off"),
            client.recommend_catalog(ANONYMOUS, k=10, filters=tree),
        ):
            for sku in result.item_ids:
                assert passes(shop[sku], tree), (tree, sku, shop[sku])
                assert shop[sku]["stock"] > 0
            if available >= 10:
                assert len(result.items) == 10, (tree, available, result.matches)
                filled += 1
            checked += len(result.items)
        ranked = client.search(ANONYMOUS, "coat", candidates, k=50, filters=tree, understand="off")
        want = {s for s in candidates if passes(shop[s], tree)}
        assert set(ranked.item_ids) <= want
    assert checked > 200 and filled >= 5  # the property was exercised, not vacuously true


def test_a_selective_filter_still_fills_k(client, shop):
    """A filter that keeps about 1% of the catalogue, far from the query's neighbourhood, still fills the page."""
    brand, colour = "Tidewell", "pink"
    tree = {"brand": brand, "colour": colour, "in_stock": True}
    available = groups_matching(shop, tree)
    share = sum(passes(it, tree) for it in shop.values()) / len(shop)
    assert share < 0.03 and available >= 5
    result = client.search_catalog(ANONYMOUS, "winter coat", k=min(available, 20), filters=tree, understand="off")
    assert len(result.items) == min(available, 20)
    assert all(passes(shop[s], tree) for s in result.item_ids)
    home = client.recommend_catalog(ANONYMOUS, k=min(available, 20), filters=tree)  # no profile: the popular path
    assert len(home.items) == min(available, 20) and all(passes(shop[s], tree) for s in home.item_ids)


def test_per_group_holds(client, shop):
    one = client.search_catalog(ANONYMOUS, "dress", k=30, understand="off")
    styles = [shop[s]["item_group_id"] for s in one.item_ids]
    assert len(styles) == len(set(styles)) == 30
    assert list(one.groups) == styles and all(m >= 1 for m in one.group_matches)
    every = client.search_catalog(ANONYMOUS, "dress", k=150, per_group=0, understand="off")
    counts = np.unique([shop[s]["item_group_id"] for s in every.item_ids], return_counts=True)[1]
    assert counts.max() >= 3  # without groups, a style's colours repeat
    assert list(every.groups) == [shop[s]["item_group_id"] for s in every.item_ids]
    two = client.search_catalog(ANONYMOUS, "dress", k=150, per_group=2, understand="off")
    counts = np.unique([shop[s]["item_group_id"] for s in two.item_ids], return_counts=True)[1]
    assert counts.max() == 2  # twice at most


def test_pages_continue_without_overlap(client):
    for call in (
        lambda **kw: client.search_catalog(ANONYMOUS, "black dress", **kw),
        lambda **kw: client.recommend_catalog(ANONYMOUS, **kw),
    ):
        first, second = call(k=10), call(k=10, offset=10)
        both = call(k=20)
        assert not set(first.item_ids) & set(second.item_ids)
        assert first.item_ids + second.item_ids == both.item_ids
        assert first.matches == second.matches == both.matches and both.matches >= 20
        past = call(k=10, offset=both.matches)
        assert past.items == () and past.matches == both.matches


def test_facet_counts_equal_brute_force_over_the_relevant_set(client, shop):
    tree = {"price": {"max": 120}}
    facets = ["brand", "colour", "size", "price", "category", "category.2"]
    page = client.search_catalog(ANONYMOUS, "coat", k=5, filters=tree, facets=facets, understand="off")
    # the whole relevant set: the same request, every item, no groups (the set does not depend on k or groups)
    every = client.search_catalog(ANONYMOUS, "coat", k=1000, per_group=0, filters=tree, understand="off")
    assert len(every.items) == every.matches and every.matches >= 50
    edges = [v.max for v in page.facets["price"] if v.max is not None]

    def values(item: dict, name: str) -> set[str]:
        if name == "brand":
            return {item["brand"]}
        if name.startswith("category"):
            level = int(name.partition(".")[2] or 1)
            return {" > ".join(item["category"].split(" > ")[:level])}
        if name == "price":
            return {str(int(np.searchsorted(edges, item["price"], side="right")))}
        return attribute_values(item, name)

    for name in facets:
        brute: dict[str, set[str]] = {}
        for sku in every.item_ids:
            for v in values(shop[sku], name):
                brute.setdefault(v, set()).add(shop[sku]["item_group_id"])
        served = page.facets[name]
        if name == "price":
            got = {str(i): v.count for i, v in enumerate(served)}
            bounds = [(v.min, v.max) for v in served]
            assert all(lo is None or hi is None or lo < hi for lo, hi in bounds)
            want = {k: len(v) for k, v in brute.items()}
            assert sorted(got.values()) == sorted(want.values()), (got, want)
        else:
            assert {v.value.lower(): v.count for v in served} == {k.lower(): len(v) for k, v in brute.items()}, name
    # a value shown with a count returns results when selected
    colour = page.facets["colour"][-1]
    chosen = client.search_catalog(ANONYMOUS, "coat", k=5, filters={**tree, "colour": colour.value}, understand="off")
    assert len(chosen.items) == min(5, colour.count)


def test_sort_orders_the_relevant_set(client, shop):
    cheap = client.search_catalog(ANONYMOUS, "sneakers", k=20, sort="price_asc", understand="off")
    prices = [shop[s]["price"] for s in cheap.item_ids]
    assert prices == sorted(prices) and len(prices) == 20
    dear = client.search_catalog(ANONYMOUS, "sneakers", k=20, sort="price_desc", understand="off")
    assert [shop[s]["price"] for s in dear.item_ids] == sorted((shop[s]["price"] for s in dear.item_ids), reverse=True)
    new = client.search_catalog(ANONYMOUS, "sneakers", k=20, sort="newest", understand="off")
    dates = [shop[s]["created_at"] for s in new.item_ids]
    assert dates == sorted(dates, reverse=True)
    assert cheap.matches == dear.matches == new.matches  # one relevant set, three orders


def test_product_page_leaves_out_its_own_group(client, shop):
    by_style: dict[str, list[str]] = {}
    for sku, it in shop.items():
        if it["stock"] > 0:
            by_style.setdefault(it["item_group_id"], []).append(sku)
    style, skus = next((g, s) for g, s in sorted(by_style.items()) if len(s) >= 3)
    page = client.recommend_catalog(ANONYMOUS, k=40, context=[skus[0]], per_group=0)
    assert not {shop[s]["item_group_id"] for s in page.item_ids} & {style}
    own = client.recommend_catalog(ANONYMOUS, k=200, context=[skus[0]], per_group=0, include_own_group=True)
    assert set(skus[1:]) & set(own.item_ids)  # asked to: the other colours are candidates again
    assert skus[0] not in own.item_ids  # the viewed item itself never


def test_understood_words_are_filters_and_chips(client, shop):
    result = client.search_catalog(ANONYMOUS, "black dress under 60", k=10)
    chips = result.info["understood"]["chips"]
    assert {c["field"] for c in chips if c["applied"]} == {"colour", "price"}
    assert {c["field"] for c in chips if not c["applied"]} == {"category"}  # reported, not applied
    assert len(result.items) == 10
    for sku in result.item_ids:
        assert attribute_values(shop[sku], "colour") == {"black"} and shop[sku]["price"] < 60
    off = client.search_catalog(ANONYMOUS, "black dress under 60", k=10, understand="off")
    assert "understood" not in off.info
    assert any(shop[s]["price"] >= 60 or "black" not in attribute_values(shop[s], "colour") for s in off.item_ids)
    # understand_fields names the kinds that apply: the category chip too
    every = client.search_catalog(
        ANONYMOUS, "black dress under 60", k=10, understand_fields=["price", "attribute", "category"]
    )
    chips = every.info["understood"]["chips"]
    assert {c["field"] for c in chips if c["applied"]} == {"colour", "price", "category"}
    category = next(c["value"] for c in chips if c["field"] == "category")
    assert every.items and all(passes(shop[s], {"category": category}) for s in every.item_ids)
    # and that the server has not applied it by default: the unfiltered answer leaves the category
    loose = client.search_catalog(ANONYMOUS, "black dress under 60", k=200, per_group=0)
    assert any(not passes(shop[s], {"category": category}) for s in loose.item_ids)


@pytest.mark.parametrize(
    ("options", "field", "problem", "sdk"),
    [
        ({"filter": {"colr": "black"}}, "shoprank_options.filter.colr", "unknown field", None),
        ({"filter": {"price": {"min": 80, "max": 50}}}, "shoprank_options.filter.price", "not below max", None),
        ({"filter": {"brand": [f"b{i}" for i in range(101)]}}, "shoprank_options.filter.brand", "limit of 100", None),
        ({"filter": {"any": [{"size": "M"}, {"price": {"max": -1}}]}}, "filter.any[1].price.max", "positive", None),
        ({"facets": ["fabric"]}, "shoprank_options.facets[0]", "unknown facet", None),
        ({"sort": "cheapest"}, "shoprank_options.sort", "expected one of", ("sort", {"sort": "cheapest"})),
        ({"per_group": -1}, "shoprank_options.per_group", "0..100", ("per_group", {"per_group": -1})),
    ],
)
def test_bad_options_are_invalid_argument_naming_the_field(fashion_server, client, options, field, problem, sdk):
    """Raw tritonclient with the documented encoding: INVALID_ARGUMENT naming the field, and the server keeps
    serving. The SDK sends the same filters and facets (and the server's error reaches the caller as
    InvalidRequest); a sort or group count it can check itself it refuses before sending, naming it."""
    raw = grpcclient.InferenceServerClient(fashion_server.grpc_url)
    inputs = []
    for name, value, dtype in (
        ("USER_ID", np.array([ANONYMOUS], np.int64), "INT64"),
        ("QUERY", np.array([b"dress"], object), "BYTES"),
        ("EXCLUDE_IDS", np.zeros(0, np.int64), "INT64"),
        ("TOP_K", np.array([10], np.int32), "INT32"),
    ):
        tensor = grpcclient.InferInput(name, list(value.shape), dtype)
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    with pytest.raises(InferenceServerException) as err:
        raw.infer("search_catalog", inputs, parameters={"shoprank_options": json.dumps(options)})
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert field in err.value.message() and problem in err.value.message()
    if sdk is None:
        keywords = {"filters": options["filter"]} if "filter" in options else {"facets": options["facets"]}
        with pytest.raises(InvalidRequest) as sdk_err:
            client.search_catalog(ANONYMOUS, "dress", k=5, **keywords)
        assert sdk_err.value.status == "INVALID_ARGUMENT" and field in sdk_err.value.message
    else:
        with pytest.raises(InvalidRequest) as sdk_err:
            client.search_catalog(ANONYMOUS, "dress", k=5, **sdk[1])
        assert sdk_err.value.field == sdk[0] and sdk_err.value.status is None
    assert len(client.search_catalog(ANONYMOUS, "dress", k=5).items) == 5  # the server keeps serving


def test_typed_filters_and_combinators(client, shop):
    typed = Filters(category="Women", attributes={"colour": ["navy", "black"]}, max_price=80, in_stock=True)
    result = client.search_catalog(ANONYMOUS, "coat", k=10, filters=typed, understand="off")
    tree = typed.to_tree()
    assert result.items and all(passes(shop[s], tree) for s in result.item_ids)
    either = any_of(Filters(brand="Nordlys"), Filters(attributes={"colour": "red"}))
    mixed = client.search_catalog(ANONYMOUS, "top", k=10, filters={**either, **none_of(Filters(max_price=20))})
    assert mixed.items and all(
        passes(shop[s], {**either, "not": {"any": [{"price": {"max": 20}}]}}) for s in mixed.item_ids
    )
    after = datetime(2026, 6, 1, tzinfo=UTC)
    fresh = client.search_catalog(ANONYMOUS, "dress", k=10, filters=Filters(created_after="2026-06-01"))
    assert fresh.items and all(shop[s]["created_at"] > after for s in fresh.item_ids)


def test_a_filter_nothing_passes_is_an_empty_page_not_an_error(client):
    for tree in ({"brand": "No Such Brand"}, {"in_stock": False, "price": {"max": 1}}):
        search = client.search_catalog(ANONYMOUS, "dress", k=10, filters=tree, understand="off")
        home = client.recommend_catalog(ANONYMOUS, k=10, filters=tree)
        assert search.items == home.items == () and search.matches == home.matches == 0


def test_the_cli_makes_the_catalogue_calls_with_the_listing_flags(fashion_server, client, shop, capsys):
    """``shoprank-rank`` without ``--candidates``: search_catalog with a query, recommend_catalog without; its
    flags are the SDK's keywords (the same answer as the SDK's call) and a string-id shop's SKUs come back."""
    base = ["--endpoint", fashion_server.grpc_url, "--timeout", "10", "--string-ids", "--user", "visitor-1"]
    flags = ["--attribute", "colour=black", "--attribute", "colour=navy", "--max-price", "80", "--facet", "colour"]
    assert cli_main([*base, "--query", "coat", *flags, "--understand", "off", "--k", "8", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    tree = {"colour": ["black", "navy"], "price": {"max": 80.0}}
    sdk = client.search_catalog("visitor-1", "coat", k=8, filters=tree, facets=["colour"], understand="off")
    assert printed["model"] == "search_catalog" and [i["item_id"] for i in printed["items"]] == sdk.item_ids
    assert len(sdk.items) == 8 and all(passes(shop[s], tree) for s in sdk.item_ids)
    assert [i["group"] for i in printed["items"]] == [shop[s]["item_group_id"] for s in sdk.item_ids]
    assert printed["matches"] == sdk.matches and {f["value"] for f in printed["facets"]["colour"]} <= {"black", "navy"}

    by_style: dict[str, list[str]] = {}
    for sku, it in shop.items():
        if it["stock"] > 0:
            by_style.setdefault(it["item_group_id"], []).append(sku)
    style, skus = next((g, s) for g, s in sorted(by_style.items()) if len(s) >= 3)
    assert cli_main([*base, "--context", skus[0], "--per-group", "0", "--k", "30"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["rank", "item_id", "score", "group", "matches"]
    rows = [line.split() for line in table[1:31]]
    assert len(rows) == 30 and all(shop[r[1]]["item_group_id"] == r[3] != style for r in rows)
    assert "model recommend_catalog v1" in table[-1]
    assert (
        cli_main([*base, "--context", skus[0], "--per-group", "0", "--k", "200", "--include-own-group", "--json"]) == 0
    )
    own = [i["item_id"] for i in json.loads(capsys.readouterr().out)["items"]]
    assert set(skus[1:]) & set(own) and skus[0] not in own

    assert cli_main([*base, "--query", "dress", "--filter-json", '{"colr": "black"}']) == 2  # the server's refusal
    assert "shoprank_options.filter.colr: unknown field" in capsys.readouterr().err
