"""Assemble a Triton model repository and check it before declaring success.

``assemble`` writes each model's files first and its ``config.pbtxt`` last (a polling server never
sees a config without its model), its warm-up request's files (``warmup/``) among the files. Every file is
written under a temporary name and renamed.
``validate`` checks, for every model, that the config on disk parses with Triton's schema and equals
the spec, and that the model's real inputs and outputs (names, dtypes, shapes) match the config:
ONNX models through an ONNX Runtime session, Python models by running their logic on a sample request,
ensembles by following every step's tensor mapping.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from builders.repository.model_specs import ENSEMBLE, FusedSizes, specs
from builders.repository.triton_config import ModelSpec
from runtime import contract as c
from runtime.errors import ShoprankError
from runtime.features import FeatureStore
from runtime.fused import KINDS, PARTS_PARAMETER, FusedSettings, Serving, answer_warm_request, fused_name
from runtime.ort_runner import make_session
from runtime.repository import copy_files, parse_pbtxt, scan_target
from runtime.retrieval import Retriever
from runtime.scan import Scan, ort_scan
from runtime.scoring import TopK
from runtime.text import QueryTokens

SOURCE_REPO = Path(__file__).resolve().parents[2] / "model_repository"  # builders/repository/ -> the root
VERSION = "1"
MANIFEST_FILE = "manifest.json"  # which shop, ids and encoder dimension a built repository serves


class RepositoryError(ShoprankError, RuntimeError):
    """The built repository does not match its configs; the message names the model and the tensor."""


def _atomic_write(dst: Path, text: str | bytes) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp")
    if isinstance(text, bytes):
        tmp.write_bytes(text)
    else:
        tmp.write_text(text)
    os.replace(tmp, dst)


def _write_warmup(model_dir: Path, spec: ModelSpec) -> list[Path]:
    """The files of the spec's warm-up request (Triton reads them at load: before the config)."""
    written = []
    for rel, data in spec.warmup_files().items():
        path = model_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, data)
        written.append(path)
    return written


def write_configs(repo: Path = SOURCE_REPO) -> list[Path]:
    """(Re)write every committed ``config.pbtxt`` from the specs (``make configs``), with the warm-up files."""
    written = []
    for spec in specs():
        path = repo / spec.name / "config.pbtxt"
        path.parent.mkdir(parents=True, exist_ok=True)
        written += _write_warmup(path.parent, spec)
        _atomic_write(path, spec.render())
        written.append(path)
    return written


def assemble(
    out: Path,
    artifacts: dict[str, dict[str, Path]],
    source: Path = SOURCE_REPO,
    model_specs: list[ModelSpec] | None = None,
) -> Path:
    """Build the repository in ``out``: code from ``source``, ``artifacts[model][filename]`` into the
    version folder, then the config. ``out`` may be ``source`` itself (an in-place build).
    ``model_specs`` defaults to the CPU target's (``builders.gpu.specs`` has the gpu target's)."""
    out = Path(out)
    all_specs = model_specs or specs()
    pairs = []
    for spec in all_specs:
        version_dir = out / spec.name / VERSION
        version_dir.mkdir(parents=True, exist_ok=True)
        code = source / spec.name / VERSION / "model.py"
        if code.exists() and code.resolve() != (version_dir / "model.py").resolve():
            pairs.append((code, version_dir / "model.py"))
        pairs += [(Path(src), version_dir / filename) for filename, src in artifacts.get(spec.name, {}).items()]
    copy_files(pairs)  # every model's files first (a file shared by models is one inode) ...
    for spec in all_specs:
        _write_warmup(out / spec.name, spec)
    for spec in all_specs:  # ... then the configs
        _atomic_write(out / spec.name / "config.pbtxt", spec.render())
    return out


def _dims_match(expected: list[int], actual: list) -> bool:
    """-1 in the config or a symbolic/None dim in the model matches anything."""
    if len(expected) != len(actual):
        return False
    return all(e == -1 or a is None or isinstance(a, str) or e == a for e, a in zip(expected, actual, strict=True))


def _full_dims(spec: ModelSpec, dims: tuple[int, ...]) -> list[int]:
    return ([-1] if spec.max_batch_size > 0 else []) + list(dims)


_ORT_TYPES = {
    "tensor(int64)": "int64",
    "tensor(float)": "float32",
    "tensor(int32)": "int32",
    "tensor(float16)": "float16",
    "tensor(string)": "bytes",
    "tensor(bool)": "bool",
}


