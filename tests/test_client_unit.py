"""The client SDK without a server: validation, error mapping, retries, endpoints, contract, packaging."""

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from builders.repository.model_specs import spec_by_name
from builders.repository.triton_config import NUMPY_TO_TRITON
from shoprank_client import (
    ClientOptions,
    ContractMismatch,
    DeadlineExceeded,
    InvalidRequest,
    Overloaded,
    RetryPolicy,
    ServerError,
    Unavailable,
)
from shoprank_client.cli import filters_of, format_table, parse_ids, result_dict
from shoprank_client.cli import main as cli_main
from shoprank_client.cli import parser as cli_parser
from shoprank_client.core import CallPlan, EndpointPool, resolve
from shoprank_client.errors import from_triton
from shoprank_client.ids import stable_id
from shoprank_client.listing import FacetValue, options_parameter
from shoprank_client.protocol import (
    CONTRACT,
    OPTIONAL_OUTPUTS,
    build_catalog_inputs,
    build_inputs,
    check_metadata,
    parse_items,
)
from shoprank_client.types import RankedItem, RankingResult

pytestmark = pytest.mark.unit
CLIENT_DIR = Path(__file__).resolve().parent.parent / "client"


@pytest.mark.parametrize(
    "kwargs, field, problem",
    [
        (dict(user_id=7.0), "user_id", "expected an integer"),
        (dict(candidates=["SKU-1", 2]), "candidates", "mixes strings and int"),
        (dict(candidates=["SKU-1", "SKU-1"]), "candidates", "duplicate id 'SKU-1'"),
        (dict(user_id=2**63), "user_id", "does not fit in int64"),
        (dict(candidates=[]), "candidates", "empty"),
        (dict(candidates=list(range(1001))), "candidates", "more than the limit of 1000"),
        (dict(candidates=[1, 2, 1]), "candidates", "duplicate"),
        (dict(candidates=[1.5, 2.0]), "candidates", "expected integers"),
        (dict(candidates=[[1, 2]]), "candidates", "flat list"),
        (dict(k=0), "k", ">= 1"),
        (dict(query="  "), "query", "empty"),
        (dict(query="x" * 1025), "query", "longer than the limit"),
        (dict(query="\ud800"), "query", "UTF-8"),
        (dict(query=12), "query", "expected str or bytes"),
    ],
)
def test_bad_arguments_are_caught_before_sending(kwargs, field, problem):
    args = dict(user_id=7, candidates=[1, 2, 3], k=2, query="shoes")
    args.update(kwargs)
    with pytest.raises(InvalidRequest, match=problem) as err:
        build_inputs(**args)
    assert err.value.field == field and err.value.status is None


def test_build_inputs_makes_the_contract_tensors():
    model, inputs, _ = build_inputs(7, np.array([3, 1, 2], np.int32), 2, "shoes")
    assert model == "search"
    assert [(i.name(), i.datatype(), i.shape()) for i in inputs] == [
        ("USER_ID", "INT64", [1]),
        ("QUERY", "BYTES", [1]),
        ("ITEM_IDS", "INT64", [3]),
        ("TOP_K", "INT32", [1]),
    ]
    model, inputs, _ = build_inputs(7, [3, 1], 50)
    assert model == "recommend" and [i.name() for i in inputs] == ["USER_ID", "ITEM_IDS", "TOP_K"]


@pytest.mark.parametrize(
    "status, message, cls",
    [
        ("StatusCode.INVALID_ARGUMENT", "in ensemble 'search', QUERY: empty", InvalidRequest),
        ("StatusCode.UNAVAILABLE", "failed to connect to all addresses", Unavailable),
        ("StatusCode.UNAVAILABLE", "Exceeds maximum queue size", Overloaded),
        ("StatusCode.RESOURCE_EXHAUSTED", "too many requests", Overloaded),
        ("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded", DeadlineExceeded),
        ("StatusCode.INTERNAL", "internal error: ZeroDivisionError", ServerError),
        ("StatusCode.NOT_FOUND", "unknown model", ServerError),
    ],
)
def test_grpc_statuses_map_to_the_exception_tree(status, message, cls):
    err = from_triton(InferenceServerException(message, status), "h:1")
    assert type(err) is cls and err.status == status.split(".")[1] and message in str(err) and err.endpoint == "h:1"


