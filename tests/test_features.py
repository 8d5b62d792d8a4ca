import numpy as np
import pytest

from builders.learning.text_encoder import pretrained_dir
from runtime.candidates import candidate_features
from runtime.contract import (
    DENSE_COLUMNS,
    MAX_CANDIDATES,
    MAX_QUERY_BYTES,
    N_CAT,
    N_DENSE,
    ONE_QUERY_PAD_MULTIPLE,
    QUERY_PAD_MULTIPLE,
)
from runtime.errors import InvalidInput
from runtime.features import FeatureStore
from runtime.lexicon import Lexicon
from runtime.pages import is_mapped
from runtime.query_stats import QueryStats, normalize, query_key
from runtime.requests import check_item_ids, check_top_k, check_user_id, decode_query
from runtime.tables import FeatureTables
from runtime.text import TextTokenizer

pytestmark = pytest.mark.unit


def tables() -> FeatureTables:
    """2 items (ids 500, 300) and 1 user (id 9), plus the default rows."""
    return FeatureTables(
        {
            "item_ids_sorted": np.array([300, 500]),
            "item_rows_sorted": np.array([1, 0]),
            "user_ids_sorted": np.array([9]),
            "user_rows_sorted": np.array([0]),
            "item_category": np.array([0, 1, -1]),
            "item_brand": np.array([2, 0, -1]),
            "item_attrs": np.array([[0, -1], [1, 2], [-1, -1]]),
            "item_price_bucket": np.array([3, 5, -1]),
            "price_edges": np.array([0.0, 1.0], np.float32),
            "item_log_price": np.array([4.0, 2.0, 3.0], np.float32),
            "item_in_stock": np.array([1, 0, 1], np.float32),
            "item_log_clicks": np.array([2.0, 1.0, 0.0], np.float32),
            "item_ctr": np.array([0.3, 0.1, 0.2], np.float32),
            "user_segment": np.array([2, -1]),
            "user_cat_aff": np.array([[0.7, 0.2, 0.5], [0.5, 0.5, 0.5]], np.float32),
            "user_brand_aff": np.array([[0.1, 0.0, 0.9, 0.3], [0.3, 0.3, 0.3, 0.3]], np.float32),
            "user_mean_log_price": np.array([3.5, 3.0], np.float32),
            "user_clicks": np.array([4.0, 0.0], np.float32),
        }
    )


LEXICON = Lexicon(["running shoes", "shoes", "laptop"], ["Nordwind", "Brio", "Helix"], ["red", "16gb", "waterproof"])


def test_lexicon_finds_category_brand_attribute_longest_phrase_first():
    intent = LEXICON.parse("Helix RED Running Shoes")
    assert (intent.category, intent.brand, intent.attribute) == (0, 2, 0)
    assert LEXICON.parse("shoes").category == 1
    assert LEXICON.parse("something else").category == -1
    assert Lexicon.from_json(LEXICON.to_json()).parse("brio laptop 16gb").brand == 1


def test_lookup_maps_unknown_ids_to_minus_one():
    t = tables()
    np.testing.assert_array_equal(t.item_rows(np.array([500, 300, 42, 999])), [0, 1, -1, -1])
    np.testing.assert_array_equal(t.user_rows(np.array([9, 10])), [0, -1])


