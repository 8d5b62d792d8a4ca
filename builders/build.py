"""Build the model repository for a target: ``python -m builders build --target cpu --profile small``.

Steps (each cached under ``build/<profile>/`` with a stamp of its inputs; a step reruns only when
its inputs changed or its files are missing):

1. shop        generate the synthetic shop (catalogue, users, sessions, logs)
2. encoder     export all-MiniLM-L6-v2 to ONNX, check parity with PyTorch on real titles
3. embeddings  encode every item title and every pool query with the exported encoder
4. features    item/user statistics, lexicon and user profiles from the stats window
5. ranker      train the DCN ranker, evaluate on the test split, export to ONNX, check parity
6. repository  assemble the Triton repository (files first, configs last) and validate it

``--target gpu`` adds the gpu step (``builders.gpu.target``) before the repository.
"""
from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from builders import repository
from builders.shop import PROFILES, Shop, generate
from runtime import contract as c
from runtime.contract import QUERY_TOKENS
from runtime.features import LEXICON_FILE, STORE_FILE, TOKENIZER_FILE, USER_PROFILE_FILE
from runtime.scoring import ITEM_EMBEDDINGS_FILE

REPO_ROOT = Path(__file__).resolve().parent.parent
TITLE_TOKENS = 32
PARITY_MIN_COSINE = 0.999
PARITY_MAX_ABS = 1e-4


TARGETS = ("cpu", "gpu")


class BuildError(RuntimeError):
    """A build step failed; the message says which and how to reproduce it."""


@dataclass
class BuildContext:
    profile: str
    work: Path
    out: Path
    progress: bool = True
    log: Callable[[str], None] = print
    report: dict = field(default_factory=dict)

    def cached(self, name: str, key: dict, outputs: list[Path], make: Callable[[], dict | None]) -> dict:
        """Run ``make`` unless the stamp for ``name`` has the same key and every output exists."""
        stamp = self.work / f"{name}.stamp.json"
        if stamp.exists() and all(p.exists() for p in outputs):
            saved = json.loads(stamp.read_text())
            if saved.get("key") == key:
                self.log(f"[{name}] cached")
                self.report[name] = saved.get("report", {})
                return self.report[name]
        started = time.perf_counter()
        self.log(f"[{name}] building...")
        report = make() or {}
        report["seconds"] = round(time.perf_counter() - started, 1)
        stamp.write_text(json.dumps({"key": key, "report": report}, indent=1))
        self.log(f"[{name}] done in {report['seconds']} s")
        self.report[name] = report
        return report


def _versions() -> dict:
    import onnx
    import onnxruntime
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}


def select_variant(work: Path, model: str, name: str, margin: float) -> tuple[Path, dict]:
    """The file of a compressed variant that passes the quality gate, and the gate's verdict.

    Reads ``variants/report.json`` (``python -m builders variants``); a variant whose NDCG@10 is more
    than ``margin`` below the reference is refused with a ``BuildError`` that says by how much.
    """
    from builders.variants import gate
    from builders.variants.run import REFERENCE

    report_file = work / "variants" / "report.json"
    hint = f"python -m builders variants --profile {work.name} --only {model}/{name}"
    if not report_file.exists():
        raise BuildError(f"no measured variants in {report_file}: run `{hint}` first")
    measured = json.loads(report_file.read_text()).get(model, {})
    if name not in measured or REFERENCE not in measured:
        raise BuildError(f"{model} variant {name!r} was not measured (have {sorted(measured)}): run `{hint}`")
    entry = measured[name]
    if not Path(entry["file"]).exists():
        raise BuildError(f"{model} variant file {entry['file']} is missing: run `{hint}`")
    try:
        verdict = gate.check(f"{model}/{name}", entry["quality"], measured[REFERENCE]["quality"], margin)
    except gate.QualityGateError as err:
        raise BuildError(str(err)) from None
    return Path(entry["file"]), verdict