def test_invalid_argument_names_the_sdk_field():
    err = from_triton(
        InferenceServerException("in ensemble 'search', ITEM_IDS: duplicate id 4", "StatusCode.INVALID_ARGUMENT")
    )
    assert err.field == "candidates"


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_round_robin_skips_endpoints_marked_down_until_the_cooldown_ends():
    clock = Clock()
    pool = EndpointPool(["a:1", "b:1", "c:1"], ClientOptions(down_cooldown_s=2.0), clock=clock)
    assert [pool.pick(set()) for _ in range(3)] == ["a:1", "b:1", "c:1"]
    pool.mark_down("b:1")
    assert {pool.pick(set()) for _ in range(6)} == {"a:1", "c:1"}
    clock.now += 2.5
    assert {pool.pick(set()) for _ in range(6)} == {"a:1", "b:1", "c:1"}


def test_failover_prefers_the_first_healthy_and_untried_endpoint():
    pool = EndpointPool(["a:1", "b:1"], ClientOptions(balance="failover"), clock=Clock())
    assert pool.pick(set()) == "a:1" and pool.pick({"a:1"}) == "b:1"
    pool.mark_down("a:1")
    assert pool.pick(set()) == "b:1"
    pool.mark_down("b:1")
    assert pool.pick(set()) in {"a:1", "b:1"}  # all down: still try one rather than fail without trying


def test_dns_endpoint_expands_to_every_address():
    assert "127.0.0.1:8001" in resolve("dns:localhost:8001")
    assert resolve("10.0.0.1:8001") == ["10.0.0.1:8001"]
    with pytest.raises(ValueError, match="dns:NAME:PORT"):
        resolve("dns:nohostport")


def test_retries_only_retryable_errors_within_attempts_and_deadline():
    clock = Clock()
    opts = ClientOptions(timeout_s=1.0, retry=RetryPolicy(max_attempts=3, initial_backoff_s=0.1, max_backoff_s=0.15))
    pool = EndpointPool(["a:1", "b:1"], opts, clock=clock)
    plan = CallPlan(pool, opts, None, clock=clock, rand=lambda lo, hi: hi)
    plan.next_endpoint()
    assert plan.on_error(Unavailable("down", endpoint="a:1")) == pytest.approx(0.1)
    assert pool.is_down("a:1") and plan.next_endpoint() == "b:1"
    assert plan.on_error(Overloaded("busy", endpoint="b:1")) == pytest.approx(0.15)  # capped by max_backoff_s
    plan.next_endpoint()
    with pytest.raises(Overloaded):  # third attempt was the last
        plan.on_error(Overloaded("busy", endpoint="b:1"))
    plan2 = CallPlan(pool, opts, None, clock=clock)
    plan2.next_endpoint()
    with pytest.raises(InvalidRequest):  # never retried
        plan2.on_error(InvalidRequest("bad", "query"))


def test_no_retry_sleeps_past_the_deadline():
    clock = Clock()
    opts = ClientOptions(timeout_s=0.05, retry=RetryPolicy(max_attempts=5, initial_backoff_s=0.2))
    plan = CallPlan(EndpointPool(["a:1"], opts, clock=clock), opts, None, clock=clock, rand=lambda lo, hi: hi)
    plan.next_endpoint()
    with pytest.raises(Unavailable):
        plan.on_error(Unavailable("down", endpoint="a:1"))
    clock.now += 1
    with pytest.raises(DeadlineExceeded, match="deadline of 50 ms"):
        plan.next_endpoint()


def test_options_reject_nonsense():
    with pytest.raises(ValueError, match="timeout_s"):
        ClientOptions(timeout_s=0)
    with pytest.raises(ValueError, match="balance"):
        ClientOptions(balance="random")
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="cancel_grace_s"):
        ClientOptions(cancel_grace_s=-1)


def test_metadata_mismatch_lists_every_difference():
    served = {
        "inputs": [
            {"name": "USER_ID", "datatype": "INT32", "shape": ["1"]},
            {"name": "ITEM_IDS", "datatype": "INT64", "shape": ["-1"]},
            {"name": "EXTRA", "datatype": "FP32", "shape": ["1"]},
        ],
        "outputs": [
            {"name": "TOP_ITEM_IDS", "datatype": "INT64", "shape": ["-1"]},
            {"name": "TOP_SCORES", "datatype": "FP32", "shape": ["-1"]},
        ],
    }
    with pytest.raises(ContractMismatch) as err:
        check_metadata("recommend", served, "h:1")
    text = str(err.value)
    assert "input USER_ID is INT32[1], the SDK uses INT64[1]" in text
    assert "input TOP_K is missing" in text and "input EXTRA is served but unknown" in text