def test_candidate_features_known_and_unknown_rows():
    t = tables()
    users = np.array([0, 0, -1])
    items = np.array([0, -1, 1])
    none = QueryStats.empty(3, 3, 2)
    cat, dense = candidate_features(
        t,
        users,
        items,
        np.ones(3, bool),
        np.full(3, 0),
        np.full(3, 2),
        np.full(3, 0),
        none,
        np.full((3, 1), -1),
        np.zeros((3, 1)),
    )
    assert cat.shape == (3, N_CAT) and cat.dtype == np.int64
    assert dense.shape == (3, N_DENSE) and dense.dtype == np.float32
    np.testing.assert_array_equal(cat[:, 0], [1, 1, 0])  # unknown user -> 0
    np.testing.assert_array_equal(cat[:, 1], [1, 0, 2])  # unknown item -> 0
    np.testing.assert_array_equal(cat[:, 2], [1, 0, 2])  # category + 1, unknown -> 0
    np.testing.assert_array_equal(dense[:, 1], [1, 0, 0])  # category match only for item 0
    np.testing.assert_array_equal(dense[:, 2], [1, 0, 0])  # brand 2 == query brand 2
    np.testing.assert_array_equal(dense[:, 3], [1, 0, 0])  # attribute 0
    np.testing.assert_allclose(dense[:, 4], [0.7, 0.5, 0.5])  # user 0 cat 0; default row for unknowns
    np.testing.assert_allclose(dense[:, 9], [0.5, -0.5, -1.0])  # log price - user's mean log price
    np.testing.assert_array_equal(dense[:, 10], [1, 1, 0])
    np.testing.assert_array_equal(dense[:, 11], [1, 0, 1])


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"\xff\xfeabc", "QUERY: not valid UTF-8 (byte 0xff at offset 0)"),
        (b"", "QUERY: empty"),
        (b"   ", "QUERY: empty"),
        (b"x" * (MAX_QUERY_BYTES + 1), f"longer than the limit of {MAX_QUERY_BYTES}"),
    ],
)
def test_decode_query_rejects_bad_bytes_naming_the_field(raw, message):
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        decode_query(np.array([raw], dtype=object))
    assert err.value.field == "QUERY"


def test_decode_query_accepts_utf8():
    assert decode_query(np.array(["laufschuhe größe 42".encode()], dtype=object)) == "laufschuhe größe 42"


@pytest.mark.parametrize(
    "ids, message",
    [
        (np.array([], np.int64), "empty"),
        (np.arange(MAX_CANDIDATES + 1, dtype=np.int64), "more than the limit"),
        (np.array([1, 2, 1], np.int64), "duplicate id 1"),
        (np.array([[1, 2]], np.int64), "expected a 1-D list"),
        (np.array([1, 2], np.int32), "expected INT64"),
    ],
)
def test_check_item_ids_rejects(ids, message):
    with pytest.raises(InvalidInput, match=f"ITEM_IDS: .*{message}"):
        check_item_ids(ids)


def test_check_user_and_top_k():
    assert check_user_id(np.array([7])) == 7
    with pytest.raises(InvalidInput, match="USER_ID"):
        check_user_id(np.array([1, 2]))
    with pytest.raises(InvalidInput, match="TOP_K: must be at least 1"):
        check_top_k(np.array([0], np.int32))


@pytest.fixture(scope="module")
def tokenizer():

    return TextTokenizer(pretrained_dir() / "tokenizer.json")


def test_tokenizer_pads_to_a_multiple_and_truncates(tokenizer):
    ids, mask = tokenizer.encode_one("red running shoes")
    assert ids.shape[1] % QUERY_PAD_MULTIPLE == 0 and ids.shape == mask.shape
    assert mask.sum() == 5  # [CLS] red running shoes [SEP]
    long_ids, long_mask = tokenizer.encode_one("word " * 100)
    assert long_ids.shape == (1, 32) and long_mask.all()


def test_a_tokenizer_for_one_query_at_a_time_does_not_pad():
    alone = TextTokenizer(pretrained_dir() / "tokenizer.json", multiple=ONE_QUERY_PAD_MULTIPLE)
    ids, mask = alone.encode_one("red running shoes")
    assert ids.shape == mask.shape == (1, 5) and mask.all()  # [CLS] red running shoes [SEP]
    long_ids, long_mask = alone.encode_one("word " * 100)
    assert long_ids.shape == (1, 32) and long_mask.all()


