"""A shop's own data and encoder, built and served end to end: the grocery shop of ``tests/shops.py``.

String SKUs and user ids, null brands, anonymous sessions, category paths, French and German
titles, an unknown-item event and a duplicated row; the shop's own encoder is a small BERT in a
local Hugging Face folder (CLS pooling, 32 dimensions, no tokenizer.json). Served on a real
tritonserver and called through the SDK with the shop's own string ids, its top-k equals the
in-process pipeline's.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from builders.build import build
from builders.learning.text_encoder import pretrained_dir
from builders.repository import assemble as repository
from builders.repository.pipeline import InProcessPipeline
from explorer.explain import ExplorerError, Release, answer_from_server
from server.launcher import ServerOptions, TritonServer
from shoprank_client import RankingClient
from shoprank_client.ids import stable_id
from tests import shops
from tests.helpers import logged

pytestmark = [pytest.mark.slow, pytest.mark.triton]
TINY_DIM = 32


def make_tiny_encoder(folder):
    """A randomly initialised 2-layer BERT with MiniLM's vocabulary, saved like a sentence-transformers
    folder with CLS pooling and without tokenizer.json (the build must convert the tokenizer)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    tok = BertTokenizerFast(vocab_file=str(pretrained_dir() / "vocab.txt"), do_lower_case=True)
    tok.save_pretrained(str(folder))
    (folder / "tokenizer.json").unlink()
    torch.manual_seed(0)
    BertModel(
        BertConfig(
            vocab_size=tok.vocab_size,
            hidden_size=TINY_DIM,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
        )
    ).save_pretrained(str(folder))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {"word_embedding_dimension": TINY_DIM, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}
        )
    )


@pytest.fixture(scope="module")
def grocery(tmp_path_factory):

    root = tmp_path_factory.mktemp("groceries")
    make_tiny_encoder(root / "encoder")
    config = {**shops.CONFIG, "encoder": {"path": "../encoder", "fine_tune": "off"}}
    path = shops.write(root / "data", config=config)
    with logged() as logs:  # what the build logged
        report = build(config=path, out=root / "repo", work=root / "work", progress=False)
    return root, report, logs


