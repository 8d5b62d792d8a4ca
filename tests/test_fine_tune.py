"""The encoder fine-tuning prototype (builders/learning/fine_tune.py): its pairs, its batches without a
repeated query, and one real training step on the bundled MiniLM that moves a query toward its title."""

from __future__ import annotations

import numpy as np
import pytest

from builders import steps
from builders.data.config import EncoderConfig
from builders.learning import fine_tune as ft
from builders.learning.text_encoder import pretrained_dir
from tests.helpers import logged
from tests.test_query_stats import shop


@pytest.mark.unit
def test_pairs_are_the_training_windows_clicked_titles_once():
    lists = [("tea", [(0, 1, 0), (1, 0, 0)]), ("tea", [(0, 1, 1)]), ("books", [(2, 1, 0)]), (None, [(3, 1, 0)])]
    s = shop(lists, stats_lists=0)
    s.cuts = {"stats": 0, "train": 3, "validation": 10}  # lists 0..2 train, the homepage list after
    assert ft.pairs(s) == [("books", "c"), ("tea", "a")]
    assert len(ft.pairs(s, max_pairs=1)) == 1


@pytest.mark.unit
def test_a_batch_never_holds_a_query_twice():
    data = [("tea", f"t{i}") for i in range(5)] + [(f"q{i}", "x") for i in range(7)]
    out = ft.batches(data, 4, np.random.default_rng(0))
    assert sorted(p for b in out for p in b) == sorted(data)
    assert all(len({q for q, _ in b}) == len(b) <= 4 for b in out)


@pytest.mark.slow
def test_one_step_moves_a_query_toward_its_clicked_title(tmp_path):
    from sentence_transformers import SentenceTransformer

    data = [("wachmacher", "Rösterei Adler Kaffeebohnen 1 kg"), ("hygge", "Wollwerk Kuscheldecke 1 Stk")] * 8
    before = SentenceTransformer(str(pretrained_dir()), device="cpu")
    report = ft.fine_tune(pretrained_dir(), data, tmp_path / "tuned", epochs=2, batch=2, lr=1e-4, progress=False)
    after = SentenceTransformer(str(tmp_path / "tuned"), device="cpu")
    assert report["steps"] > 0 and report["pairs"] == 16

    def cos(model):
        q, t = model.encode(["wachmacher", "Rösterei Adler Kaffeebohnen 1 kg"], normalize_embeddings=True)
        return float(q @ t)

    assert cos(after) > cos(before)


@pytest.mark.unit
def test_the_build_step_fine_tunes_only_a_sentence_transformers_folder_with_enough_pairs(tmp_path):
    import json

    s = shop([("tea", [(0, 1, 0)])] * 3, stats_lists=0)
    s.cuts = {"stats": 0, "train": 10, "validation": 11}
    plain = tmp_path / "plain-bert"  # a Hugging Face folder without modules.json: its pooling is unknown
    plain.mkdir()
    with logged() as logs:
        report = steps.fine_tune(s, plain, EncoderConfig(), tmp_path / "ft", progress=False)
    assert not report["kept"] and "not a sentence-transformers folder" in report["why"]
    with logged() as logs:
        report = steps.fine_tune(s, None, EncoderConfig(), tmp_path / "ft", progress=False)
    assert not report["kept"] and "1 (query, clicked title) pairs" in report["why"]
    assert json.loads((tmp_path / "ft" / "choice.json").read_text())["kept"] is False
    assert logs[-1].startswith("  fine-tuned encoder not kept: ")
