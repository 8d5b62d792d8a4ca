"""The build's steps, each a plain function from its inputs to files in its own folder.

    data        read and validate the shop's files (the data contract) -> ShopData + validation report
    fine-tune   (encoder.fine_tune: auto) train the encoder on the shop's query -> clicked-title pairs, keep
                it only where it beats the one it started from on the validation window
    encoder     export the text encoder (the kept one) to ONNX, write its tokenizer, check parity with PyTorch
    embeddings  encode every item title and every distinct query with the exported encoder
    query-stats what shoppers clicked and bought after each frequent query, from the stats window
    covisit     the items each item's sessions also interacted with, from the stats window
    features    item/user statistics, lexicon and user profiles from the stats window (with the query tables)
    retrieval   the ANN index over the item embeddings (recall@N measured), the users' purchases
    ranker      train the DCN-v2 and/or LightGBM ranker (ranker.kind), keep the better on the validation window,
                evaluate on the held-out days in three views, export to ONNX, check parity
    repository  assemble the Triton repository (files first, configs last) and validate it

``builders.build`` chains them with their cache keys on ``builders.driver``. Data flows one way:
every step reads only what earlier steps wrote.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np

from builders.data.dataset import load_shop, newest_window, split_by_time
from builders.learning import covisit as cv
from builders.learning import dcn, feature_tables, gbdt, text_encoder
from builders.learning import fine_tune as ft
from builders.learning import query_stats as qs
from builders.learning import ranker as rk
from builders.learning import retrieval as rt
from builders.learning.limits import limits as data_limits
from builders.learning.rows import make_rows
from builders.repository import assemble as repo
from builders.repository import item_scan
from builders.repository.assemble import MANIFEST_FILE
from runtime import contract as c
from runtime.catalog import Catalog
from runtime.contract import QUERY_TOKENS
from runtime.covisit import CoVisits
from runtime.errors import ShoprankError
from runtime.features import USER_PROFILE_FILE, FeatureStore
from runtime.lexicon import LEXICON_FILE
from runtime.online_store import SNAPSHOT_FILE
from runtime.query_stats import QueryStats
from runtime.scoring import ITEM_EMBEDDINGS_FILE, ITEM_KEYS_FILE
from runtime.tables import STORE_DIR, FeatureTables
from runtime.text import TOKENIZER_FILE

logger = logging.getLogger(__name__)

PARITY_MIN_COSINE = 0.999
PARITY_MAX_ABS = 1e-4
SHOP_FILES = ("shop.npz", "shop_text.json")
QUERY_FILES = tuple(f"{STORE_DIR}/{name}" for name in QueryStats.files())  # feature_store/query_<table>.npy
COVISIT_FILES = tuple(f"{STORE_DIR}/{name}" for name in CoVisits.files())  # feature_store/covisit_<table>.npy
CATALOG_FILES = tuple(Catalog.files(STORE_DIR))  # feature_store/catalog_<table>.npy, catalog.json
TABLE_FILES = (*FeatureTables.files(), *QUERY_FILES, *COVISIT_FILES, *CATALOG_FILES)  # feature_store/<table>.npy
FEATURE_FILES = (*TABLE_FILES, LEXICON_FILE, USER_PROFILE_FILE, TOKENIZER_FILE, SNAPSHOT_FILE)
SERVED_DIR = "served"  # query_stats/served/: the served query statistics where they count another window


class StepError(ShoprankError, RuntimeError):
    """A build step failed; the message says which and how to reproduce it."""


def data(cfg, out: Path) -> dict:
    """Load and validate the shop of ``cfg`` into ``out`` (raises ``DataError`` with the whole report)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    shop, report = load_shop(cfg)
    for problem in report.warnings:
        logger.info(f"  {problem}")
    out.mkdir(parents=True, exist_ok=True)
    shop.save(out)
    report.summary["limits"] = data_limits(shop)
    report.save(out / "validation.json")
    if shop.item_keys is not None:  # the stable id of every string SKU, for audits and other systems
        pq.write_table(pa.table({"item_key": shop.item_keys, "item_id": shop.item_ids}), out / "item_ids.parquet")
    return {**report.summary, "warnings": len(report.warnings)}