def test_sdk_contract_equals_the_served_ensembles():

    wire = {v: v.replace("TYPE_", "").replace("STRING", "BYTES") for v in NUMPY_TO_TRITON.values()}
    for model, contract in CONTRACT.items():
        spec = spec_by_name()[model]
        for kind, tensors in (("inputs", spec.inputs), ("outputs", spec.outputs)):
            served = {t.name: (wire[NUMPY_TO_TRITON[t.dtype]], list(t.dims)) for t in tensors}
            optional = OPTIONAL_OUTPUTS if kind == "outputs" else {}
            assert served == {k: (d, s) for k, (d, s) in {**contract[kind], **optional}.items()}, (model, kind)


def test_the_optional_keys_output_may_be_missing_but_not_of_another_type():
    outputs = [
        {"name": "TOP_ITEM_IDS", "datatype": "INT64", "shape": ["-1"]},
        {"name": "TOP_SCORES", "datatype": "FP32", "shape": ["-1"]},
    ]
    inputs = [
        {"name": n, "datatype": d, "shape": [str(x) for x in s]}
        for n, (d, s) in CONTRACT["recommend"]["inputs"].items()
    ]
    check_metadata("recommend", {"inputs": inputs, "outputs": outputs}, "h:1")  # a release built before it
    keys = {"name": "TOP_ITEM_KEYS", "datatype": "BYTES", "shape": ["-1"]}
    check_metadata("recommend", {"inputs": inputs, "outputs": outputs + [keys]}, "h:1")
    with pytest.raises(ContractMismatch, match="output TOP_ITEM_KEYS is INT64\\[-1\\], the SDK uses BYTES\\[-1\\]"):
        check_metadata("recommend", {"inputs": inputs, "outputs": outputs + [{**keys, "datatype": "INT64"}]}, "h:1")


def test_client_installs_alone_with_only_tritonclient_and_numpy():
    meta = tomllib.loads((CLIENT_DIR / "pyproject.toml").read_text())["project"]
    assert sorted(d.split("[")[0].split("=")[0].split(">")[0] for d in meta["dependencies"]) == [
        "numpy",
        "tritonclient",
    ]
    code = (
        "import sys, shoprank_client; heavy = {'torch', 'builders', 'runtime', 'server', 'onnxruntime'};"
        "loaded = heavy & set(sys.modules); assert not loaded, loaded"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=CLIENT_DIR)
    assert out.returncode == 0, out.stderr


def test_cli_parses_ids_and_prints_a_table(tmp_path, capsys):
    assert parse_ids("1, 2\n3 4", "x") == [1, 2, 3, 4]
    assert parse_ids("SKU-1,  42", "x", strings=True) == ["SKU-1", "42"]  # a string-id shop: "42" stays a string
    result = RankingResult((RankedItem(11, 0.5), RankedItem(7, -1.25)), "search", "1", "h:1", 3.2)
    table = format_table(result)
    assert table.splitlines()[1].split() == ["1", "11", "0.5000"] and "search v1" in table
    # one group per item (a shop without variant groups): no group columns
    alone = RankingResult(result.items, "search", "1", "h:1", 3.2, groups=("11", "7"), group_matches=(1, 1))
    assert format_table(alone).splitlines()[0].split() == ["rank", "item_id", "score"]
    assert cli_main(["--user", "1", "--candidates-file", str(tmp_path / "missing.txt")]) == 2
    assert cli_main(["--endpoint", "127.0.0.1:1", "--user", "1", "--candidates", "1,1"]) == 2  # duplicate: nothing sent
    capsys.readouterr()


