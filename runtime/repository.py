"""A built model repository on disk, as the server, the publisher and the online writer read it.

Its configs parsed with Triton's own schema, the release layout (the ensembles and the composing
models their steps name), the version the ensembles serve, and the atomic file copies a repository
is written with. Nothing here builds a model: ``builders/`` writes repositories, this module reads them.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from runtime.contract import ARM_PARAMETER, PARTS_PARAMETER, SCAN_PARAMETER
from runtime.errors import ShoprankError

CONFIG = "config.pbtxt"


class ServedRepositoryError(ShoprankError, RuntimeError):
    """A repository on disk cannot be read as a release; the message names the folder and the problem."""


@dataclass(frozen=True)
class Layout:
    """The ensembles of a repository, the composing models their steps name (and the models those call
    through BLS), and the *parts*: models a fused step reads the files of (``runtime/fused.py``), released
    with it at the same version but not loaded by the server. ``arms``: while an online test runs
    (``server/experiment.py``), the treatment's copies of the ensembles, naming the other release."""

    ensembles: tuple[str, ...]
    steps: tuple[str, ...]
    parts: tuple[str, ...] = ()
    arms: tuple[str, ...] = ()

    @property
    def served(self) -> tuple[str, ...]:
        """The models the server loads: the ensembles (an online test's arms too) and their steps."""
        return self.ensembles + self.arms + self.steps

    @property
    def released(self) -> tuple[str, ...]:
        """The models with a version folder per release: the steps and the parts."""
        return self.steps + self.parts


def parse_pbtxt(text: str) -> model_config_pb2.ModelConfig:
    """Parse a ``config.pbtxt`` with Triton's schema (comments allowed)."""
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def parts_of(cfg: model_config_pb2.ModelConfig) -> list[str]:
    """The models whose files a fused model reads (its ``shoprank_parts`` parameter); [] for any other model."""
    value = cfg.parameters[PARTS_PARAMETER].string_value if PARTS_PARAMETER in cfg.parameters else ""
    return [p for p in value.split(",") if p]


def scan_target(cfg: model_config_pb2.ModelConfig) -> str:
    """The model a retrieval model's config names as its ``item_scan`` (BLS), or "" (it searches FAISS)."""
    return cfg.parameters[SCAN_PARAMETER].string_value if SCAN_PARAMETER in cfg.parameters else ""


def read_config(model_dir: Path) -> model_config_pb2.ModelConfig:
    path = model_dir / CONFIG
    if not path.exists():
        raise ServedRepositoryError(f"{model_dir.name}: {path} is missing")
    return parse_pbtxt(path.read_text())


def arm_of(cfg: model_config_pb2.ModelConfig) -> str:
    """The public ensemble an online test's treatment arm copies, or "" (any other model)."""
    return cfg.parameters[ARM_PARAMETER].string_value if ARM_PARAMETER in cfg.parameters else ""


def layout(repo: Path) -> Layout:
    ensembles, steps, arms = [], [], []
    for model_dir in sorted(p for p in repo.iterdir() if (p / CONFIG).exists()):
        cfg = read_config(model_dir)
        if cfg.platform == "ensemble" and arm_of(cfg):
            arms.append(model_dir.name)  # its steps are the public ensemble's, at the treatment's release
        elif cfg.platform == "ensemble":
            ensembles.append(model_dir.name)
            steps += [s.model_name for s in cfg.ensemble_scheduling.step]
    if not ensembles:
        raise ServedRepositoryError(f"{repo}: no ensemble found (is it a model repository?)")
    # a model a step calls through BLS (the retrieval models' item_scan) is released with it, at the same
    # version: the step calls the scan of its own version, so rows always index the same item table
    configs = [read_config(repo / m) for m in dict.fromkeys(steps) if (repo / m / CONFIG).exists()]
    called = [scan_target(cfg) for cfg in configs]
    served = list(dict.fromkeys(steps + [m for m in called if m]))
    parts = [p for cfg in configs for p in parts_of(cfg) if p not in served]
    return Layout(tuple(ensembles), tuple(served), tuple(dict.fromkeys(parts)), tuple(arms))


def versions_on_disk(model_dir: Path) -> list[int]:
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def named_versions(repo: Path, lay: Layout) -> set[int]:
    """The versions the ensembles' steps name (one, unless a switch was cut short)."""
    return {s.model_version for e in lay.ensembles for s in read_config(repo / e).ensemble_scheduling.step}


def serving_version(repo: Path, lay: Layout | None = None) -> int:
    """The release the ensembles name; ``-1`` (a fresh build) means the one version every model has."""
    lay = lay or layout(repo)
    named = named_versions(repo, lay)
    if len(named) != 1:
        raise ServedRepositoryError(f"{repo}: the ensembles name different versions {sorted(named)}; fix by hand first")
    version = int(named.pop())
    if version != -1:
        return version
    common = set.intersection(*(set(versions_on_disk(repo / m)) for m in lay.steps))
    if not common:
        raise ServedRepositoryError(f"{repo}: the composing models share no version number")
    return max(common)


def _atomic_copy(src: Path, dst: Path, link_from: Path | None = None) -> None:
    """Copy ``src`` to ``dst`` under a temporary name, then rename. With ``link_from`` (an earlier copy of
    the same source in the same repository), hard-link to it instead: the models then map one inode, and
    the page cache holds one copy of a table that four models and their instances read."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.unlink(missing_ok=True)
    if link_from is not None:
        try:
            os.link(link_from, tmp)
            os.replace(tmp, dst)
            return
        except OSError:
            pass  # a file system without hard links: copy
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def copy_files(pairs: list[tuple[Path, Path]]) -> None:
    """Copy each ``(src, dst)``; destinations of the same source file (same inode) are hard links of one
    copy. The copies are new inodes: rewriting a source later never changes a served file."""
    first: dict[tuple[int, int], Path] = {}
    for src, dst in pairs:
        st = os.stat(src)
        key = (st.st_dev, st.st_ino)
        _atomic_copy(src, dst, first.get(key))
        first.setdefault(key, dst)