def encoder(model_dir: Path | None, out_dir: Path, sample_titles: list[str]) -> dict:
    """Export the encoder in ``model_dir`` (None: the bundled MiniLM) to ``out_dir/model.onnx``."""

    onnx = text_encoder.export_onnx(out_dir / "model.onnx", model_dir)
    tokenizer = text_encoder.write_tokenizer(text_encoder.model_dir(model_dir), out_dir / TOKENIZER_FILE)
    report = text_encoder.parity(onnx, sample_titles, folder=model_dir, tokenizer=tokenizer)
    if report["min_cosine"] < PARITY_MIN_COSINE:
        hint = f" --model-dir {model_dir}" if model_dir else ""
        raise StepError(
            f"encoder parity failed: min cosine {report['min_cosine']:.6f} < {PARITY_MIN_COSINE} on "
            f"{report['n']} titles; reproduce: python -m builders.learning.text_encoder --out {onnx}{hint}"
        )
    return report


def fine_tune(shop, source: Path | None, settings, out_dir: Path, progress: bool) -> dict:
    """Fine-tune the encoder ``source`` (None: the bundled MiniLM) on the shop's pairs into ``out_dir/model``,
    measure both on the validation window, and write ``out_dir/choice.json``: ``kept`` when the tuned one
    wins in retrieval recall@300 and NDCG@10 by cosine both (``builders/learning/fine_tune.py``)."""

    start = text_encoder.model_dir(source)
    data = ft.pairs(shop, max_pairs=settings.fine_tune_pairs)
    report: dict = {"pairs": len(data), "kept": False}
    if not (start / "modules.json").exists():
        report["why"] = f"{start} is not a sentence-transformers folder (no modules.json): its pooling is not known"
    elif len(data) < 100:
        report["why"] = f"{len(data)} (query, clicked title) pairs in the training window: too few to fine-tune"
    else:
        report["train"] = ft.fine_tune(start, data, out_dir / "model", settings.fine_tune_epochs, progress=progress)
        report["started from"] = ft.evaluate(start, shop)
        report["fine-tuned"] = ft.evaluate(out_dir / "model", shop)
        before, after = report["started from"].get("all searches"), report["fine-tuned"].get("all searches")
        if before and after:
            keys = [k for k in after if k != "lists"]
            report["kept"] = all(after[k] > before[k] for k in keys)
            report["why"] = ", ".join(f"{k} {before[k]:.4f} -> {after[k]:.4f}" for k in keys) + " (validation window)"
        else:
            report["why"] = "no search list with a click in the validation window to compare on"
    logger.info(f"  fine-tuned encoder {'kept' if report['kept'] else 'not kept'}: {report['why']}")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "choice.json").write_text(json.dumps(report, indent=1))
    return report


def embeddings(
    titles: list[str], queries: list[str], encoder_dir: Path, out_dir: Path, title_tokens: int, progress: bool
) -> dict:
    """``items.npy`` [I+1, D] (last row zeros: unknown items) and ``queries.npy`` [Q, D].

    The titles the previous run of this step embedded with the same encoder (its ``items.keys.npy`` and
    ``items.encoder.txt``) are copied, not encoded again: a retrain with a day of new logs encodes only the new
    and changed titles (``text_encoder.encode_reusing``)."""

    onnx, tok = encoder_dir / "model.onnx", encoder_dir / TOKENIZER_FILE
    identity = text_encoder.encoder_identity(onnx, title_tokens, tok)
    items, keys_file, identity_file = out_dir / "items.npy", out_dir / "items.keys.npy", out_dir / "items.encoder.txt"
    previous = None
    if items.exists() and keys_file.exists() and identity_file.exists() and identity_file.read_text() == identity:
        old = np.load(items, mmap_mode="r")  # the old file stays mapped after the new one replaces it
        previous = (np.load(keys_file), old)
    identity_file.unlink(missing_ok=True)  # until the new table and its keys are whole
    # Chunked and resumable: a catalogue of millions is never in memory whole (the reuse aside), and a stopped
    # build goes on from the last chunk written (text_encoder.encode_to_file).
    done = text_encoder.encode_reusing(onnx, titles, title_tokens, items, previous, progress=progress, tokenizer=tok)
    np.save(keys_file, text_encoder.text_keys(titles))
    identity_file.write_text(identity)
    text_encoder.encode_to_file(
        onnx, queries, QUERY_TOKENS, out_dir / "queries.npy", progress=progress, tokenizer=tok, zero_row=False
    )
    return {
        "items": len(titles),
        "queries": len(queries),
        "dim": done["dim"],
        "resumed_from": done["resumed_from"],
        "titles_reused": done["reused"],
        "titles_encoded": done["encoded"],
    }


