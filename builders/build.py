"""Build the model repository of a shop: ``python -m builders build --config shoprank.yaml``.

The input is a shop's data in the contract's format (``docs/data.md``) and its ``shoprank.yaml``.
``--profile small|default`` builds the generated demo shop: its files are written first
(``demo-data``, in the same format), then built like any shop's.

The steps (``builders/steps.py``), each cached under ``build/<name>/`` by a key of its inputs:

    [demo-data] -> data -> [fine-tune] -> encoder -> embeddings -> query-stats -> features -> retrieval
    -> ranker -> [gpu] -> repository

A step reruns only when its key changed (the data's content, the config, the encoder, the source of
the code it runs: ``builders/code_key.py``) or its files are missing. Data errors stop the build before
any training; the repository folder is never written from broken data.

Over 400 lines on purpose: the plan of cached steps, the files each model serves and the assembly are
one sequence whose keys and paths must agree; the summary lives in ``summary.py``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from builders import report_page, steps
from builders.code_key import step_key
from builders.data import config as cfg_mod
from builders.data import demo
from builders.data.contract import CONTRACT_VERSION
from builders.data.dataset import ShopData
from builders.data.load import data_files, fingerprint
from builders.data.report import DataError
from builders.driver import Driver, Step
from builders.gpu.target import build_gpu
from builders.learning import text_encoder
from builders.repository import golden
from builders.repository.item_scan import SCAN_FILE
from builders.repository.model_specs import ENSEMBLE, FUSED, FusedSizes, specs
from builders.steps import PARITY_MAX_ABS, PARITY_MIN_COSINE, StepError  # noqa: F401  (re-exported for callers)
from builders.variants import gate
from runtime import contract as c
from runtime.encoder import embedding_dim
from runtime.errors import ShoprankError
from runtime.features import USER_PROFILE_FILE
from runtime.lexicon import LEXICON_FILE
from runtime.online_store import SNAPSHOT_FILE
from runtime.retrieval import INDEX_FILE, PURCHASES_FILE, SETTINGS_FILE
from runtime.scoring import ITEM_EMBEDDINGS_FILE, ITEM_KEYS_FILE
from runtime.text import TOKENIZER_FILE

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_ENCODER_DIR = REPO_ROOT / "build" / "encoder"  # shared by every build that uses the bundled MiniLM
TARGETS = ("cpu", "gpu")
STEP_NAMES = (
    "demo-data",
    "data",
    "fine-tune",
    "encoder",
    "embeddings",
    "query-stats",
    "covisit",
    "features",
    "retrieval",
    "ranker",
)


class BuildError(ShoprankError, RuntimeError):
    """A build step failed; the message says which and how to reproduce it."""


def _versions() -> dict:
    import onnx
    import onnxruntime
    import torch
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def resolve(
    profile: str | None, config: str | Path | cfg_mod.ShopConfig | None, work: Path | None
) -> tuple[cfg_mod.ShopConfig, Path, Step | None]:
    """The shop's config, its work folder, and (for a demo profile) the step that writes its files."""
    if config is not None:
        cfg = config if isinstance(config, cfg_mod.ShopConfig) else cfg_mod.load(config)
        return cfg, Path(work or REPO_ROOT / "build" / cfg.name), None

    if profile not in demo.profiles():
        raise BuildError(f"unknown profile {profile!r}; choose one of {demo.profiles()}, or pass --config")
    work = Path(work or REPO_ROOT / "build" / profile)
    folder = work / "demo_data"
    cfg = cfg_mod.parse(demo.profile_config(profile, folder), "demo config")
    step = Step(
        "demo-data",
        lambda: {"config": str(demo.write(profile, folder))},
        {"profile": demo.profile_key(profile), "format": CONTRACT_VERSION, "code": step_key(demo.write)},
        demo.profile_files(profile, folder),
    )
    return cfg, work, step


def _data_files(cfg: cfg_mod.ShopConfig) -> list[Path]:

    return data_files(cfg.data)


@dataclass
class Layout:
    """Where each step of one build writes, and the shop's data once the data step has run."""

    work: Path
    encoder: Path  # the exported encoder and its tokenizer.json
    data_fingerprint: str = ""  # SHA-256 of the data files (set by ``plan``)
    _shop: object = None

    def __post_init__(self):
        self.data, self.embeddings, self.features, self.ranker, self.retrieval, self.query_stats, self.covisit = (
            self.work / d for d in ("data", "embeddings", "features", "ranker", "retrieval", "query_stats", "covisit")
        )

    def shop(self):
        if self._shop is None:
            self._shop = ShopData.load(self.data)
        return self._shop


