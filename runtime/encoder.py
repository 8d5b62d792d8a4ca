"""The exported text encoder run by ONNX Runtime: titles and queries to L2-normalised embeddings.

The build embeds the catalogue with it, and the online writer embeds a new item's title with the very
model and tokenizer the repository serves, so both compute a vector the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from runtime.arrays import Array
from runtime.contract import ATTENTION_MASK, INPUT_IDS
from runtime.ort_runner import make_session
from runtime.text import TextTokenizer

# Texts sorted by token length together: the first 8,192 titles of the demo, market and fashion shops ran
# 1.58x, 1.96x and 1.28x faster in batches of 256 sorted than in catalogue order, whose batches each padded
# to their longest title (docs/benchmarks.md, ``make bench-encode-order``); 16,384 texts' tokens take 8 MB
# at 32 tokens.
SORT_WINDOW = 16_384


class OnnxTextEncoder:
    """One ONNX Runtime session and tokenizer, reused for every chunk of a long encoding."""

    def __init__(self, onnx_path: Path, length: int, tokenizer: Path, threads: int = 0):
        self.tok = TextTokenizer(tokenizer, length=length)
        self.session = make_session(str(onnx_path), intra_op_threads=threads or os.cpu_count() or 1)
        self.dim = int(self.session.get_outputs()[0].shape[1])

    def into(self, out: Array, texts: list[str], batch: int, progress: bool) -> None:
        """``out[i]`` = the embedding of ``texts[i]``. Texts are run in batches of ``batch`` in order of token
        length, a window of ``SORT_WINDOW`` texts at a time, so a batch pads its texts to about their own
        length; the rows go back to the texts' order."""
        windows = range(0, len(texts), SORT_WINDOW)
        for start in tqdm(windows, desc=f"encode {len(texts)} texts", disable=not progress, unit="window"):
            ids, mask = self.tok.encode(texts[start : start + SORT_WINDOW])
            lengths = mask.sum(axis=1)
            order = np.argsort(lengths, kind="stable")
            for a in range(0, len(order), batch):
                rows = order[a : a + batch]
                # Trim padding columns no text in this batch uses: same result, less work.
                used = int(lengths[rows].max())
                feeds = {INPUT_IDS: ids[rows, :used], ATTENTION_MASK: mask[rows, :used]}
                out[start + rows] = self.session.run(None, feeds)[0]


def encode(
    onnx_path: Path,
    texts: list[str],
    length: int,
    tokenizer: Path,
    batch: int = 256,
    progress: bool = True,
    threads: int = 0,
) -> Array:
    """Embeddings [len(texts), D] float32 of ``texts``; ``tokenizer`` is the encoder's ``tokenizer.json``."""
    enc = OnnxTextEncoder(onnx_path, length, tokenizer, threads)
    out = np.empty((len(texts), enc.dim), np.float32)
    enc.into(out, texts, batch, progress)
    return out


def embedding_dim(onnx_path: Path) -> int:
    """The width of the encoder's output, read from the ONNX graph."""
    return int(make_session(str(onnx_path), graph_opt="disable").get_outputs()[0].shape[1])
