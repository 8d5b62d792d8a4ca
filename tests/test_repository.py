import shutil

import numpy as np
import pytest

from builders.repository import RepositoryError, validate
from runtime import contract as c

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
    assert emb.shape[1] == c.EMBED_DIM and not emb[-1].any()
    np.testing.assert_allclose(np.linalg.norm(emb[:-1], axis=1), 1.0, atol=1e-4)