def plan(cfg: cfg_mod.ShopConfig, at: Layout, hint: str, progress: bool) -> list[Step]:
    """The cached steps data -> encoder -> embeddings -> features -> ranker, each keyed by its inputs."""

    files = fingerprint(_data_files(cfg))
    data_key = {
        "files": files,
        "config": {k: v for k, v in cfg_mod.cache_key(cfg).items() if k in ("data", "split", "features", "evaluation")},
        "contract": CONTRACT_VERSION,
        "code": step_key(steps.data),
    }
    enc_key = {
        "opset": text_encoder.OPSET,
        **_versions(),
        "encoder": text_encoder.fingerprint(text_encoder.model_dir(cfg.encoder.path)),
        "code": step_key(steps.encoder),
    }
    tuned = at.work / "fine_tune"
    if cfg.encoder.fine_tune == "auto":  # the encoder served depends on what the fine-tune step decided
        enc_key["fine_tune"] = {
            "data": data_key,
            "from": enc_key["encoder"],
            **cfg.encoder.model_dump(mode="json", include={"fine_tune_pairs", "fine_tune_epochs"}),
            "code": step_key(steps.fine_tune),
        }
    upstream = {"data": data_key, "encoder": enc_key}

    def chosen_encoder() -> Path | None:
        """The folder the encoder step exports: the fine-tuned one where the fine-tune step kept it."""
        choice = tuned / "choice.json"
        if cfg.encoder.fine_tune == "auto" and choice.exists() and json.loads(choice.read_text())["kept"]:
            return tuned / "model"
        return cfg.encoder.path

    # the config is in data's key; embeddings: the encoder's
    query_key = {**upstream, "code": step_key(steps.query_stats)}
    covisit_key = {"data": data_key, "code": step_key(steps.covisit)}  # no embedding: the encoder does not matter
    at.data_fingerprint = files

    def run_data():
        try:
            return steps.data(cfg, at.data)
        except DataError as err:
            (at.work / "validation_errors.txt").write_text(err.report.text() + "\n")
            raise

    item_emb = lambda: np.load(at.embeddings / "items.npy", mmap_mode="r")  # noqa: E731
    fine_tune = [
        Step(
            "fine-tune",
            lambda: steps.fine_tune(at.shop(), cfg.encoder.path, cfg.encoder, tuned, progress),
            enc_key.get("fine_tune"),
            [tuned / "choice.json"],
        )
    ]
    return [
        Step("data", run_data, data_key, [at.data / f for f in steps.SHOP_FILES]),
        *(fine_tune if cfg.encoder.fine_tune == "auto" else []),
        Step(
            "encoder",
            lambda: steps.encoder(chosen_encoder(), at.encoder, at.shop().item_titles[:200]),
            enc_key,
            [at.encoder / "model.onnx", at.encoder / TOKENIZER_FILE],
        ),
        Step(
            "embeddings",
            lambda: steps.embeddings(
                at.shop().item_titles, at.shop().queries, at.encoder, at.embeddings, cfg.encoder.title_tokens, progress
            ),
            {**upstream, "title_tokens": cfg.encoder.title_tokens, "code": step_key(steps.embeddings)},
            [at.embeddings / "items.npy", at.embeddings / "queries.npy"],
        ),
        Step(
            "query-stats",
            lambda: steps.query_stats(
                at.shop(),
                cfg.features.query_stats,
                np.load(at.embeddings / "queries.npy", mmap_mode="r"),
                at.query_stats,
            ),
            query_key,
            [at.query_stats / f for f in steps.QUERY_FILES]
            + (
                [at.query_stats / steps.SERVED_DIR / f for f in steps.QUERY_FILES]
                if cfg.features.query_stats.enabled and cfg.features.query_stats.window == "newest"
                else []
            ),
        ),
        Step(
            "covisit",
            lambda: steps.covisit(at.shop(), cfg.features.covisit, at.covisit),
            covisit_key,
            [at.covisit / f for f in steps.COVISIT_FILES],
        ),
        Step(
            "features",
            lambda: steps.features(
                at.shop(), item_emb(), at.encoder / TOKENIZER_FILE, at.features, at.query_stats, at.covisit
            ),
            {**upstream, "query-stats": query_key, "covisit": covisit_key, "code": step_key(steps.features)},
            [at.features / f for f in steps.FEATURE_FILES],
        ),
        Step(
            "retrieval",
            lambda: steps.retrieval(at.shop(), at.embeddings, at.features, cfg.retrieval, at.retrieval),
            {
                **upstream,
                "retrieval": cfg.retrieval.model_dump(mode="json", exclude={"engine"}),  # engine: configs only
                "code": step_key(steps.retrieval),
            },
            [at.retrieval / f for f in (INDEX_FILE, SETTINGS_FILE, PURCHASES_FILE, ITEM_EMBEDDINGS_FILE, SCAN_FILE)],
        ),
        Step(
            "ranker",
            lambda: steps.ranker(
                at.shop(),
                at.features,
                at.query_stats,
                item_emb(),
                np.load(at.embeddings / "queries.npy"),
                cfg.ranker,
                at.ranker,
                hint,
                progress,
            ),
            {
                **upstream,
                "query-stats": query_key,
                "covisit": covisit_key,
                "ranker": cfg.ranker.model_dump(mode="json"),
                "code": step_key(steps.ranker),
            },
            [at.ranker / "model.onnx"],
        ),
    ]


