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


class OnnxTextEncoder:
    """One ONNX Runtime session and tokenizer, reused for every chunk of a long encoding."""

    def __init__(self, onnx_path: Path, length: int, tokenizer: Path, threads: int = 0):
        self.tok = TextTokenizer(tokenizer, length=length)
        self.session = make_session(str(onnx_path), intra_op_threads=threads or os.cpu_count() or 1)
        self.dim = int(self.session.get_outputs()[0].shape[1])

    def into(self, out: Array, texts: list[str], batch: int, progress: bool) -> None:
        for start in tqdm(
            range(0, len(texts), batch), desc=f"encode {len(texts)} texts", disable=not progress, unit="batch"
        ):
            ids, mask = self.tok.encode(texts[start : start + batch])
            # Trim padding columns no text in this batch uses: same result, less work.
            used = int(mask.sum(axis=1).max())
            feeds = {INPUT_IDS: ids[:, :used], ATTENTION_MASK: mask[:, :used]}
            out[start : start + batch] = self.session.run(None, feeds)[0]


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
