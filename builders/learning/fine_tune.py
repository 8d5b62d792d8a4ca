"""Fine-tune the text encoder on the shop's own query -> clicked-title pairs, and measure it against the
pretrained one (``python -m builders.learning.fine_tune --work build/<name>``).

Pairs: every search list of the training window, the query with the title of each item clicked or bought
for it (duplicates once), at most ``max_pairs``. Training: sentence-transformers'
``MultipleNegativesRankingLoss`` (a contrastive loss with in-batch negatives: each query's clicked title
against the other titles of its batch), in a plain PyTorch loop (its ``fit`` needs the ``datasets``
package, which is not installed). A batch never holds the same query twice, so no clicked title is a
negative for its own query.

Measured on the validation window, both encoders the same way:
* the retrieval recall@N of each search list (the share of its clicked items among the N titles
  nearest the query in the whole catalogue);
* NDCG@10 of its logged candidates ordered by cosine alone (clicked 1, bought 2).

Each is reported per query class (head / tail / unseen by the statistics window).

The build's ``fine-tune`` step (``encoder.fine_tune: auto``, ``builders/steps.py``) runs these on the
shop and serves the tuned encoder only where it wins on both measures; the CLI runs them on a finished
build without changing it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from builders.data.dataset import ShopData, impressions_of, split_by_time
from builders.learning.metrics import ndcg_per_list
from builders.learning.text_encoder import pretrained_dir
from runtime.query_stats import normalize


def pairs(shop: ShopData, window: str = "train", max_pairs: int = 20_000, seed: int = 0) -> list[tuple[str, str]]:
    """(query, clicked title) pairs of ``window``'s search lists, each once, at most ``max_pairs``."""
    lists = split_by_time(shop)[window]
    lists = lists[shop.session_query[lists] >= 0]
    imp = impressions_of(shop, lists)
    query = np.repeat(shop.session_query[lists], np.diff(shop.session_offsets)[lists])
    hit = (shop.imp_click[imp] > 0) & (shop.imp_item[imp] >= 0)
    found = sorted({(int(q), int(i)) for q, i in zip(query[hit], shop.imp_item[imp][hit], strict=True)})
    rng = np.random.default_rng(seed)
    if len(found) > max_pairs:
        found = [found[j] for j in sorted(rng.choice(len(found), max_pairs, replace=False))]
    return [(shop.queries[q], shop.item_titles[i]) for q, i in found]


def batches(data: list[tuple[str, str]], size: int, rng: np.random.Generator) -> list[list[tuple[str, str]]]:
    """Shuffled batches in which no query appears twice (a second pair of a query waits for a later batch)."""
    order = [data[i] for i in rng.permutation(len(data))]
    out: list[list[tuple[str, str]]] = []
    while order:
        batch: list[tuple[str, str]] = []
        seen: set[str] = set()
        rest: list[tuple[str, str]] = []
        for pair in order:
            if len(batch) < size and pair[0] not in seen:
                batch.append(pair)
                seen.add(pair[0])
            else:
                rest.append(pair)
        out.append(batch)
        order = rest
    return out


def fine_tune(
    source: Path,
    data: list[tuple[str, str]],
    out: Path,
    epochs: int = 1,
    batch: int = 64,
    lr: float = 2e-5,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Train a copy of the sentence-transformers folder ``source`` on ``data`` into ``out``."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from tqdm import tqdm

    torch.manual_seed(seed)
    torch.set_num_threads(os.cpu_count() or 1)
    model = SentenceTransformer(str(source), device="cpu")
    loss_fn = MultipleNegativesRankingLoss(model)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    started, steps, last = time.perf_counter(), 0, float("nan")
    model.train()
    for epoch in range(epochs):
        for b in tqdm(batches(data, batch, rng), desc=f"fine-tune epoch {epoch + 1}/{epochs}", disable=not progress):
            if len(b) < 2:
                continue
            features = [model.preprocess([q for q, _ in b]), model.preprocess([t for _, t in b])]
            loss = loss_fn(features, None)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps, last = steps + 1, float(loss.detach())
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save(str(out))
    return {
        "pairs": len(data),
        "epochs": epochs,
        "steps": steps,
        "last_loss": round(last, 4),
        "seconds": round(time.perf_counter() - started, 1),
    }


def evaluate(folder: Path, shop: ShopData, window: str = "val", depth: int = 300) -> dict:
    """Retrieval recall@``depth`` and NDCG@10 by cosine on ``window``'s search lists with a click, per class."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu")
    started = time.perf_counter()
    titles = model.encode(shop.item_titles, batch_size=256, normalize_embeddings=True, convert_to_numpy=True)
    encode_s = time.perf_counter() - started
    lists = split_by_time(shop)[window]
    lists = lists[shop.session_query[lists] >= 0]
    queries = model.encode(shop.queries, batch_size=256, normalize_embeddings=True, convert_to_numpy=True)
    stats = split_by_time(shop)["stats"]
    counts: dict[str, int] = {}
    for q in shop.session_query[stats]:
        if q >= 0:
            counts[normalize(shop.queries[q])] = counts.get(normalize(shop.queries[q]), 0) + 1
    rows: dict[str, list[tuple[float, float]]] = {}
    for s in lists:
        a, b = shop.session_offsets[s], shop.session_offsets[s + 1]
        items, click, buy = shop.imp_item[a:b], shop.imp_click[a:b], shop.imp_purchase[a:b]
        known = items >= 0
        clicked = set(items[known & (click > 0)].tolist())
        if not clicked:
            continue
        q = int(shop.session_query[s])
        n = counts.get(normalize(shop.queries[q]), 0)
        cls = "head" if n >= 2 else "tail" if n == 1 else "unseen"
        sims = titles @ queries[q]
        nearest = np.argpartition(-sims, depth)[:depth]
        recall = len(clicked & set(nearest.tolist())) / len(clicked)
        gains = (2.0 ** (click[known] + buy[known]) - 1).astype(np.float64)
        ndcg = float(ndcg_per_list(gains, sims[items[known]], np.array([0, int(known.sum())]))[0])
        for group in (cls, "all searches"):
            rows.setdefault(group, []).append((recall, ndcg))
    out: dict = {"title_encoding_seconds": round(encode_s, 1)}
    for group, vals in rows.items():
        v = np.array(vals)
        out[group] = {
            "lists": len(v),
            f"recall@{depth}": round(float(v[:, 0].mean()), 4),
            "ndcg@10 by cosine": round(float(np.nanmean(v[:, 1])), 4),
        }
    return out


def main(argv: list[str] | None = None) -> int:

    p = argparse.ArgumentParser(prog="python -m builders.learning.fine_tune", description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, required=True, help="a finished build's folder (build/<name>)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-pairs", type=int, default=20_000)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    shop = ShopData.load(args.work / "data")
    data = pairs(shop, max_pairs=args.max_pairs)
    out = args.work / "fine_tuned_encoder"
    report = {"train": fine_tune(pretrained_dir(), data, out, args.epochs, progress=not args.no_progress)}
    report["pretrained"] = evaluate(pretrained_dir(), shop)
    report["fine-tuned"] = evaluate(out, shop)
    (args.work / "fine_tune_report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