@pytest.fixture(scope="module")
def served(grocery):

    root = grocery[0]
    server = TritonServer(
        ServerOptions(model_repository=root / "repo", log_file=root / "triton.log", ready_timeout_s=180)
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_the_build_learns_from_the_shops_own_data_and_encoder(grocery):
    root, report, logs = grocery
    manifest = report["manifest"]
    assert manifest["shop"] == "groceries" and manifest["ids"] == {"item": "string", "user": "string"}
    assert manifest["embed_dim"] == TINY_DIM and manifest["encoder"].endswith("encoder")
    assert report["encoder"]["min_cosine"] >= 0.999 and report["encoder"]["dim"] == TINY_DIM
    assert report["data"]["anonymous_lists"] > 0 and report["data"]["unknown_item_events"] == 1
    assert report["data"]["duplicate_events_dropped"] == 1 and report["data"]["true_relevance"] is False
    assert any("exact duplicate events; dropped" in line for line in logs)
    test = report["ranker"]["test"]
    assert "ndcg@10_true" not in test["ranker"] and "ground_truth" not in test  # real logs: no hidden truth
    assert test["ranker"]["auc"] > test["random"]["auc"] + 0.1
    assert test["ranker"]["ndcg@10"] > test["random"]["ndcg@10"]
    lexicon = json.loads((root / "repo" / "search_features" / "1" / "lexicon.json").read_text())
    assert "Frais > Fromages" in lexicon["categories"] and "Président" in lexicon["brands"]
    assert (root / "work" / "data" / "item_ids.parquet").exists()


def test_served_top_k_equals_the_in_process_pipeline_with_string_ids(grocery, served):

    root = grocery[0]
    pipeline = InProcessPipeline(root / "repo")
    catalogue = shops.generate()[0]
    skus = catalogue.column("sku").to_pylist()
    rng = np.random.default_rng(3)
    queries = ["fromages", "jus d'orange", "gemüse bio", "pâtes sans gluten", "brioche", "zzz"]
    with RankingClient(served.grpc_url, timeout_s=10) as client:
        for i in range(24):
            cands = [skus[j] for j in rng.choice(len(skus), int(rng.integers(2, 60)), replace=False)]
            if i % 6 == 0:
                cands.append("SKU-NEW-0001")  # an item the build never saw
            user = f"client-{int(rng.integers(400)):04d}" if i % 4 else "visitor-without-account"
            ids = np.array([stable_id(s) for s in cands], np.int64)
            if i % 3:
                got = client.search(user, queries[i % len(queries)], cands, k=7)
                want_ids, want_scores = pipeline.search(stable_id(user), queries[i % len(queries)], ids, 7)
            else:
                got = client.recommend(user, cands, k=7)
                want_ids, want_scores = pipeline.recommend(stable_id(user), ids, 7)
            key = dict(zip(ids.tolist(), cands, strict=True))
            assert got.item_ids == [key[j] for j in want_ids.tolist()]
            np.testing.assert_allclose(got.scores, want_scores, atol=1e-4, rtol=0)
            assert all(isinstance(item, str) for item in got.item_ids)


def test_catalogue_calls_return_the_shops_own_skus(grocery, served):
    """search_catalog and recommend_catalog take no candidates: the SKUs come back from the server
    (TOP_ITEM_KEYS), through the SDK and to a raw tritonclient caller alike."""
    import tritonclient.grpc as grpcclient

    root = grocery[0]
    pipeline = InProcessPipeline(root / "repo")
    skus = shops.generate()[0].column("sku").to_pylist()
    sku_of = {stable_id(s): s for s in skus}
    with RankingClient(served.grpc_url, timeout_s=10) as client:
        for query in ("fromages", "jus d'orange", "brioche"):
            got = client.search_catalog("client-0007", query, k=8)
            want_ids, want_scores = pipeline.search_catalog(stable_id("client-0007"), query, 8)
            assert got.item_ids == [sku_of[i] for i in want_ids.tolist()] and len(got.item_ids) == 8
            np.testing.assert_allclose(got.scores, want_scores, atol=1e-4, rtol=0)
        home = client.recommend_catalog("client-0007", k=5, context=[skus[3]])
        assert all(isinstance(i, str) and i.startswith("SKU-") for i in home.item_ids)
    raw = grpcclient.InferenceServerClient(served.grpc_url)
    inputs = [
        grpcclient.InferInput("USER_ID", [1], "INT64"),
        grpcclient.InferInput("QUERY", [1], "BYTES"),
        grpcclient.InferInput("EXCLUDE_IDS", [0], "INT64"),
        grpcclient.InferInput("TOP_K", [1], "INT32"),
    ]
    inputs[0].set_data_from_numpy(np.array([stable_id("client-0007")], np.int64))
    inputs[1].set_data_from_numpy(np.array([b"fromages"], object))
    inputs[2].set_data_from_numpy(np.zeros(0, np.int64))
    inputs[3].set_data_from_numpy(np.array([4], np.int32))
    result = raw.infer("search_catalog", inputs)
    ids, keys = result.as_numpy("TOP_ITEM_IDS"), result.as_numpy("TOP_ITEM_KEYS")
    assert [k.decode() for k in keys] == [sku_of[i] for i in ids.tolist()]


def test_the_repository_validates_with_its_own_dimension(grocery):

    root = grocery[0]
    lines = repository.validate(root / "repo")
    assert lines[-1] == "python models: outputs match their configs on a sample request"
    copy = root / "repo_copy"
    shutil.copytree(root / "repo", copy)
    (copy / "search_features" / "1" / "manifest.json").unlink()  # without it: MiniLM's 384 is assumed
    with pytest.raises(repository.RepositoryError, match="differs from its spec"):
        repository.validate(copy)


def test_the_explorer_takes_and_shows_the_shops_own_skus_and_user_ids(grocery, served):

    root = grocery[0]
    release = Release(root / "repo", root / "work")
    skus = shops.generate()[0].column("sku").to_pylist()
    local = release.search("fromages", "client-0007", 5)
    assert all(i.key.startswith("SKU-") and i.item_id == stable_id(i.key) for i in local.items)
    page = release.recommend("client-0007", skus[3], 5)  # the viewed item typed as the shop's SKU
    assert skus[3] not in [i.key for i in page.items] and len(page.items) == 5
    served_answer = answer_from_server(release, served.grpc_url, "search", "fromages", "client-0007", "", 5)
    assert [i.key for i in served_answer.items] == [i.key for i in local.items]
    assert "the same top-k as the in-process pipeline" in served_answer.note
    with pytest.raises(ExplorerError, match="^USER_ID: nobody is not a user this build knows"):
        release.search("fromages", "nobody", 5)