def publish(
    work: Path, variants: dict[str, str], margin: float, sources: dict[str, Path]
) -> tuple[dict[str, Path], dict]:
    """The model files to serve: each model's fp32 source, or its measured variant if the gate passes it."""

    files, published = dict(sources), {}
    for model, name in variants.items():
        if name == "fp32":
            continue
        try:
            path, verdict = gate.publishable(work, model, name, margin)
        except gate.QualityGateError as err:
            raise BuildError(str(err)) from None
        files[model], published[model] = path, {"variant": name, "file": str(path), "gate": verdict}
        logger.info(
            f"[{model}] publishing variant {name}: NDCG@10 {verdict['relative_drop']:+.2%} vs fp32 "
            f"(margin {margin:.0%})"
        )
    return files, published


def artifacts(at: Layout, encoder_onnx: Path, ranker_onnx: Path, scan: bool = False) -> dict[str, dict[str, Path]]:
    """Every file of the repository's version folders, by model (``scan``: with the ``item_scan`` model)."""
    feature_files = {f: at.features / f for f in (*steps.TABLE_FILES, LEXICON_FILE)}
    feature_files |= steps.served_query_files(at.query_stats, at.features)
    item_embeddings = {ITEM_EMBEDDINGS_FILE: at.retrieval / ITEM_EMBEDDINGS_FILE}  # in the served dtype
    retrieval_files = {
        **feature_files,
        **item_embeddings,
        **{f: at.retrieval / f for f in (INDEX_FILE, SETTINGS_FILE, PURCHASES_FILE)},
    }
    scan_files = {c.ITEM_SCAN: {"model.onnx": at.retrieval / SCAN_FILE, **item_embeddings}} if scan else {}
    # a string-id shop's SKUs for TOP_ITEM_KEYS (an integer shop's keys are its ids, written by topk)
    keys = {ITEM_KEYS_FILE: at.features / ITEM_KEYS_FILE} if (at.features / ITEM_KEYS_FILE).exists() else {}
    return scan_files | {
        c.QUERY_TOKENIZER: {TOKENIZER_FILE: at.features / TOKENIZER_FILE},
        c.RETRIEVE_SEARCH: retrieval_files,
        c.RETRIEVE_RECOMMEND: {**retrieval_files, USER_PROFILE_FILE: at.features / USER_PROFILE_FILE},
        c.SEARCH_FEATURES: {
            **feature_files,
            TOKENIZER_FILE: at.features / TOKENIZER_FILE,
            SNAPSHOT_FILE: at.features / SNAPSHOT_FILE,
        },
        c.RECOMMEND_FEATURES: {
            **feature_files,
            **item_embeddings,  # the context similarity
            USER_PROFILE_FILE: at.features / USER_PROFILE_FILE,
        },
        c.TOPK: {**item_embeddings, **keys, **{f: at.features / f for f in steps.CATALOG_FILES}},
        c.TEXT_ENCODER: {"model.onnx": encoder_onnx},
        c.RANKER: {"model.onnx": ranker_onnx},
    }


