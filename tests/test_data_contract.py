"""The data contract: every validation problem produced for real from files on disk, its message checked.

Each test writes a small grocery shop (``tests/shops.py``: CSV and Parquet, string SKUs, mapped
column names), breaks one thing, and loads it the way the build does.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from builders.build import BuildError, build
from builders.data import config as cfg_mod
from builders.data.dataset import load_shop, split_by_time
from builders.data.report import DataError
from tests import shops
from tests.helpers import logged

pytestmark = pytest.mark.unit
SMALL = dict(n_items=200, n_users=60, n_sessions=700, days=30)


@pytest.fixture(scope="module")
def tables():
    return shops.generate(**SMALL)


def load(folder, tables=None, config=None):
    return load_shop(cfg_mod.load(shops.write(folder, tables, config, **SMALL)))


def problems(folder, tables=None, config=None) -> str:
    with pytest.raises(DataError) as err:
        load(folder, tables, config)
    return str(err.value)


def replace(table: pa.Table, column: str, row: int, value, type_=None) -> pa.Table:
    values = table.column(column).to_pylist()
    values[row] = value
    return table.set_column(table.column_names.index(column), column, pa.array(values, type_))


def config(**changes) -> dict:
    out = {**shops.CONFIG, "data": {**shops.CONFIG["data"]}}
    for key, value in changes.items():
        if key in cfg_mod.DataConfig.model_fields:
            out["data"][key] = value
        else:
            out[key] = value
    return out


def test_the_grocery_shop_loads_with_its_warnings(tmp_path, tables):
    shop, report = load(tmp_path, tables)
    assert report.errors == [] and shop.id_kinds == {"item": "string", "user": "string"}
    assert len(shop.item_ids) == SMALL["n_items"] and shop.item_keys[0] == "SKU-00000-" + shop.item_keys[0][10:]
    assert "Épicerie > Pâtes" in shop.categories and "Le Petit Marseillais" in shop.brands
    assert (shop.item_brand == -1).any()  # null brands kept as "no brand"
    assert (shop.session_user == -1).any()  # anonymous sessions
    assert set(shop.segments) == {"gold", "silver", "standard"}
    text = report.text()
    assert "events.csv, row" in text and "exact duplicate events; dropped" in text
    assert "1 events reference items not in catalogue.csv (e.g. 'SKU-99999-1KG'): kept as cold items" in text
    assert (shop.imp_item == -1).sum() == 1  # the cold item is a training row
    assert np.all(np.diff(shop.session_time) >= 0)
    split = split_by_time(shop)
    assert sum(len(v) for v in split.values()) == len(shop.session_time)


def test_missing_required_column_names_the_mapping(tmp_path, tables):
    catalogue = tables[0].drop_columns(["unit_price"])
    msg = problems(tmp_path, (catalogue, *tables[1:]))
    assert (
        "error: catalogue.csv, column 'unit_price': missing required column (mapped from 'price' in "
        "data.columns.items); the file has brand, category, labels, name, qty, sku, supplier_code"
    ) in msg
    assert msg.startswith("the data has 1 error; nothing was built")


def test_wrong_type_names_the_rows_and_values(tmp_path, tables):
    catalogue = tables[0].set_column(
        4,
        "unit_price",
        pa.array(
            [str(v) for v in tables[0].column("unit_price").to_pylist()[:2]]
            + ["abc"]
            + [str(v) for v in tables[0].column("unit_price").to_pylist()[3:]]
        ),
    )
    msg = problems(tmp_path, (catalogue, *tables[1:]))
    assert (
        "catalogue.csv, column 'unit_price' (contract 'price'), row 3: expected a number, got text such as 'abc'" in msg
    )


def test_null_ids_are_refused(tmp_path, tables):
    catalogue = replace(tables[0], "sku", 4, None)
    msg = problems(tmp_path, (catalogue, *tables[1:]))
    assert "catalogue.csv, column 'sku' (contract 'item_id'), row 5: null ids are not allowed" in msg
    events = replace(tables[2], "session_id", 9, None)
    msg = problems(tmp_path / "2", (tables[0], tables[1], events))
    assert "events.csv, column 'session_id', row 10: null ids are not allowed" in msg


def test_duplicate_item_ids_with_different_rows_are_an_error_identical_rows_a_warning(tmp_path, tables):
    sku = tables[0].column("sku").to_pylist()[1]
    catalogue = replace(tables[0], "sku", 6, sku)
    msg = problems(tmp_path, (catalogue, *tables[1:]))
    assert (
        f"catalogue.csv, column 'sku' (contract 'item_id'), rows 2, 7 (2 rows): duplicate item ids with "
        f"different rows: '{sku}', '{sku}'; each item must appear once" in msg
    )
    doubled = pa.concat_tables([tables[0], tables[0].slice(3, 1)])
    _, report = load(tmp_path / "2", (doubled, *tables[1:]))
    assert f"warning: catalogue.csv, row {SMALL['n_items'] + 1}: exact duplicate rows; dropped" in report.text()


def test_negative_prices_and_stock_are_refused(tmp_path, tables):
    catalogue = replace(replace(tables[0], "unit_price", 3, -3.5), "qty", 8, -1)
    msg = problems(tmp_path, (catalogue, *tables[1:]))
    assert "catalogue.csv, column 'unit_price' (contract 'price'), row 4: must be > 0, got -3.5" in msg
    assert "catalogue.csv, column 'qty' (contract 'stock'), row 9: must be >= 0, got -1" in msg
    assert "the data has 2 errors" in msg


def test_events_of_unknown_items_are_counted_then_dropped_or_kept_cold(tmp_path, tables):
    shop, report = load(tmp_path, tables, config(unknown_items="drop"))
    assert "1 events reference items not in catalogue.csv (e.g. 'SKU-99999-1KG'): dropped" in report.text()
    assert (shop.imp_item >= 0).all() and report.summary["unknown_item_events"] == 1


def test_events_out_of_time_order_are_reported_and_sorted(tmp_path, tables):
    _, report = load(tmp_path, tables)
    back = [p for p in report.warnings if "out of time order" in p.message]
    assert (
        len(back) == 1 and back[0].message == "1 session has events out of time order in the file; sorted by timestamp"
    )
    # the late event of sess-0 and the duplicated first row, both appended at the end
    assert back[0].rows == (tables[2].num_rows - 1, tables[2].num_rows)


def test_a_query_that_is_not_utf8_is_named_with_its_row(tmp_path, tables):
    shops.write(tmp_path, tables, **SMALL)
    raw = (tmp_path / "events.csv").read_bytes()
    lines = raw.split(b"\n")
    row = next(i for i, line in enumerate(lines) if b'"riz"' in line)
    lines[row] = lines[row].replace(b'"riz"', b'"ri\xffz"', 1)
    (tmp_path / "events.csv").write_bytes(b"\n".join(lines))
    with pytest.raises(DataError) as err:
        load_shop(cfg_mod.load(tmp_path / "shoprank.yaml"))
    assert f"events.csv, column 'query', row {row}: not valid UTF-8 (byte 0xff at offset 2)" in str(err.value)


def test_too_few_events_says_how_many_are_needed(tmp_path):
    msg = problems(tmp_path, shops.generate(n_items=200, n_users=20, n_sessions=60, days=30))
    assert "too few events to train: the train window" in msg and "at least 100 of each are needed" in msg


def test_unknown_event_kinds_and_unreadable_timestamps(tmp_path, tables):
    events = replace(tables[2], "type", 2, "view")
    msg = problems(tmp_path, (tables[0], tables[1], events))
    assert (
        "events.csv, column 'type' (contract 'event'), row 3: 'view' is not one of impression, click, "
        "add_to_cart, purchase"
    ) in msg
    events = tables[2].set_column(
        0, "ts", pa.array(["yesterday"] + [str(t) for t in tables[2].column("ts").to_pylist()[1:]])
    )
    msg = problems(tmp_path / "2", (tables[0], tables[1], events))
    assert "events.csv, column 'ts' (contract 'timestamp'), row 1: not a timestamp" in msg


def test_missing_file_and_mismatched_id_kinds(tmp_path, tables):
    shops.write(tmp_path, tables, **SMALL)
    (tmp_path / "events.csv").unlink()
    with pytest.raises(DataError, match=r"events.csv\.\*: no events file in .* \(looked for events.csv with"):
        load_shop(cfg_mod.load(tmp_path / "shoprank.yaml"))
    numeric = tables[0].set_column(0, "sku", pa.array(np.arange(tables[0].num_rows)))
    msg = problems(tmp_path / "2", (numeric, *tables[1:]), config(id_type="auto"))
    assert "events.csv, column 'item_id': string ids, but catalogue.csv has int64 ids" in msg


def test_attributes_as_lists_or_separated_strings_and_category_paths(tmp_path, tables):
    labels = tables[0].column("labels").to_pylist()
    as_lists = tables[0].set_column(
        6, "labels", pa.array([v.split(";") if v else None for v in labels], pa.list_(pa.string()))
    )
    import pyarrow.parquet as pq

    shops.write(tmp_path, tables, **SMALL)
    pq.write_table(as_lists, tmp_path / "catalogue.parquet")
    cfg = config(items="catalogue.parquet")
    (tmp_path / "shoprank.yaml").write_text(__import__("yaml").safe_dump(cfg, allow_unicode=True))
    from_parquet, _ = load_shop(cfg_mod.load(tmp_path / "shoprank.yaml"))
    from_csv, _ = load(tmp_path / "2", tables)
    np.testing.assert_array_equal(from_parquet.item_attrs, from_csv.item_attrs)
    assert from_csv.attributes == ["bio", "lokal", "sans gluten", "vegan"]


@pytest.mark.parametrize(
    "raw, message",
    [
        (
            {"name": "x", "data": {"folder": "."}, "ranker": {"epochs": 0}},
            "ranker.epochs: Input should be greater than 0 (got 0)",
        ),
        ({"name": "x", "data": {"folder": "."}, "rankr": {}}, "rankr: unknown field: check the spelling"),
        (
            {"name": "x", "data": {"folder": "."}, "split": {"stats": 0.9}},
            "split: Value error, cut points must increase",
        ),
        ({"name": "x/y", "data": {"folder": "."}}, "name: Value error, use letters, digits"),
        ({"name": "x"}, "data: Field required"),
        (
            {"name": "x", "data": {"folder": ".", "columns": {"items": {"sku": "id"}}}},
            "data.columns: Value error, items: 'sku' is not a contract column",
        ),
    ],
)
def test_config_errors_name_the_file_and_the_field(tmp_path, raw, message):
    import yaml

    path = tmp_path / "shoprank.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(cfg_mod.ConfigError) as err:
        cfg_mod.load(path)
    assert f"shoprank.yaml: {message}" in str(err.value)


def test_broken_data_never_writes_a_repository(tmp_path, tables):
    """The build stops at the data step: no encoder export, no training, no repository folder."""

    catalogue = replace(tables[0], "unit_price", 3, -3.5)
    path = shops.write(tmp_path / "data", (catalogue, *tables[1:]), **SMALL)
    out = tmp_path / "repo"
    with logged() as logs, pytest.raises(BuildError, match="must be > 0, got -3.5"):
        build(config=path, out=out, work=tmp_path / "work", progress=False)
    assert not out.exists() and "[encoder] building..." not in logs
    assert "must be > 0" in (tmp_path / "work" / "validation_errors.txt").read_text()


def test_the_example_config_is_valid_and_lists_every_field():
    """examples/shoprank.yaml documents every field of the config; it must parse and stay complete."""
    import yaml

    from tests.conftest import REPO_ROOT

    path = REPO_ROOT / "examples" / "shoprank.yaml"
    cfg = cfg_mod.load(path)
    raw = yaml.safe_load(path.read_text())
    for section, model in (
        ("data", cfg_mod.DataConfig),
        ("encoder", cfg_mod.EncoderConfig),
        ("ranker", cfg_mod.RankerConfig),
        ("split", cfg_mod.SplitConfig),
        ("features", cfg_mod.FeaturesConfig),
        ("evaluation", cfg_mod.EvaluationConfig),
        ("retrieval", cfg_mod.RetrievalConfig),
        ("retrain", cfg_mod.RetrainConfig),
    ):
        assert set(raw[section]) == set(model.model_fields), section
    assert set(raw["features"]["query_stats"]) == set(cfg_mod.QueryStatsConfig.model_fields)
    assert set(raw["data"]["ga4"]) == set(cfg_mod.Ga4Config.model_fields)
    assert set(raw) == set(cfg_mod.ShopConfig.model_fields)
    assert cfg.data.folder == (path.parent / "export").resolve()


def test_a_product_page_list_is_a_list_of_its_own_with_its_viewed_item(tmp_path, tables):
    """The optional context_item_id column (here mapped from 'viewed'): the events of one session shown on a
    product page form a list of their own beside the session's other list, in the same session group; a
    viewed item the catalogue does not have is named, and its list kept without a context."""
    catalogue, customers, events = tables
    session = events.column("session_id").to_pylist()
    position = events.column("position").to_pylist()
    sku = catalogue.column("sku").to_pylist()
    viewed = [
        (sku[7] if s == "sess-3" else "SKU-00000-NOPE" if s == "sess-4" else None) if p is not None and p >= 6 else None
        for s, p in zip(session, position, strict=True)
    ]
    events = events.append_column("viewed", pa.array(viewed, pa.string()))
    cfg = config()
    cfg["data"]["columns"] = {
        **cfg["data"]["columns"],
        "events": {**cfg["data"]["columns"]["events"], "context_item_id": "viewed"},
    }
    shop, report = load(tmp_path, (catalogue, customers, events), cfg)
    assert report.summary["product_page_lists"] == 1
    page = int(np.flatnonzero(shop.session_context >= 0)[0])
    assert shop.item_keys[shop.session_context[page]] == sku[7]
    same_visit = np.flatnonzero(shop.session_group == shop.session_group[page])
    assert sorted(shop.session_context[same_visit].tolist()) == [-1, int(shop.session_context[page])]
    assert len(np.unique(shop.session_group)) < len(shop.session_group)
    assert any(
        "'viewed' (contract 'context_item_id')" in str(w.column) and "not in" in w.message for w in report.warnings
    )
