import shutil

import numpy as np
import pytest

from builders.repository.assemble import RepositoryError, copy_files, validate
from builders.steps import CATALOG_FILES, TABLE_FILES
from runtime import contract as c
from runtime.lexicon import LEXICON_FILE
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


@pytest.fixture()
def repo_copy(small_repo, tmp_path):
    dest = tmp_path / "repo"
    shutil.copytree(small_repo, dest)
    return dest


def test_built_repository_validates(small_repo):
    lines = validate(small_repo)
    assert any(line.startswith("search: config ok") for line in lines)
    assert lines[-1].startswith("python models")


def test_a_config_edited_by_hand_is_caught(repo_copy):
    cfg = repo_copy / c.RANKER / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace("max_batch_size: 4096", "max_batch_size: 8"))
    with pytest.raises(RepositoryError, match="ranker: .* differs from its spec"):
        validate(repo_copy)


def test_an_onnx_model_that_does_not_match_its_config_is_caught(repo_copy):
    # The encoder's file in the ranker's place: wrong input names.
    shutil.copyfile(repo_copy / c.TEXT_ENCODER / "1" / "model.onnx", repo_copy / c.RANKER / "1" / "model.onnx")
    with pytest.raises(RepositoryError, match="ranker: inputs in the model"):
        validate(repo_copy)


def test_a_missing_artifact_is_caught(repo_copy):
    (repo_copy / c.TOPK / "1" / "item_embeddings.npy").unlink()
    with pytest.raises(FileNotFoundError, match="item_embeddings"):
        validate(repo_copy)


def test_item_embeddings_have_the_zero_row_for_unknown_items(small_repo):
    emb = np.load(small_repo / c.TOPK / "1" / "item_embeddings.npy")
    assert emb.dtype == np.float16  # the config's default embedding_dtype
    assert emb.shape[1] == c.EMBED_DIM and not emb[-1].any()
    np.testing.assert_allclose(np.linalg.norm(emb[:-1].astype(np.float32), axis=1), 1.0, atol=2e-3)


def test_models_share_one_inode_of_each_table_and_the_repository_owns_it(small_repo):

    features = [c.SEARCH_FEATURES, c.RECOMMEND_FEATURES, c.RETRIEVE_SEARCH, c.RETRIEVE_RECOMMEND]
    for name in [*TABLE_FILES, LEXICON_FILE]:
        readers = [*features, c.TOPK] if name in CATALOG_FILES else features  # topk groups and counts facets
        inodes = {(small_repo / m / "1" / name).stat().st_ino for m in readers}
        assert len(inodes) == 1, name
        assert (small_repo / readers[0] / "1" / name).stat().st_nlink == len(readers)
    emb = {(small_repo / m / "1" / "item_embeddings.npy").stat().st_ino for m in (c.TOPK, c.RETRIEVE_SEARCH)}
    assert len(emb) == 1
    # The build's own work files are not the served ones: a later build cannot change a served table.
    work = REPO_ROOT / "build" / "small" / "features" / TABLE_FILES[0]
    assert work.stat().st_ino not in {(small_repo / m / "1" / TABLE_FILES[0]).stat().st_ino for m in readers}


def test_copy_files_links_copies_of_one_source_and_copies_others(tmp_path):

    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    a.write_bytes(b"table a")
    b.write_bytes(b"table b")
    out = tmp_path / "out"
    copy_files([(a, out / "m1" / "t.npy"), (a, out / "m2" / "sub" / "t.npy"), (b, out / "m2" / "u.npy")])
    assert (out / "m1" / "t.npy").stat().st_ino == (out / "m2" / "sub" / "t.npy").stat().st_ino != a.stat().st_ino
    assert (out / "m2" / "u.npy").read_bytes() == b"table b" and (out / "m2" / "u.npy").stat().st_nlink == 1
    a.write_bytes(b"rewritten")  # the source changes in place: the copies do not
    assert (out / "m2" / "sub" / "t.npy").read_bytes() == b"table a"
    assert not list(out.rglob(".*.tmp"))
