"""Tokenisation for the text encoder, with the ``tokenizers`` library (Rust, fast).

Queries are truncated to ``QUERY_TOKENS``. Where Triton's dynamic batcher groups queries (the ensemble
layout's ``query_tokens`` and ``search_features``), they are padded to the next multiple of
``QUERY_PAD_MULTIPLE`` tokens: requests in the same length bucket share a shape and batch, and short queries
stay cheap (padding every query to 32 would double the cost of a typical 6-token query; the encoder's cost
grows with the padded length). A query encoded alone (the fused layout, the in-process pipeline) is not
padded (``ONE_QUERY_PAD_MULTIPLE``): the encoder masks padding, so the embedding is the same bit for bit,
and the padding cost 6-8% of the encoder's time (docs/benchmarks.md). Titles are encoded at build time
with the same tokenizer.
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
    def load(cls, folder: str | Path, pad_multiple: int = QUERY_PAD_MULTIPLE) -> QueryTokens:
        """``pad_multiple``: the length the tokens are padded to a multiple of (``ONE_QUERY_PAD_MULTIPLE``: none,
        for an encoder that runs each query alone)."""
        return cls(TextTokenizer(Path(folder) / TOKENIZER_FILE, multiple=pad_multiple))

    def tokens(self, query: Array) -> dict[str, Array]:
        input_ids, mask = self.tokenizer.encode_one(decode_query(query))
        return {"input_ids": input_ids, "attention_mask": mask}
