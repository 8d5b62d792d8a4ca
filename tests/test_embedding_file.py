"""Chunked, resumable embedding of a catalogue's titles (builders.learning.text_encoder.encode_to_file)."""

import json

import numpy as np
import pytest

from builders.learning.text_encoder import encode, encode_to_file
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

ENCODER = REPO_ROOT / "build" / "encoder"  # the bundled MiniLM, exported by the small build


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def encoder(small_build):
    return ENCODER / "model.onnx", ENCODER / "tokenizer.json"


def titles(n: int) -> list[str]:
    words = ["trail", "running", "shoes", "laptop", "16gb", "red", "dress", "tent", "waterproof", "brio"]
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(words, 4)) + f" {i}" for i in range(n)]


def test_a_stopped_embedding_resumes_after_the_last_whole_chunk(encoder, tmp_path):
    onnx, tok = encoder
    texts = titles(100)
    out = tmp_path / "items.npy"
    seen = []

    def stop_after_two(done, total):
        seen.append(done)
        if len(seen) == 2:
            raise Stop  # the build is killed after two chunks

    with pytest.raises(Stop):
        encode_to_file(onnx, texts, 16, out, chunk=30, progress=False, tokenizer=tok, on_chunk=stop_after_two)
    assert not out.exists()  # a half-done file never has the final name
    state = json.loads((tmp_path / ".items.npy.progress.json").read_text())
    assert state["done"] == 60 and state["total"] == 100

    rest = []
    report = encode_to_file(
        onnx, texts, 16, out, chunk=30, progress=False, tokenizer=tok, on_chunk=lambda d, _: rest.append(d)
    )
    assert report["resumed_from"] == 60 and rest == [90, 100]  # only the chunks not yet written
    got = np.load(out)
    want = encode(onnx, texts, 16, progress=False, tokenizer=tok)
    assert got.shape == (101, want.shape[1]) and not got[-1].any()  # the zero row of unknown items
    np.testing.assert_allclose(got[:-1], want, atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["items.npy"]  # no partial or progress file left


def test_other_texts_do_not_resume_a_partial_file(encoder, tmp_path):
    onnx, tok = encoder
    out = tmp_path / "items.npy"

    def stop(done, total):
        raise Stop

    with pytest.raises(Stop):
        encode_to_file(onnx, titles(50), 16, out, chunk=20, progress=False, tokenizer=tok, on_chunk=stop)
    changed = titles(50)
    changed[3] = "a different title"
    report = encode_to_file(onnx, changed, 16, out, chunk=20, progress=False, tokenizer=tok, zero_row=False)
    assert report["resumed_from"] == 0
    got = np.load(out)
    np.testing.assert_allclose(got, encode(onnx, changed, 16, progress=False, tokenizer=tok), atol=1e-5)


def test_a_retrain_encodes_only_the_titles_the_previous_table_lacks(encoder, tmp_path):
    from builders import steps

    onnx, tok = encoder
    folder = ENCODER
    first = titles(80)
    out = tmp_path / "embeddings"
    report = steps.embeddings(first, ["red dress"], folder, out, 16, progress=False)
    assert (report["titles_reused"], report["titles_encoded"]) == (0, 80)
    nightly = first[5:] + ["a new linen summer dress", "waterproof tent 2 person"]  # 5 gone, 2 new
    nightly[10] = "a changed title"
    report = steps.embeddings(nightly, ["red dress"], folder, out, 16, progress=False)
    assert (report["titles_reused"], report["titles_encoded"]) == (74, 3)
    got = np.load(out / "items.npy")
    want = encode(onnx, nightly, 16, progress=False, tokenizer=tok)
    assert got.shape == (len(nightly) + 1, want.shape[1]) and not got[-1].any()
    np.testing.assert_allclose(got[:-1], want, atol=1e-5)  # the same rows as encoding everything again
    (out / "items.encoder.txt").write_text("another encoder")
    report = steps.embeddings(nightly, ["red dress"], folder, out, 16, progress=False)
    assert report["titles_reused"] == 0  # embeddings of another encoder are never reused
