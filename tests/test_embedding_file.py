"""Chunked, resumable embedding of a catalogue's titles (builders.learning.text_encoder.encode_to_file)."""

import json

import numpy as np
import pytest

from builders.learning.text_encoder import encode, encode_to_file
from runtime.contract import INPUT_IDS
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


def test_texts_are_run_in_order_of_length_and_come_back_in_their_own_order(encoder):
    """Mixed lengths, arrival order: each batch pads only to the texts it holds (sorted by token length), and
    row ``i`` is ``texts[i]``'s embedding, as the text encoded alone gives it."""
    from runtime.encoder import OnnxTextEncoder

    onnx, tok = encoder
    rng = np.random.default_rng(1)
    words = ["trail", "running", "shoes", "laptop", "red", "dress", "tent", "waterproof"]
    texts = [" ".join(rng.choice(words, int(n))) for n in rng.permutation(np.repeat([1, 3, 9], 8))]
    enc = OnnxTextEncoder(onnx, 16, tok, threads=1)
    widths = []
    run = enc.session.run
    enc.session = type(
        "Recorder", (), {"run": lambda _, names, feeds: widths.append(feeds[INPUT_IDS].shape) or run(names, feeds)}
    )()
    got = np.empty((len(texts), enc.dim), np.float32)
    enc.into(got, texts, 8, progress=False)
    lengths = sorted(int(enc.tok.encode([t])[1].sum()) for t in texts)
    # three batches of 8, the shortest texts first, each as wide as its longest text (arrival order would
    # pad every batch to the longest of all: 1, 3 and 9 words are mixed in every third of the list)
    assert widths == [(8, lengths[7]), (8, lengths[15]), (8, lengths[23])] and lengths[7] < lengths[15] < lengths[23]
    alone = np.concatenate([encode(onnx, [t], 16, progress=False, tokenizer=tok, threads=1) for t in texts])
    np.testing.assert_allclose(got, alone, atol=1e-5)