def _check_onnx(spec: ModelSpec, path: Path) -> None:

    session = make_session(str(path), graph_opt="disable")
    for kind, tensors, actual in (
        ("input", spec.inputs, session.get_inputs()),
        ("output", spec.outputs, session.get_outputs()),
    ):
        got = {t.name: t for t in actual}
        if set(got) != {t.name for t in tensors}:
            raise RepositoryError(
                f"{spec.name}: {kind}s in the model {sorted(got)} != config {sorted(t.name for t in tensors)}"
            )
        for t in tensors:
            g = got[t.name]
            if _ORT_TYPES.get(g.type) != t.dtype:
                raise RepositoryError(f"{spec.name}: {kind} {t.name} is {g.type} in the model, {t.dtype} in the config")
            if not _dims_match(_full_dims(spec, t.dims), list(g.shape)):
                raise RepositoryError(
                    f"{spec.name}: {kind} {t.name} has shape {g.shape} in the model, "
                    f"{_full_dims(spec, t.dims)} in the config"
                )


def _check_arrays(spec: ModelSpec, outputs: dict[str, np.ndarray]) -> None:
    if set(outputs) != {t.name for t in spec.outputs}:
        raise RepositoryError(
            f"{spec.name}: logic returns {sorted(outputs)}, config has {sorted(t.name for t in spec.outputs)}"
        )
    for t in spec.outputs:
        arr = outputs[t.name]
        dtype = "bytes" if arr.dtype == object else str(arr.dtype)
        if dtype != t.dtype:
            raise RepositoryError(f"{spec.name}: output {t.name} is {dtype}, config says {t.dtype}")
        if not _dims_match(_full_dims(spec, t.dims), list(arr.shape)):
            raise RepositoryError(
                f"{spec.name}: output {t.name} has shape {list(arr.shape)}, config {_full_dims(spec, t.dims)}"
            )


def _check_python_models(repo: Path, by_name: dict[str, ModelSpec]) -> None:

    search_store = FeatureStore.load(repo / c.SEARCH_FEATURES / VERSION)
    item_ids = search_store.tables.item_ids_sorted[:5].copy()
    user = search_store.tables.user_ids_sorted[:1].copy()
    if user.size == 0:  # a shop whose visitors are all anonymous: an unknown user
        user = np.zeros(1, np.int64)
    feats = search_store.search(user, np.array([b"running shoes"], object), item_ids)
    _check_arrays(by_name[c.SEARCH_FEATURES], feats)
    rec = FeatureStore.load(repo / c.RECOMMEND_FEATURES / VERSION, with_tokenizer=False, with_profiles=True)
    rec_feats = rec.recommend(user, item_ids)
    _check_arrays(by_name[c.RECOMMEND_FEATURES], rec_feats)
    n = len(item_ids)
    top = TopK.load(repo / c.TOPK / VERSION).rank(
        rec_feats[c.CONTEXT_EMBEDDING],
        np.zeros((n, 1), np.float32),
        np.zeros((n, 1), np.float32),
        rec_feats[c.ITEM_ROWS],
        item_ids,
        np.array([3], np.int32),
    )
    _check_arrays(by_name[c.TOPK], top)
    if c.RETRIEVE_SEARCH in by_name:
        _check_retrieval(repo, by_name, user)
    _check_fused(repo, by_name, user, item_ids)


def _check_fused(repo: Path, by_name: dict[str, ModelSpec], user: np.ndarray, item_ids: np.ndarray) -> None:
    """Each fused model of the repository (the cpu target's fused layout) runs a sample request on its parts'
    files and answers what its config says."""

    none, k = np.zeros(0, np.int64), np.array([3], np.int32)
    query = np.array([b"running shoes"], object)
    samples: dict[str, list[Any]] = {  # each call's inputs, in its order
        c.SEARCH_ENSEMBLE: [user, query, item_ids, k],
        c.RECOMMEND_ENSEMBLE: [user, item_ids, k],
        c.SEARCH_CATALOG: [user, query, none, k],
        c.RECOMMEND_CATALOG: [user, none, none, k],
    }
    for call, request in samples.items():
        spec = by_name.get(fused_name(call))
        if spec is None:
            continue
        parts = spec.parameters[PARTS_PARAMETER].split(",")
        settings = FusedSettings({p: repo / p / VERSION for p in parts})
        fused = KINDS[call].load(settings, Serving(scan=retrieval_scan(repo, spec.name)))
        _check_arrays(spec, fused(*request))
        if spec.warmup:  # the model answers it at load (and Triton sends it): a failure stops the model loading
            try:
                _check_arrays(spec, answer_warm_request(fused, spec.name))
            except RuntimeError as err:
                raise RepositoryError(str(err)) from err


def retrieval_scan(repo: Path, model: str) -> Scan | None:
    """The scan a retrieval model of ``repo`` calls (its config's ``item_scan`` parameter), run in-process by
    ONNX Runtime on the same model file; None when the model searches the FAISS index."""

    name = scan_target(parse_pbtxt((repo / model / "config.pbtxt").read_text()))
    return ort_scan(repo / name / VERSION / "model.onnx") if name else None


