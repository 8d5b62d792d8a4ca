"""Title embeddings for new items, by the encoder the model repository serves.

``RepositoryEncoder(repo)`` runs ``text_encoder/<v>/model.onnx`` with ONNX Runtime and the tokenizer of
``search_features/<v>/``, at the build's title length (the manifest's ``title_tokens``), for the version
the repository's ensembles name: a new item's vector is computed exactly as the build computed the
catalogue's. A repository for the GPU target serves a TensorRT engine instead; its ONNX source is
``build/<shop>/gpu`` (pass ``onnx=``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from runtime import contract as c
from runtime.encoder import encode
from runtime.repository import serving_version

DEFAULT_TITLE_TOKENS = 32


class RepositoryEncoder:
    def __init__(self, repo: Path, onnx: Path | None = None):
        repo = Path(repo)
        version = str(serving_version(repo))
        features = repo / c.SEARCH_FEATURES / version
        self.onnx = Path(onnx or repo / c.TEXT_ENCODER / version / "model.onnx")
        if not self.onnx.exists():
            raise FileNotFoundError(f"{self.onnx} is missing: new items need the ONNX encoder (pass onnx=)")
        manifest = json.loads((features / "manifest.json").read_text())
        self.title_tokens = int(manifest.get("title_tokens", DEFAULT_TITLE_TOKENS))
        self.dim = int(manifest["embed_dim"])
        self.tokenizer = features / "tokenizer.json"

    def __call__(self, titles: list[str]) -> np.ndarray:
        vectors = encode(self.onnx, titles, self.title_tokens, self.tokenizer, progress=False, threads=1)
        if vectors.shape[1] != self.dim:
            raise ValueError(f"{self.onnx} gives {vectors.shape[1]} values, the repository's manifest says {self.dim}")
        return vectors