def query_stats(shop, settings, query_embeddings: np.ndarray, out_dir: Path) -> dict:
    """``out_dir/feature_store/query_*.npy``: the query behaviour statistics (``builders/learning/query_stats.py``)
    of the statistics window, which the ranker trains against; with ``settings.window`` newest, also
    ``out_dir/served/feature_store/``: the same over the newest window before the held-out days
    (``newest_window``), which the repository serves. With ``settings.enabled`` false, tables that know no query."""

    served = out_dir / SERVED_DIR
    shutil.rmtree(served, ignore_errors=True)
    if not settings.enabled:
        dim = query_embeddings.shape[1]
        QueryStats.empty(len(shop.categories), len(shop.brands), len(shop.item_ids), dim=dim).save(out_dir / STORE_DIR)
        return {"kept_queries": 0, "disabled": "features.query_stats.enabled: false"}
    stats, report = qs.build(shop, settings, query_embeddings)
    stats.save(out_dir / STORE_DIR)
    report["window"] = settings.window
    if settings.window == "newest":
        newest, served_report = qs.build(shop, settings, query_embeddings, newest_window(shop))
        newest.save(served / STORE_DIR)
        report["served"] = served_report
    return report


def served_query_files(query_dir: Path, features_dir: Path) -> dict[str, Path]:
    """The query statistics files the repository serves: the newest window's where the step wrote them,
    else the ones beside the feature tables."""
    served = query_dir / SERVED_DIR
    return {f: (served if (served / f).exists() else features_dir) / f for f in QUERY_FILES}


def covisit(shop, settings, out_dir: Path) -> dict:
    """``out_dir/feature_store/covisit_*.npy``: the co-visitation tables (``builders/learning/covisit.py``);
    with ``settings.enabled`` false, tables that know no pair."""

    if settings.enabled:
        tables, report = cv.build(shop, settings)
    else:
        tables = CoVisits.empty(len(shop.item_ids), len(shop.categories))
        report = {"pairs": 0, "disabled": "features.covisit.enabled: false"}
    tables.save(out_dir / STORE_DIR)
    return report


def features(shop, item_emb: np.ndarray, tokenizer: Path, out_dir: Path, query_dir: Path, covisit_dir: Path) -> dict:
    """The feature tables, lexicon, user profiles and online snapshot; the query tables of ``query_dir``
    and the co-visitation tables of ``covisit_dir`` are hard-linked beside the feature tables, so every
    reader of the tables finds them there."""

    out_dir.mkdir(parents=True, exist_ok=True)
    tables = feature_tables.build_tables(shop)
    tables.save(out_dir / STORE_DIR)
    for folder, names in ((query_dir, QUERY_FILES), (covisit_dir, COVISIT_FILES)):
        for name in names:
            target = out_dir / name
            target.unlink(missing_ok=True)
            os.link(folder / name, target)
    (out_dir / LEXICON_FILE).write_text(feature_tables.build_lexicon(shop).to_json())
    feature_tables.build_catalog(shop).save(out_dir, STORE_DIR)
    np.save(out_dir / USER_PROFILE_FILE, feature_tables.build_user_profiles(shop, item_emb))
    shutil.copyfile(tokenizer, out_dir / TOKENIZER_FILE)
    # A string-id shop's SKUs by item row (last: the unknown item), for topk's TOP_ITEM_KEYS: fixed-width
    # UTF-8, memory-mapped (about 20 bytes an item).
    keys = out_dir / ITEM_KEYS_FILE
    keys.unlink(missing_ok=True)
    if shop.item_keys is not None:
        np.save(keys, np.array([k.encode("utf-8") for k in shop.item_keys] + [b""], dtype=np.bytes_))
    # The online store's initial values (`python -m online seed` loads them into Redis).
    np.savez(out_dir / SNAPSHOT_FILE, item_id=shop.item_ids, price=shop.item_price, stock=shop.item_stock)
    return {
        "items": tables.n_items,
        "users": tables.n_users,
        "categories": len(shop.categories),
        "brands": len(shop.brands),
        "attributes": len(shop.attributes),
    }


