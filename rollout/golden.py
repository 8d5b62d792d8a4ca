"""The golden request set: requests of every kind the stack serves, with the build's own answers.

Re-ranking requests (``search``, ``recommend``: the caller's candidates) and catalogue requests
(``search_catalog``, ``recommend_catalog``: the server retrieves; their record holds what the build
retrieved, so a pod's item the build did not retrieve is named as such).

The build writes ``golden.json`` at the root of the model repository it built
(``builders/repository/golden.py``; Triton loads only folders, so the file travels with the repository
and is never served). This module is the file's format and its reader: ``python -m rollout verify``
sends each request to every pod and compares the answers with the ones recorded here. Each request
records the expected top-k *and* the score of every candidate, so a comparison can tell a real
difference from two near-tied items changing places.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from runtime import contract as c
from runtime.contract import GOLDEN_FILE, RELEASE_GOLDEN
from runtime.errors import ShoprankError
from runtime.repository import ServedRepositoryError, layout, read_config

# 2: catalogue requests (search_catalog, recommend_catalog); 3: listing requests (filters, groups, pages, sort,
# facets, understood words: ``options``) and their answers beside the items. Older files are still read.
FORMAT = 3
READS = (1, 2, 3)
CATALOGUE = (c.SEARCH_CATALOG, c.RECOMMEND_CATALOG)


@dataclass(frozen=True)
class GoldenRequest:
    """One request and the build's answer: the top-k, or the error the server must give."""

    id: int
    kind: str  # e.g. "search/known-user", "recommend/cold-user", "error/duplicate-candidates"
    model: str  # the ensemble: search or recommend
    user_id: int
    item_ids: list[int]
    k: int
    query: str | None = None
    top_ids: list[int] = field(default_factory=list)
    top_scores: list[float] = field(default_factory=list)
    # score of every candidate in the full ranking (None: not ranked, e.g. filtered as sold out)
    candidate_scores: list[float | None] = field(default_factory=list)
    error: str | None = None  # the served error message must contain this
    # catalogue requests (no candidate list): what the caller excludes and is viewing, and the candidates
    # the build retrieved, best first (``candidate_scores`` are theirs)
    exclude_ids: list[int] = field(default_factory=list)
    context_ids: list[int] = field(default_factory=list)
    retrieved_ids: list[int] = field(default_factory=list)
    # listing requests: the ``shoprank_options`` sent (JSON text), and beside the items the build's variant
    # groups, how many of each group's variants matched, and its RESULT_INFO without ``release`` (which
    # names the serving release, not the build)
    options: str | None = None
    groups: list[str] = field(default_factory=list)
    group_matches: list[int] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    @property
    def catalogue(self) -> bool:
        return self.model in CATALOGUE

    def ranked_ids(self) -> list[int]:
        """The items ``candidate_scores`` score: the request's candidates, or the ones the build retrieved."""
        return self.retrieved_ids if self.catalogue else self.item_ids

    def describe(self) -> str:
        what = f"#{self.id} {self.kind}: {self.model} user {self.user_id}"
        if self.query is not None:
            q = self.query if len(self.query) <= 40 else self.query[:37] + "..."
            what += f", query {q!r}"
        if self.options is not None:
            what += f", options {self.options}"
        if self.catalogue:
            what += f", {len(self.exclude_ids)} excluded" + (
                f", context {self.context_ids}" if self.context_ids else ""
            )
            return what + f", {len(self.retrieved_ids)} retrieved by the build, k={self.k}"
        return what + f", {len(self.item_ids)} candidates, k={self.k}"


@dataclass(frozen=True)
class GoldenSet:
    shop: str
    target: str
    repository_checksum: str
    tolerance: float
    tolerance_note: str
    requests: list[GoldenRequest]

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "shop": self.shop,
            "target": self.target,
            "repository_checksum": self.repository_checksum,
            "tolerance": self.tolerance,
            "tolerance_note": self.tolerance_note,
            "requests": [r.__dict__ for r in self.requests],
        }


class GoldenError(ShoprankError, ValueError):
    """The golden set cannot be read; the message names the file and the problem."""


def repository_checksum(repo: Path) -> str:
    """SHA-256 over every file of a built repository (path and content), the golden set, hidden files and
    ``__pycache__`` excepted.

    The chart's ``modelRepository.checksum`` takes this value; pods carry it as an annotation.
    """
    repo = Path(repo)
    digest = hashlib.sha256()
    for path in sorted(p for p in repo.rglob("*") if p.is_file()):
        rel = path.relative_to(repo).as_posix()
        parts = path.relative_to(repo).parts
        if rel == GOLDEN_FILE or any(part.startswith(".") or part == "__pycache__" for part in parts):
            continue  # staging files, and the bytecode a server writes next to model.py
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        digest.update(f"{rel}\0{h.hexdigest()}\n".encode())
    return "sha256:" + digest.hexdigest()


def of_treatment(path: Path) -> Path:
    """The golden set of an online test's treatment. ``path``: the live repository, whose treatment ensembles
    (``<call>__treatment``) name the treatment's release, its golden set waiting there as
    ``.golden.<release>.json`` (``server/publish.py``); a build's folder or a file is taken as it is (its own
    ``golden.json``)."""
    path = Path(path)
    if not path.is_dir():
        return path
    try:
        lay = layout(path)
        releases = {s.model_version for arm in lay.arms for s in read_config(path / arm).ensemble_scheduling.step}
    except (ServedRepositoryError, OSError):
        return path  # not a served repository: a folder holding a golden.json
    if not releases:
        return path  # no online test here: a build's folder
    if len(releases) > 1:
        raise GoldenError(f"{path}: the treatment's ensembles name releases {sorted(releases)}; name the golden file")
    return path / RELEASE_GOLDEN.format(releases.pop())


def load(path: Path) -> GoldenSet:
    """Read a golden set from its file, or from the repository folder that holds it."""
    path = Path(path)
    if path.is_dir():
        path = path / GOLDEN_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise GoldenError(f"{path}: no golden set here; the build writes it (python -m builders build)") from None
    except json.JSONDecodeError as err:
        raise GoldenError(f"{path}: not JSON ({err})") from None
    if raw.get("format") not in READS:
        raise GoldenError(f"{path}: format {raw.get('format')!r}, this tool reads formats {list(READS)}")
    try:
        requests = [GoldenRequest(**r) for r in raw["requests"]]
        return GoldenSet(
            raw["shop"],
            raw["target"],
            raw["repository_checksum"],
            float(raw["tolerance"]),
            raw.get("tolerance_note", ""),
            requests,
        )
    except (KeyError, TypeError) as err:
        raise GoldenError(f"{path}: malformed golden set ({err})") from None