def _check_retrieval(repo: Path, by_name: dict[str, ModelSpec], user: np.ndarray) -> None:

    query = np.array([b"running shoes"], object)
    tokens = QueryTokens.load(repo / c.QUERY_TOKENIZER / VERSION).tokens(query)
    _check_arrays(by_name[c.QUERY_TOKENIZER], tokens)
    search = Retriever.load(
        repo / c.RETRIEVE_SEARCH / VERSION, recommend=False, scan=retrieval_scan(repo, c.RETRIEVE_SEARCH)
    )
    vector = np.asarray(search.item_embeddings[:1], np.float32)  # any unit vector of the right size
    none = np.zeros(0, np.int64)
    _check_arrays(by_name[c.RETRIEVE_SEARCH], search.search(user, query, vector, none))
    rec = Retriever.load(
        repo / c.RETRIEVE_RECOMMEND / VERSION, recommend=True, scan=retrieval_scan(repo, c.RETRIEVE_RECOMMEND)
    )
    _check_arrays(by_name[c.RETRIEVE_RECOMMEND], rec.recommend(user, none, none))


def _check_ensemble(spec: ModelSpec, by_name: dict[str, ModelSpec]) -> None:
    """Every tensor a step reads is produced earlier (or is an ensemble input), with the same dtype."""
    produced = {t.name: t.dtype for t in spec.inputs}
    for step in spec.steps:
        model = by_name[step.model]
        model_inputs = {t.name: t.dtype for t in model.inputs}
        if set(step.inputs) != set(model_inputs):
            raise RepositoryError(
                f"{spec.name}: step {step.model} maps {sorted(step.inputs)}, the model takes {sorted(model_inputs)}"
            )
        for model_name, tensor in step.inputs.items():
            if tensor not in produced:
                raise RepositoryError(f"{spec.name}: step {step.model} reads {tensor}, which nothing produced before")
            if produced[tensor] != model_inputs[model_name]:
                raise RepositoryError(
                    f"{spec.name}: {tensor} is {produced[tensor]} but {step.model}.{model_name} "
                    f"wants {model_inputs[model_name]}"
                )
        model_outputs = {t.name: t.dtype for t in model.outputs}
        for model_name, tensor in step.outputs.items():
            produced[tensor] = model_outputs[model_name]
    for t in spec.outputs:
        if produced.get(t.name) != t.dtype:
            raise RepositoryError(f"{spec.name}: output {t.name} ({t.dtype}) is not produced by any step")


def _check_engines(spec: ModelSpec, version_dir: Path) -> str:
    """A tensorrt_plan model: its ONNX source matches the config; say which engines are present."""
    _check_onnx(spec, version_dir / "model.onnx")
    present = sorted(cc for cc, f in spec.cc_model_filenames.items() if (version_dir / f).exists())
    missing = sorted(set(spec.cc_model_filenames) - set(present))
    return (
        f"engines present for compute capability {present or 'none'}; to be built on the GPU node for "
        f"{missing or 'none'} (python -m builders.gpu.engine, or the chart's engine build)"
    )


def built_specs(repo: Path) -> list[ModelSpec]:
    """The CPU specs a built repository was made with: its manifest names the encoder's dimension, whether
    retrieval runs the ``item_scan`` model and the layout."""
    import json

    manifest = repo / c.SEARCH_FEATURES / VERSION / MANIFEST_FILE
    if manifest.exists():
        built = json.loads(manifest.read_text())  # a build before layouts were a choice had ensembles
        sizes = FusedSizes(**built["fused_sizes"]) if "fused_sizes" in built else None
        return specs(int(built["embed_dim"]), bool(built.get("item_scan", False)), built.get("layout", ENSEMBLE), sizes)
    return specs()


def validate(repo: Path, model_specs: list[ModelSpec] | None = None) -> list[str]:
    """Check the whole repository; returns one line per model checked, raises RepositoryError."""
    repo = Path(repo)
    model_specs = model_specs or built_specs(repo)
    by_name = {s.name: s for s in model_specs}
    lines = []
    for spec in model_specs:
        cfg_path = repo / spec.name / "config.pbtxt"
        if not cfg_path.exists():
            raise RepositoryError(f"{spec.name}: {cfg_path} is missing")
        on_disk = parse_pbtxt(cfg_path.read_text())
        if on_disk != spec.to_proto():
            raise RepositoryError(f"{spec.name}: {cfg_path} differs from its spec: run `make configs`")
        for rel, data in spec.warmup_files().items():
            path = repo / spec.name / rel
            if not path.is_file() or path.read_bytes() != data:
                raise RepositoryError(f"{spec.name}: {path}, a file of its warm-up request, is missing or differs")
        if spec.backend == "onnxruntime":
            _check_onnx(spec, repo / spec.name / VERSION / "model.onnx")
        elif spec.platform == "ensemble":
            _check_ensemble(spec, by_name)
        elif spec.platform == "tensorrt_plan":
            lines.append(f"{spec.name}: {_check_engines(spec, repo / spec.name / VERSION)}")
        lines.append(f"{spec.name}: config ok ({spec.backend or spec.platform})")
    _check_python_models(repo, by_name)
    lines.append("python models: outputs match their configs on a sample request")
    return lines
