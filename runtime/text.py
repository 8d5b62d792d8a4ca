"""Tokenisation for the text encoder, with the ``tokenizers`` library (Rust, fast).

Queries are truncated to ``QUERY_TOKENS`` and padded to the next multiple of ``QUERY_PAD_MULTIPLE``
tokens. The encoder's cost grows linearly with the padded length (measured: docs/benchmarks.md), so
padding every query to 32 would double the cost of a typical 6-token query; length buckets of 4 keep
short queries cheap while requests in the same bucket still share a shape, which is what Triton's
dynamic batcher needs to group them. Titles are encoded at build time with the same tokenizer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from runtime.arrays import Array
from runtime.contract import QUERY_PAD_MULTIPLE, QUERY_TOKENS
from runtime.requests import decode_query

TOKENIZER_FILE = "tokenizer.json"


class TextTokenizer:
    def __init__(self, tokenizer_file: str | Path, length: int = QUERY_TOKENS, multiple: int = QUERY_PAD_MULTIPLE):
        self._tok = Tokenizer.from_file(str(tokenizer_file))
        self._tok.enable_truncation(max_length=length)
        # The encoder's own padding token (recorded in its tokenizer.json), else BERT's [PAD] = 0.
        pad = self._tok.padding or {}
        pad_token = pad.get("pad_token") or "[PAD]"
        pad_id = pad.get("pad_id", self._tok.token_to_id(pad_token) or 0)
        self._tok.enable_padding(pad_id=pad_id, pad_token=pad_token, pad_to_multiple_of=multiple)

    def encode(self, texts: list[str]) -> tuple[Array, Array]:
        """``(input_ids, attention_mask)``, int64 ``[len(texts), L]``: L is the longest, rounded up."""
        encodings = self._tok.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        return ids, mask

    def encode_one(self, text: str) -> tuple[Array, Array]:
        enc = self._tok.encode(text)
        return (np.asarray(enc.ids, dtype=np.int64)[None, :], np.asarray(enc.attention_mask, dtype=np.int64)[None, :])


class QueryTokens:
    """``query_tokens``, the first step of ``search`` and ``search_catalog``: QUERY -> the encoder's tokens
    ``[1, L]``."""

    def __init__(self, tokenizer: TextTokenizer):
        self.tokenizer = tokenizer

    @classmethod
    def load(cls, folder: str | Path) -> QueryTokens:
        return cls(TextTokenizer(Path(folder) / TOKENIZER_FILE))

    def tokens(self, query: Array) -> dict[str, Array]:
        input_ids, mask = self.tokenizer.encode_one(decode_query(query))
        return {"input_ids": input_ids, "attention_mask": mask}