def retrieval(shop, emb_dir: Path, feat_dir: Path, rcfg, out_dir: Path) -> dict:
    """The ANN index over the item embeddings, nprobe chosen by measured recall@N, the served item table,
    the users' purchases before the test days (``builders/learning/retrieval.py``), and the ``item_scan`` model over
    the table (``builders/repository/item_scan.py``)."""

    emb = np.load(emb_dir / "items.npy", mmap_mode="r")
    samples = {
        "queries": rt.sample_rows(np.load(emb_dir / "queries.npy", mmap_mode="r"), rt.SAMPLE_QUERIES, 1),
        "users": rt.sample_rows(np.load(feat_dir / USER_PROFILE_FILE, mmap_mode="r")[:-1], rt.SAMPLE_QUERIES, 2),
    }
    bought = rt.purchases(shop, int(shop.cuts["validation"]))
    report = rt.write(
        emb,
        samples,
        bought,
        out_dir,
        rcfg.index,
        rcfg.candidates,
        rcfg.recall_target,
        rcfg.nlist,
        rcfg.popular_share,
        rcfg.embedding_dtype,
        {
            "behaviour_share": rcfg.behaviour_share,
            "category_boost": rcfg.category_boost,
            "covisit_share": rcfg.covisit_share,
            "viewed_popular_share": rcfg.viewed_popular_share,
        },
    )
    # the exact scan over the served table, for the repositories whose retrieval runs it (the gpu target)
    item_scan.export(out_dir / ITEM_EMBEDDINGS_FILE, out_dir / item_scan.SCAN_FILE)

    queries = np.load(emb_dir / "queries.npy", mmap_mode="r")
    report["recall_curve"] = rt.recall_curve(out_dir, shop, queries, split_by_time(shop)["test"])
    return report


def ranker(
    shop,
    feat_dir: Path,
    query_dir: Path,
    item_emb: np.ndarray,
    query_emb: np.ndarray,
    hp,
    out_dir: Path,
    hint: str,
    progress: bool,
) -> dict:
    """Train the kind(s) of ``hp.kind``, evaluate, export the kept one to ``out_dir/model.onnx`` and check its
    parity with its own library (PyTorch or LightGBM). ``ranker.pt`` (the DCN's weights, which the compressed
    variants start from) and ``gbdt/`` (the booster) are kept for each kind trained. The held-out days are
    scored with the query statistics the repository serves (``served_query_files``)."""
    import torch

    store = FeatureStore.load(feat_dir, with_tokenizer=False, with_profiles=True)
    served = query_dir / SERVED_DIR / STORE_DIR
    test_store = None
    if served.is_dir():
        test_store = copy.copy(store)
        test_store.queries = QueryStats.load(served)
    models, report = rk.train(
        shop, store, item_emb, query_emb, store.profiles(), hp, progress=progress, test_store=test_store
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "ranker.pt").unlink(missing_ok=True)
    shutil.rmtree(out_dir / "gbdt", ignore_errors=True)
    if "dcn" in models:
        torch.save(models["dcn"].state_dict(), out_dir / "ranker.pt")
    if "gbdt" in models:
        models["gbdt"].save(out_dir / "gbdt")
    kind = report["kind"]
    model = models[kind]
    rows = make_rows(
        shop,
        store,
        item_emb,
        query_emb,
        store.profiles(),
        np.arange(min(50, len(shop.session_user))),
    )
    if kind == "gbdt":
        onnx = gbdt.export_onnx(model, out_dir / "model.onnx")
        report["parity"] = gbdt.parity(model, onnx, rows.cat, rows.dense)
    else:
        onnx = dcn.export_onnx(model, out_dir / "model.onnx")
        report["parity"] = dcn.parity(model, onnx, rows.cat, rows.dense)
    # float32 noise grows with the outputs' size: the bound is 1e-4 for outputs up to 1, relative beyond
    bound = PARITY_MAX_ABS * max(1.0, report["parity"]["max_abs_output"])
    if report["parity"]["max_abs_diff"] > bound:
        library = "LightGBM" if kind == "gbdt" else "torch"
        raise StepError(
            f"ranker ({kind}) parity failed: max |{library} - onnxruntime| = {report['parity']['max_abs_diff']:.2e} > "
            f"{bound:.2e} (outputs up to {report['parity']['max_abs_output']:.1f}); reproduce: {hint}"
        )
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    return report


def repository(out: Path, artifacts: dict[str, dict[str, Path]], model_specs, manifest: dict) -> dict:
    """Assemble (files first, configs last) and validate; the manifest travels with the feature models."""

    out.mkdir(parents=True, exist_ok=True)
    staged = out.parent / f".{out.name}.{MANIFEST_FILE}.tmp"
    staged.write_text(json.dumps(manifest, indent=1))
    for model in (c.SEARCH_FEATURES, c.RECOMMEND_FEATURES, c.RETRIEVE_SEARCH, c.RETRIEVE_RECOMMEND):
        artifacts.setdefault(model, {})[MANIFEST_FILE] = staged
    try:
        repo.assemble(out, artifacts, model_specs=model_specs)
    finally:
        staged.unlink(missing_ok=True)
    return {"checks": repo.validate(out, model_specs), "out": str(out)}