def build(target: str = "cpu", profile: str = "small", out: Path | None = None, work: Path | None = None,
          progress: bool = True, log: Callable[[str], None] = print, encoder_variant: str = "fp32",
          ranker_variant: str = "fp32", quality_margin: float = 0.01, gpu_runtime: str = "tensorrt",
          precision: str = "fp16") -> dict:
    """Build everything for ``target`` and ``profile`` into ``out``; returns the build report.

    ``encoder_variant`` / ``ranker_variant`` publish a compressed variant instead of the fp32
    reference, if it passes the quality gate (``quality_margin``, relative NDCG@10).
    ``target="gpu"`` writes the gpu repository (default ``build/<profile>/gpu_repository``) with
    ``gpu_runtime`` (tensorrt | ort-trt) and ``precision`` (fp32 | fp16 | int8); see ``builders.gpu``.
    """
    from builders import feature_tables, ranker, text_encoder

    if target not in TARGETS:
        raise BuildError(f"unknown target {target!r}; choose one of {TARGETS}")
    if profile not in PROFILES:
        raise BuildError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    p = PROFILES[profile]
    work = Path(work or REPO_ROOT / "build" / profile)
    out = Path(out or (REPO_ROOT / "model_repository" if target == "cpu" else work / "gpu_repository"))
    work.mkdir(parents=True, exist_ok=True)
    ctx = BuildContext(profile, work, out, progress, log)
    versions = _versions()

    shop_dir = work / "shop"
    shop_dir.mkdir(exist_ok=True)

    def make_shop():
        shop = generate(p)
        shop.save(shop_dir)
        return {"items": len(shop.item_ids), "users": len(shop.user_ids), "sessions": len(shop.session_user),
                "impressions": shop.n_impressions, "click_rate": float(shop.imp_click.mean())}

    ctx.cached("shop", p.key(), [shop_dir / "shop.npz"], make_shop)
    shop = Shop.load(shop_dir)

    encoder_onnx = REPO_ROOT / "build" / "encoder" / "model.onnx"
    enc_key = {"opset": text_encoder.OPSET, **versions}

    def make_encoder():
        text_encoder.export_onnx(encoder_onnx)
        titles = shop.item_titles[:200]
        report = text_encoder.parity(encoder_onnx, titles)
        if report["min_cosine"] < PARITY_MIN_COSINE:
            raise BuildError(f"encoder parity failed: min cosine {report['min_cosine']:.6f} < {PARITY_MIN_COSINE} "
                             f"on {report['n']} titles; reproduce: python -m builders.text_encoder --out {encoder_onnx}")
        return report

    ctx.cached("encoder", enc_key, [encoder_onnx], make_encoder)

    emb_dir = work / "embeddings"
    emb_dir.mkdir(exist_ok=True)

    def make_embeddings():
        items = text_encoder.encode(encoder_onnx, shop.item_titles, TITLE_TOKENS, progress=progress)
        np.save(emb_dir / "items.npy", np.concatenate([items, np.zeros((1, items.shape[1]), np.float32)]))
        np.save(emb_dir / "queries.npy", text_encoder.encode(encoder_onnx, shop.queries, QUERY_TOKENS,
                                                             progress=progress))
        return {"items": len(shop.item_titles), "queries": len(shop.queries)}

    ctx.cached("embeddings", {"shop": p.key(), **enc_key}, [emb_dir / "items.npy", emb_dir / "queries.npy"],
               make_embeddings)
    item_emb = np.load(emb_dir / "items.npy")
    query_emb = np.load(emb_dir / "queries.npy")

    feat_dir = work / "features"
    feat_dir.mkdir(exist_ok=True)

    def make_features():
        tables = feature_tables.build_tables(shop)
        tables.save(feat_dir / STORE_FILE)
        (feat_dir / LEXICON_FILE).write_text(feature_tables.build_lexicon(shop).to_json())
        np.save(feat_dir / USER_PROFILE_FILE, feature_tables.build_user_profiles(shop, item_emb))
        shutil.copyfile(text_encoder.pretrained_dir() / "tokenizer.json", feat_dir / TOKENIZER_FILE)
        return {"items": tables.n_items, "users": tables.n_users}

    feat_files = [feat_dir / f for f in (STORE_FILE, LEXICON_FILE, USER_PROFILE_FILE, TOKENIZER_FILE)]
    ctx.cached("features", {"shop": p.key(), **enc_key, "stats_fraction": feature_tables.STATS_FRACTION},
               feat_files, make_features)

    ranker_dir = work / "ranker"
    ranker_dir.mkdir(exist_ok=True)
    ranker_onnx = ranker_dir / "model.onnx"

    def make_ranker():
        import torch

        from runtime.features import FeatureStore

        store = FeatureStore.load(feat_dir, with_tokenizer=False, with_profiles=True)
        model, report = ranker.train(shop, store.tables, store.lexicon, item_emb, query_emb, store.user_profiles,
                                     progress=progress)
        torch.save(model.state_dict(), ranker_dir / "ranker.pt")
        ranker.export_onnx(model, ranker_onnx)
        rows = ranker.make_rows(shop, store.tables, store.lexicon, item_emb, query_emb, store.user_profiles,
                                np.arange(min(50, len(shop.session_user))))
        report["parity"] = ranker.parity(model, ranker_onnx, rows.cat, rows.dense)
        if report["parity"]["max_abs_diff"] > PARITY_MAX_ABS:
            raise BuildError(f"ranker parity failed: max |torch - onnxruntime| = {report['parity']['max_abs_diff']:.2e}"
                             f" > {PARITY_MAX_ABS}; reproduce: python -m builders build --profile {profile} --force ranker")
        (ranker_dir / "report.json").write_text(json.dumps(report, indent=1))
        return report

    ctx.cached("ranker", {"shop": p.key(), **enc_key, "code": "dcn-v2/1"}, [ranker_onnx], make_ranker)

    published = {}
    for model, name in (("encoder", encoder_variant), ("ranker", ranker_variant)):
        if name != "fp32":
            path, verdict = select_variant(work, model, name, quality_margin)
            published[model] = {"variant": name, "file": str(path), "gate": verdict}
            log(f"[{model}] publishing variant {name}: NDCG@10 {verdict['relative_drop']:+.2%} vs fp32 "
                f"(margin {quality_margin:.0%})")
            if model == "encoder":
                encoder_onnx = path
            else:
                ranker_onnx = path

    model_specs = None
    if target == "gpu":
        from builders.gpu.target import build_gpu

        try:
            model_specs, ctx.report["gpu"] = build_gpu(work, shop, {c.TEXT_ENCODER: encoder_onnx, c.RANKER: ranker_onnx},
                                                       gpu_runtime, precision, log)
        except ValueError as err:
            raise BuildError(str(err)) from None

    def make_repository():
        artifacts = {
            c.SEARCH_FEATURES: {STORE_FILE: feat_dir / STORE_FILE, LEXICON_FILE: feat_dir / LEXICON_FILE,
                                TOKENIZER_FILE: feat_dir / TOKENIZER_FILE},
            c.RECOMMEND_FEATURES: {STORE_FILE: feat_dir / STORE_FILE, LEXICON_FILE: feat_dir / LEXICON_FILE,
                                   USER_PROFILE_FILE: feat_dir / USER_PROFILE_FILE},
            c.TOPK: {ITEM_EMBEDDINGS_FILE: emb_dir / "items.npy"},
            c.TEXT_ENCODER: {"model.onnx": encoder_onnx},
            c.RANKER: {"model.onnx": ranker_onnx},
        }
        if target == "gpu":
            for model, files in ctx.report["gpu"]["files"].items():
                artifacts[model].update(files)
        repository.assemble(out, artifacts, model_specs=model_specs)
        return {"checks": repository.validate(out, model_specs), "out": str(out)}

    # Always reassembled and revalidated: it is cheap and the output folder may have been edited.
    ctx.report["repository"] = make_repository()
    for line in ctx.report["repository"]["checks"]:
        log(f"  {line}")
    ctx.report["profile"] = profile
    ctx.report["target"] = target
    ctx.report["published_variants"] = published
    (work / "build_report.json").write_text(json.dumps(ctx.report, indent=1, default=str))  # paths as text
    return ctx.report


def force(work: Path, steps: list[str]) -> None:
    """Forget the cache of ``steps`` so they rerun."""
    for step in steps:
        stamp = work / f"{step}.stamp.json"
        if stamp.exists():
            stamp.unlink()


def summary(report: dict) -> str:
    r = report.get("ranker", {}).get("test", {})
    lines = [f"model repository ready: {report['repository']['out']}  (profile {report['profile']}, "
             f"target {report['target']})"]
    if r:
        lines.append("test split     AUC     NDCG@10  NDCG@10(true relevance)")
        for name, q in r.items():
            lines.append(f"  {name:<12} {q['auc']:.4f}  {q['ndcg@10']:.4f}   {q['ndcg@10_true']:.4f}")
    return "\n".join(lines)