def test_cli_prints_groups_pages_facets_chips_and_rules():
    info = {
        "matches": 57,
        "offset": 10,
        "understood": {
            "chips": [
                {"field": "colour", "value": "black", "text": "black", "applied": True},
                {"field": "price", "max": 60.0, "text": "under 60", "applied": True},
                {
                    "field": "category",
                    "value": ["Women > Dresses", "Girls > Dresses"],
                    "text": "dress",
                    "applied": False,
                },
            ],
            "mode": "filter",
            "relaxed": False,
        },
        "rules": ["xmas-dress"],
    }
    result = RankingResult(
        (RankedItem("ST1-BLACK", 0.9), RankedItem("ST2-NAVY", 0.4)),
        "search_catalog",
        "3",
        "h:1",
        4.0,
        groups=("ST1", "ST2"),
        group_matches=(2, 1),
        matches=57,
        facets={"colour": (FacetValue("black", 30), FacetValue("navy", 12))},
        info=info,
        release=3,
    )
    lines = format_table(result).splitlines()
    assert lines[0].split() == ["rank", "item_id", "score", "group", "matches"]
    assert lines[1].split() == ["1", "ST1-BLACK", "0.9000", "ST1", "2"]
    assert "57 results to page through (offset 10)" in lines
    assert "facet colour: black (30), navy (12)" in lines
    understood = next(line for line in lines if line.startswith("understood (filter)"))
    assert "colour: black (applied)" in understood and "price < 60 (applied)" in understood
    assert "category: Women > Dresses or Girls > Dresses (reported)" in understood
    assert "rules: xmas-dress" in lines and "release 3" in lines[-1]
    as_json = json.loads(json.dumps(result_dict(result)))  # plain JSON values only
    assert as_json["items"][0] == {"item_id": "ST1-BLACK", "score": 0.9, "group": "ST1", "group_matches": 2}
    assert as_json["facets"]["colour"][1] == {"value": "navy", "count": 12, "min": None, "max": None}
    assert as_json["matches"] == 57 and as_json["release"] == 3 and as_json["info"]["rules"] == ["xmas-dress"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--user", "u-1", "--query", "x"], "--user: 'u-1' is not an integer id (a shop built with string ids"),
        (["--user", "1", "--context", "SKU-9"], "--context: 'SKU-9' is not an integer id"),
        (["--user", "1", "--query", "x", "--context", "5"], "--context: recommend_catalog only"),
        (["--user", "1", "--candidates", "5,6", "--exclude", "7"], "--exclude: only without --candidates"),
        (["--user", "1", "--query", "x", "--include-own-group"], "--include-own-group: recommend_catalog only"),
        (["--user", "1", "--understand", "boost"], "--understand / --understand-field: search calls only"),
        (["--user", "1", "--query", "x", "--attribute", "colour"], "--attribute 'colour': expected NAME=VALUE"),
        (["--user", "1", "--query", "x", "--filter-json", "{colour"], "--filter-json: not valid JSON"),
        (["--user", "1", "--query", "x", "--filter-json", "[1]"], "--filter-json: expected a JSON object"),
        (["--user", "1", "--query", "x", "--max-price", "nan"], "filters.max_price: expected a number"),
        (["--user", "1", "--header", "novalue"], "--header 'novalue': expected KEY=VALUE"),
    ],
)
def test_cli_refuses_arguments_naming_them_before_sending(argv, message, capsys):
    assert cli_main(["--endpoint", "127.0.0.1:1", "--attempts", "1", *argv]) == 2  # port 1: nothing listens
    assert message in capsys.readouterr().err


def test_cli_builds_the_filter_tree_of_its_flags():
    args = cli_parser().parse_args(
        ["--user", "1", "--category", "Women", "--attribute", "colour=black", "--attribute", "colour=navy"]
        + ["--attribute", "size=M", "--max-price", "50", "--in-stock"]
    )
    assert filters_of(args) == {
        "category": ["Women"],
        "colour": ["black", "navy"],
        "size": ["M"],
        "price": {"max": 50.0},
        "in_stock": True,
    }
    both = cli_parser().parse_args(["--user", "1", "--brand", "Nordlys", "--filter-json", '{"not": {"size": "S"}}'])
    assert filters_of(both) == {"all": [{"brand": ["Nordlys"]}, {"not": {"size": "S"}}]}
    assert filters_of(cli_parser().parse_args(["--user", "1"])) is None


def test_understand_fields_travel_checked():
    sent = options_parameter(understand="filter", understand_fields=["price", "brand"])
    assert sent is not None and json.loads(sent["shoprank_options"]) == {
        "understand": "filter",
        "understand_fields": ["price", "brand"],
    }
    assert json.loads(options_parameter(understand_fields=[])["shoprank_options"]) == {"understand_fields": []}
    assert options_parameter(understand_fields=None) is None  # the server's default: nothing sent
    with pytest.raises(InvalidRequest) as err:
        options_parameter(understand_fields=["colour"])
    assert err.value.field == "understand_fields" and "'colour'" in str(err.value)


