"""A smaller text encoder distilled from MiniLM (all-MiniLM-L6-v2) on the shop's titles and queries.

The student is MiniLM with 2 of its 6 transformer layers (initialised from the teacher's layers
``KEEP_LAYERS``: the first keeps the input distribution, the last the output space), same tokenizer,
same pooling and normalisation in the graph. It is trained to reproduce the teacher's embeddings
(loss: 1 - cosine), which the build already has for every title and pool query, so the teacher is
not run again. Because it lives in the teacher's embedding space, the item-title embeddings of the
repository (built offline by the teacher) stay as they are: the student only serves queries.

Held out: the last ``HOLDOUT_TITLES`` titles are never trained on; their cosine to the teacher is
reported next to the queries'.

CLI: ``python -m builders.variants.distill --work build/default --out build/default/variants/distilled.onnx``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from builders.learning.text_encoder import export_module, load_torch_encoder, pretrained_dir
from runtime.text import TextTokenizer

KEEP_LAYERS = (0, 5)
HOLDOUT_TITLES = 2000
TITLE_TOKENS = 32


def make_student(keep_layers: tuple[int, ...] = KEEP_LAYERS):
    """The teacher wrapper with only ``keep_layers`` of its transformer layers."""
    import torch

    model = load_torch_encoder()
    layers = model.backbone.encoder.layer
    model.backbone.encoder.layer = torch.nn.ModuleList([layers[i] for i in keep_layers])
    model.backbone.config.num_hidden_layers = len(keep_layers)
    return model


def distill(
    texts: list[str],
    targets: np.ndarray,
    query_texts: list[str],
    query_targets: np.ndarray,
    epochs: int = 2,
    batch: int = 64,
    lr: float = 1e-4,
    query_repeats: int = 20,
    max_steps: int = 0,
    seed: int = 0,
    progress: bool = True,
):
    """Train a student on ``texts`` (+ ``query_texts`` repeated ``query_repeats`` times) towards the
    teacher's normalised embeddings. Returns ``(student, history)``."""
    import torch
    from tqdm import tqdm

    torch.manual_seed(seed)
    torch.set_num_threads(os.cpu_count() or 1)
    tok = TextTokenizer(pretrained_dir() / "tokenizer.json", length=TITLE_TOKENS)
    all_texts = list(texts) + list(query_texts) * query_repeats
    all_targets = np.concatenate([targets] + [query_targets] * query_repeats).astype(np.float32)
    student = make_student()
    opt = torch.optim.AdamW(student.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    steps = 0
    history = []
    for epoch in range(epochs):
        student.train()
        perm = rng.permutation(len(all_texts))
        losses = []
        for s in tqdm(
            range(0, len(perm), batch), desc=f"distill epoch {epoch + 1}/{epochs}", disable=not progress, unit="batch"
        ):
            idx = perm[s : s + batch]
            ids, mask = tok.encode([all_texts[i] for i in idx])
            emb = student(torch.from_numpy(ids), torch.from_numpy(mask))
            loss = (1.0 - (emb * torch.from_numpy(all_targets[idx])).sum(1)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            steps += 1
            if max_steps and steps >= max_steps:
                break
        history.append({"epoch": epoch + 1, "mean_loss": float(np.mean(losses))})
        if max_steps and steps >= max_steps:
            break
    student.eval()
    return student, history


def export_onnx(student, out: Path) -> Path:
    """Same inputs, outputs and dynamic axes as the teacher's export (the repository contract)."""

    return export_module(student, out)


def distill_from_build(work: Path, out: Path, epochs: int = 2, max_steps: int = 0, progress: bool = True) -> dict:
    """Distill from a finished build's texts and teacher embeddings (``build/<profile>``); write ``out``."""
    text = json.loads((work / "data" / "shop_text.json").read_text())
    titles, queries = text["item_titles"], text["queries"]
    items = np.load(work / "embeddings" / "items.npy")[: len(titles)]
    query_emb = np.load(work / "embeddings" / "queries.npy")
    n_train = max(1, len(titles) - HOLDOUT_TITLES)
    student, history = distill(
        titles[:n_train], items[:n_train], queries, query_emb, epochs=epochs, max_steps=max_steps, progress=progress
    )
    export_onnx(student, out)
    return {
        "train_titles": n_train,
        "held_out_titles": len(titles) - n_train,
        "queries": len(queries),
        "keep_layers": list(KEEP_LAYERS),
        "history": history,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=Path("build/default"))
    p.add_argument("--out", type=Path, default=Path("build/default/variants/encoder/distilled.onnx"))
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--max-steps", type=int, default=0)
    args = p.parse_args(argv)
    print(json.dumps(distill_from_build(args.work, args.out, args.epochs, args.max_steps), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