def test_feature_store_search_and_recommend(tokenizer):
    profiles = np.vstack([np.eye(4, dtype=np.float32)[:1], np.zeros((1, 4), np.float32)])
    store = FeatureStore(tables(), LEXICON, tokenizer, profiles, embed_dim=4)
    out = store.search(np.array([9]), np.array([b"helix red running shoes"], object), np.array([300, 42]))
    np.testing.assert_array_equal(out["ITEM_ROWS"], [1, -1])
    assert out["dense_features"][:, 0].tolist() == [1.0, 1.0]
    assert out["input_ids"].shape == out["attention_mask"].shape
    rec = store.recommend(np.array([12345]), np.array([500]))  # unknown user: cold start
    assert rec["dense_features"][0, 0] == 0.0 and rec["cat_features"][0, 0] == 0
    np.testing.assert_array_equal(rec["CONTEXT_EMBEDDING"], np.zeros((1, 4), np.float32))
    np.testing.assert_array_equal(store.recommend(np.array([9]), np.array([500]))["CONTEXT_EMBEDDING"], profiles[:1])


def test_tables_missing_an_array_name_it():
    arrays = dict(tables().arrays)
    del arrays["item_ctr"]
    with pytest.raises(ValueError, match="missing item_ctr"):
        FeatureTables(arrays)


def test_tables_round_trip_through_memory_mapped_read_only_files(tmp_path):
    t = tables()
    t.save(tmp_path / "feature_store")
    assert sorted(p.name for p in (tmp_path / "feature_store").iterdir()) == [
        f.split("/")[1] for f in FeatureTables.files()
    ]
    back = FeatureTables.load(tmp_path / "feature_store")
    for name, arr in t.arrays.items():
        got = getattr(back, name)
        np.testing.assert_array_equal(got, arr)
        assert type(got) is np.ndarray and not got.flags.writeable  # a plain array over a read-only map
        assert is_mapped(got)  # served from the page cache, not a private copy
    assert back.item_rows(np.array([500, 7])).tolist() == [0, -1]


def test_loading_tables_from_a_missing_folder_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="feature tables: no folder"):
        FeatureTables.load(tmp_path / "nowhere")


def test_only_a_query_the_statistics_do_not_know_is_embedded(tokenizer):
    """search_features asks the encoder (BLS when served) for the embedding of tail and unseen queries alone:
    the head queries' requests skip it; an embedding of the wrong size is named."""
    asked = []

    def embed(ids, mask):
        asked.append(ids.shape)
        return np.full((1, 4), 0.5, np.float32)

    arrays = dict(QueryStats.empty(3, 3, 2).arrays)
    arrays.update(
        keys_sorted=np.array([query_key(normalize("running shoes"))]),
        rows_sorted=np.array([0]),
        log_lists=np.array([1.0, 0.0], np.float32),
        clicks=np.array([3.0, 0.0], np.float32),
        ctr=np.array([0.2, 0.1], np.float32),
        head_embeddings=np.full((1, 4), 0.5, np.float32),
        borrow=np.array([0.5, 1.0], np.float32),
    )
    store = FeatureStore(tables(), LEXICON, tokenizer, embed_dim=4, queries=QueryStats(arrays), embed=embed)
    known = store.search(np.array([9]), np.array([b"Running  Shoes!"], object), np.array([300]))
    assert (
        asked == [] and known["dense_features"][0, DENSE_COLUMNS.index("query_known")] == 1.0
    )  # matched itself, nothing asked
    tail = store.search(np.array([9]), np.array([b"runing shoes"], object), np.array([300]))
    assert len(asked) == 1 and tail["dense_features"][0, DENSE_COLUMNS.index("query_known")] == pytest.approx(
        1.0
    )  # borrowed, cosine 1
    store.embed = lambda ids, mask: np.ones((1, 3), np.float32)
    with pytest.raises(InvalidInput, match="sentence_embedding: expected 4 values, got 3"):
        store.search(np.array([9]), np.array([b"runing shoes"], object), np.array([300]))