def test_string_ids_are_sent_as_their_stable_int64_and_mapped_back():

    skus = ["SKU-00012-XL", "SKU-00013-S", "épicerie-7"]
    model, inputs, keys = build_inputs("user-42", skus, 2, "shoes")
    ids = [stable_id(s) for s in skus]
    assert keys == dict(zip(ids, skus, strict=True)) and all(0 <= i < 2**63 for i in ids)
    assert stable_id("SKU-00012-XL") == stable_id("SKU-00012-XL") != stable_id("SKU-00012-xl")
    items = parse_items(np.array([ids[2], ids[0]], np.int64), np.array([0.5, 0.25], np.float32), keys)
    assert [i.item_id for i in items] == ["épicerie-7", "SKU-00012-XL"]
    assert model == "search" and inputs[0].shape() == [1]
    # no candidates sent (the catalogue models): the server's TOP_ITEM_KEYS name the shop's own ids
    served = np.array([b"SKU-00013-S", str(ids[0]).encode()], object)  # the second: added online
    items = parse_items(np.array([ids[1], ids[0]], np.int64), np.array([0.5, 0.25], np.float32), None, served)
    assert [i.item_id for i in items] == ["SKU-00013-S", ids[0]]
    ints = parse_items(np.array([5, 7], np.int64), np.array([1, 0], np.float32), None, np.array([b"5", b"7"], object))
    assert [i.item_id for i in ints] == [5, 7]  # an integer shop: unchanged


def test_catalogue_requests_send_empty_or_hashed_id_lists():

    model, inputs = build_catalog_inputs(7, 5, query="shoes")
    by_name = {i.name(): i for i in inputs}
    assert model == "search_catalog" and set(by_name) == {"USER_ID", "QUERY", "EXCLUDE_IDS", "TOP_K"}
    assert by_name["EXCLUDE_IDS"].shape() == [0]
    model, inputs = build_catalog_inputs("u-1", 5, context=["sku-9"], exclude=np.array([3, 4]))
    by_name = {i.name(): i for i in inputs}
    assert model == "recommend_catalog" and set(by_name) == {"USER_ID", "CONTEXT_ITEM_IDS", "EXCLUDE_IDS", "TOP_K"}
    assert by_name["CONTEXT_ITEM_IDS"].shape() == [1] and by_name["EXCLUDE_IDS"].shape() == [2]
    assert stable_id("sku-9") != 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"exclude": "sku-1"}, "^exclude: expected a list of ids, got a single str"),
        ({"exclude": [1.5, 2.0]}, "^exclude: expected integers"),
        ({"context": list(range(1001))}, "^context: 1001 ids is more than the limit of 1000"),
        ({"k": 0}, "^k: expected an integer >= 1"),
    ],
)
def test_bad_catalogue_requests_name_the_field(kwargs, message):

    with pytest.raises(InvalidRequest, match=message):
        build_catalog_inputs(1, **{"k": 3, **kwargs})


def test_the_asyncio_client_mirrors_the_sync_one():
    """Every public method of RankingClient is on AsyncRankingClient (awaitable) with the same parameters,
    defaults and order, so a keyword added to one and not the other fails here."""
    import inspect

    from shoprank_client import AsyncRankingClient, RankingClient

    public = [n for n, f in inspect.getmembers(RankingClient, inspect.isfunction) if not n.startswith("_")]
    assert {"search", "recommend", "search_catalog", "recommend_catalog", "rank_many", "check"} <= set(public)
    for name in public:
        twin = getattr(AsyncRankingClient, name, None)
        assert twin is not None and inspect.iscoroutinefunction(twin), name
        ours = [
            (p.name, p.default, p.kind) for p in inspect.signature(getattr(RankingClient, name)).parameters.values()
        ]
        theirs = [(p.name, p.default, p.kind) for p in inspect.signature(twin).parameters.values()]
        assert ours == theirs, name


def test_each_request_kind_names_its_method_with_every_keyword():
    """rank_many's requests carry every keyword of their method, under the same names: a keyword added to
    a method and not to its request (or misspelt) fails here."""
    import inspect

    from shoprank_client import (
        RankingClient,
        RecommendCatalogRequest,
        RecommendRequest,
        SearchCatalogRequest,
        SearchRequest,
    )
    from shoprank_client.types import call_of

    for request in (
        SearchRequest(1, "tent", [1, 2]),
        RecommendRequest(1, [1, 2]),
        SearchCatalogRequest(1, "tent", filters={"brand": "A"}),
        RecommendCatalogRequest(1, context=[3], include_own_group=True),
    ):
        method, keywords = call_of(request)
        takes = set(inspect.signature(getattr(RankingClient, method)).parameters) - {"self", "timeout_s"}
        assert set(keywords) == takes, method
    assert call_of(RecommendCatalogRequest(1, context=[3]))[1]["context"] == [3]
    with pytest.raises(InvalidRequest) as err:
        call_of({"user_id": 1})
    assert err.value.field == "requests"