def build(
    target: str = "cpu",
    profile: str | None = "small",
    out: Path | None = None,
    work: Path | None = None,
    progress: bool = True,
    encoder_variant: str = "fp32",
    ranker_variant: str = "fp32",
    quality_margin: float | None = None,
    gpu_runtime: str = "tensorrt",
    precision: str = "fp16",
    config: str | Path | cfg_mod.ShopConfig | None = None,
    force: tuple[str, ...] = (),
    golden_size: int = 300,
    layout: str = FUSED,
    fused_sizes: FusedSizes | None = None,
) -> dict:
    """Build the repository of a shop (``config``) or of a demo ``profile`` into ``out``; returns the report.

    ``golden_size`` requests (plus edge and error cases) and the build's answers to them are written
    to ``golden.json`` at the repository's root, for ``python -m rollout verify``.
    ``encoder_variant`` / ``ranker_variant`` publish a compressed variant through the quality gate
    (``quality_margin``, relative NDCG@10; default: the config's). ``target="gpu"`` writes the gpu
    repository (default ``build/<name>/gpu_repository``); see ``builders.gpu``. ``layout``: the cpu target's
    ``fused`` (one model per call) or ``ensemble`` (``builders/repository/model_specs.py``); the gpu target
    always has ensembles. ``fused_sizes``: the fused models' instances and threads (default 2 x 1).
    """

    if target not in TARGETS:
        raise BuildError(f"unknown target {target!r}; choose one of {TARGETS}")
    try:
        cfg, work, demo_step = resolve(profile, config, work)
    except cfg_mod.ConfigError as err:
        raise BuildError(str(err)) from None
    out = Path(out or (REPO_ROOT / "model_repository" if target == "cpu" else work / "gpu_repository"))
    driver = Driver(work)
    driver.forget(list(force))
    if demo_step is not None:
        driver.run([demo_step])
    shared = cfg.encoder.path is None and cfg.encoder.fine_tune == "off"  # the bundled MiniLM as it is
    at = Layout(work, BUNDLED_ENCODER_DIR if shared else work / "encoder")
    shop_arg = (
        f"--profile {profile}" if config is None or isinstance(config, cfg_mod.ShopConfig) else f"--config {config}"
    )
    try:
        report = driver.run(plan(cfg, at, f"python -m builders build {shop_arg} --force ranker", progress))
    except (DataError, StepError) as err:
        raise BuildError(str(err)) from None

    for limit in report["data"].get("limits", []):  # what the data cannot carry, said once per build
        logger.info(f"data: {limit}")
    margin = cfg.quality_margin if quality_margin is None else quality_margin
    files, published = publish(
        work,
        {"encoder": encoder_variant, "ranker": ranker_variant},
        margin,
        {"encoder": at.encoder / "model.onnx", "ranker": at.ranker / "model.onnx"},
    )
    embed_dim = report["embeddings"].get("dim") or embedding_dim(files["encoder"])
    scan = cfg.retrieval.uses_scan(target)
    files_by_model = artifacts(at, files["encoder"], files["ranker"], scan)
    if target == "gpu":
        try:
            model_specs, report["gpu"] = build_gpu(
                work,
                at.shop(),
                {c.TEXT_ENCODER: files["encoder"], c.RANKER: files["ranker"]},
                gpu_runtime,
                precision,
                embed_dim=embed_dim,
                scan=scan,
                ranker_kind=report["ranker"].get("kind", "dcn"),
            )
        except ValueError as err:
            raise BuildError(str(err)) from None
        for model, gpu_files in report["gpu"]["files"].items():
            files_by_model[model].update(gpu_files)
    else:
        try:
            model_specs = specs(embed_dim, scan, layout, fused_sizes)
        except ValueError as err:
            raise BuildError(str(err)) from None
    shop = at.shop()
    manifest = {
        "shop": cfg.name,
        "contract_version": CONTRACT_VERSION,
        "ids": shop.id_kinds,
        "embed_dim": embed_dim,
        "item_scan": scan,  # retrieval by the item_scan model (retrieval.engine), not FAISS
        "layout": layout if target == "cpu" else ENSEMBLE,  # fused: one model per call (runtime/fused.py)
        "fused_sizes": dataclasses.asdict(fused_sizes or FusedSizes()),  # their instances and threads
        "title_tokens": cfg.encoder.title_tokens,  # new items pushed online are embedded the way the build did
        "encoder": str(cfg.encoder.path or "bundled all-MiniLM-L6-v2"),
        "items": len(shop.item_ids),
        "users": len(shop.user_ids),
        "data": at.data_fingerprint,
    }
    # Always reassembled and revalidated: it is cheap and the output folder may have been edited.
    driver.run([Step("repository", lambda: steps.repository(out, files_by_model, model_specs, manifest))])
    for line in report["repository"]["checks"]:
        logger.info(f"  {line}")
    report["golden"] = write_golden(out, shop.queries, cfg.name, target, precision, golden_size)
    report.update(
        profile=profile if config is None else None,
        shop=cfg.name,
        target=target,
        published_variants=published,
        manifest=manifest,
        limits=report["data"].get("limits", []),
    )
    (work / "build_report.json").write_text(json.dumps(report, indent=1, default=str))

    logger.info(f"report page: {report_page.write(json.loads(json.dumps(report, default=str)), work)}")
    return report


def write_golden(out: Path, queries, shop: str, target: str, precision: str, size: int) -> dict:
    """The golden request set and the build's answers, written beside the configs (``builders/repository/golden``)."""
    start = time.perf_counter()
    gs = golden.make(out, queries, shop, target, precision if target == "gpu" else None, size=size)
    path = golden.write(gs, out)
    logger.info(f"golden set: {len(gs.requests)} requests and their answers -> {path} ({gs.repository_checksum})")
    return {
        "file": str(path),
        "requests": len(gs.requests),
        "repository_checksum": gs.repository_checksum,
        "seconds": round(time.perf_counter() - start, 2),
    }
