"""Tokenisation for the text encoder, with the ``tokenizers`` library (Rust, fast).

Queries are padded and truncated to exactly ``QUERY_TOKENS`` tokens: every encoder request then has
the same shape, which is what lets Triton's dynamic batcher group them. Titles are encoded at build
time with the same tokenizer and a longer limit.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from runtime.contract import QUERY_TOKENS


class TextTokenizer:
    def __init__(self, tokenizer_file: str | Path, length: int = QUERY_TOKENS):
        self.length = length
        self._tok = Tokenizer.from_file(str(tokenizer_file))
        self._tok.enable_truncation(max_length=length)
        self._tok.enable_padding(length=length, pad_id=0, pad_token="[PAD]")

    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids, attention_mask)``, both int64 ``[len(texts), length]``."""
        encodings = self._tok.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        return ids, mask

    def encode_one(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        enc = self._tok.encode(text)
        return (np.asarray(enc.ids, dtype=np.int64)[None, :],
                np.asarray(enc.attention_mask, dtype=np.int64)[None, :])
