"""Publish a new release of the models into a running server's repository, and roll back, under load.

A *release* is one version number shared by every composing model (``search_features``, ``text_encoder``,
``ranker``, ``topk``, ...): ``publish`` copies a new build's models into version ``N+1`` of each. The
ensembles name that number in every step (``model_version: N``, never ``-1``), so a request runs all
its steps at the version its ensemble named when the request arrived: never half old, half new.

The switch, with the server in explicit model control (``--model-control-mode=explicit``):

1. the new version's files are written next to the old ones (staged, then renamed into place);
2. each composing model is loaded with both versions (``version_policy { specific [N, N+1] }``): the old
   version keeps serving while the new one loads; where one fails to load (a fused model's warm-up request
   failed, say), the publish is withdrawn: every model back to ``N`` alone, ``N+1``'s files removed;
3. each ensemble is reloaded naming ``N+1``: new requests use the new release; requests already in
   the old ensemble finish on version ``N``, which is still loaded;
4. after ``drain_s`` the composing models are reloaded with ``N+1`` alone; ``N`` stays on disk for
   ``rollback``, older versions are deleted (``keep``).

In the cpu target's fused layout (``runtime/fused.py``) each ensemble has one step, a fused model that reads
the files of the composing models (its *parts*) at its own version: the parts' files are copied as version
``N+1`` with it and deleted with it, but never loaded (the server does not serve them).

``rollback`` is the same switch back to the previous version on disk. A model update changes weights
and tables, not the interface: a new build whose configs differ from the live ones (other than the
versions) is refused, naming the model; that is a new deployment (a restart, or ``helm upgrade``).

    python -m server.publish status   --repo model_repository --url 127.0.0.1:8001
    python -m server.publish publish  --repo model_repository --url 127.0.0.1:8001 --from build/new_repository
    python -m server.publish rollback --repo model_repository --url 127.0.0.1:8001

Online tests (two releases side by side, the users split by the SDK): ``python -m server.experiment``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from runtime import cli_logging
from runtime.contract import GOLDEN_FILE, RELEASE_GOLDEN
from runtime.errors import ShoprankError
from runtime.repository import (
    CONFIG,
    Layout,
    ServedRepositoryError,
    copy_files,
    layout,
    named_versions,
    read_config,
    serving_version,
    versions_on_disk,
)

logger = logging.getLogger(__name__)


class PublishError(ShoprankError, RuntimeError):
    """A release cannot be published or rolled back; the message names the model and the reason."""


def write_config(model_dir: Path, cfg: model_config_pb2.ModelConfig) -> None:
    """Replace ``config.pbtxt`` atomically, keeping its comment header (the why-notes)."""
    path = model_dir / CONFIG
    header = [line for line in path.read_text().splitlines() if line.startswith("#")] if path.exists() else []
    tmp = path.with_name(f".{CONFIG}.tmp")
    tmp.write_text("\n".join(header) + ("\n" if header else "") + text_format.MessageToString(cfg))
    os.replace(tmp, path)


def _interface(cfg: model_config_pb2.ModelConfig) -> model_config_pb2.ModelConfig:
    """The config without what a release changes (the version policy, the steps' versions)."""
    out = model_config_pb2.ModelConfig()
    out.CopyFrom(cfg)
    out.ClearField("version_policy")
    for step in out.ensemble_scheduling.step:
        step.model_version = -1
    return out


def check_compatible(live: Path, new: Path) -> Layout:
    """The new build serves the same models with the same configs (versions aside), or PublishError."""
    lay = layout(live)
    models = set(lay.ensembles) | set(lay.released)
    new_models = {p.name for p in new.iterdir() if (p / CONFIG).exists()}
    if new_models != models:
        raise PublishError(
            f"{new}: models {sorted(new_models)} differ from the live {sorted(models)}: "
            "a changed set of models is a new deployment (restart the server, or helm upgrade)"
        )
    for model in sorted(models):
        old_cfg, new_cfg = _interface(read_config(live / model)), _interface(read_config(new / model))
        if old_cfg != new_cfg:
            old_lines = set(text_format.MessageToString(old_cfg).splitlines())
            changed = [ln.strip() for ln in text_format.MessageToString(new_cfg).splitlines() if ln not in old_lines]
            raise PublishError(
                f"{model}: config differs from the live one ({'; '.join(changed[:3]) or 'fields removed'}): "
                "a model update changes weights and tables, not the config; deploy it as a new release "
                "(restart the server, or helm upgrade)"
            )
        if model in lay.released and not versions_on_disk(new / model):
            raise PublishError(f"{model}: {new / model} has no version folder")
    return lay


def refuse_during_test(lay: Layout, action: str) -> None:
    """An online test serves two releases (``server/experiment.py``): stop it before moving either."""
    if lay.arms:
        raise PublishError(
            f"an online test is running ({', '.join(lay.arms)} serve its treatment): "
            f"stop it (python -m server.experiment stop --keep control|treatment) before {action}"
        )


class Publisher:
    """Switches a running server (``client``: a ``tritonclient.grpc.InferenceServerClient``) between
    releases of the repository ``repo`` it serves in explicit model control."""

    def __init__(
        self,
        repo: Path,
        client: Any,
        drain_s: float = 2.0,
        keep: int = 2,
    ):
        self.repo = Path(repo)
        self.client = client
        self.drain_s = drain_s
        self.keep = max(2, keep)

    def status(self) -> dict[str, Any]:
        lay = layout(self.repo)
        return {
            "serving": serving_version(self.repo, lay),
            "on_disk": {m: versions_on_disk(self.repo / m) for m in lay.released},
        }

    def publish(self, new_repo: Path) -> int:
        """Copy ``new_repo`` (a build: version 1 of each model) in as the next release and switch to it."""
        lay = layout(self.repo)
        refuse_during_test(lay, "publish")
        current = serving_version(self.repo, lay)
        target = self.stage(new_repo)
        try:
            self.switch(target, lay, current)
        except PublishError as err:
            if named_versions(self.repo, lay) != {current}:
                raise  # an ensemble switched: the new release serves (some of it), and rollback is the way back
            self.withdraw(target, lay, current)
            raise PublishError(f"{err}; release {current} still serves, release {target} was withdrawn") from None
        return target

    def withdraw(self, target: int, lay: Layout, current: int, remove: bool = True) -> None:
        """Undo a switch that failed before any ensemble named ``target`` (a model of it failed to load, e.g.
        its warm-up request): each step back to ``current`` alone; with ``remove`` (``target`` was staged for
        this), its files and golden set removed."""
        for model in lay.steps:
            try:
                self.set_versions(model, [current])
            except PublishError as err:  # keep undoing the rest; the server's own state names what is left
                logger.warning(f"withdrawing release {target}: {err}")
        if remove:
            for model in lay.released:
                shutil.rmtree(self.repo / model / str(target), ignore_errors=True)
            self.golden(target).unlink(missing_ok=True)
        logger.info(f"release {target} withdrawn: release {current} serves alone")

    def stage(self, new_repo: Path) -> int:
        """Copy ``new_repo`` in as the next release, on disk only (the serving release stays): its number."""
        new_repo = Path(new_repo)
        lay = check_compatible(self.repo, new_repo)
        current = serving_version(self.repo, lay)
        target = max(max(versions_on_disk(self.repo / m)) for m in lay.released) + 1
        # Pinned before the new files appear: an ensemble naming -1, or a model with the default policy
        # (latest), would otherwise move to the new version as soon as the server looks at the folder.
        self._name(lay, current)
        for model in lay.steps:
            self.set_versions(model, [current])
        staging = self.repo.parent / f".{self.repo.name}.staging"
        shutil.rmtree(staging, ignore_errors=True)
        pairs = []  # files first, configs last: nothing loads a half-copied version
        for model in lay.released:  # a fused layout's parts too: its models read their files at their version
            src = new_repo / model / str(max(versions_on_disk(new_repo / model)))
            (staging / model).mkdir(parents=True)  # an ensemble's version folder is empty
            pairs += [(f, staging / model / f.relative_to(src)) for f in sorted(src.rglob("*")) if f.is_file()]
        copy_files(pairs)  # files the build hard-linked between models stay one inode (one page-cache copy)
        for model in lay.released:
            os.replace(staging / model, self.repo / model / str(target))
        shutil.rmtree(staging, ignore_errors=True)
        if (new_repo / GOLDEN_FILE).exists():  # the release's golden set, swapped in by switch()
            shutil.copyfile(new_repo / GOLDEN_FILE, self.golden(target))
        logger.info(f"release {target}: files of {len(lay.released)} models in place")
        return target

    def rollback(self) -> int:
        """Switch back to the newest version on disk older than the one serving."""
        lay = layout(self.repo)
        refuse_during_test(lay, "rollback")
        current = serving_version(self.repo, lay)
        older = set.intersection(
            *(set(v for v in versions_on_disk(self.repo / m) if v < current) for m in lay.released)
        )
        if not older:
            raise PublishError(f"{self.repo}: release {current} is serving and no older release is on disk")
        target = max(older)
        self.switch(target, lay, current)
        return target

    def switch(self, target: int, lay: Layout, current: int) -> None:
        if target == current:
            logger.info(f"release {target} is already serving")
            return
        started = time.monotonic()
        self._name(lay, current)  # (publish pinned it already; a repository edited by hand may not be)
        for model in lay.steps:  # both versions loaded: the old one serves while the new one loads
            self.set_versions(model, sorted({current, target}))
        self._name(lay, target)  # new requests: the new release, every step
        self._swap_golden(current, target)
        logger.info(f"release {target} serving (switched in {time.monotonic() - started:.1f} s); draining {current}")
        time.sleep(self.drain_s)  # requests already inside the old ensemble finish on the old versions
        for model in lay.steps:
            self.set_versions(model, [target])
        for model in lay.released:  # on disk: the serving release and the ones just before it
            for old in versions_on_disk(self.repo / model)[: -self.keep]:
                if old not in (target, current):
                    shutil.rmtree(self.repo / model / str(old))
                    self.golden(old).unlink(missing_ok=True)
        logger.info(f"release {target} alone loaded; release {current} kept on disk for rollback")

    def golden(self, version: int) -> Path:
        """Where a release's golden set waits while another release serves (hidden: not checksummed)."""
        return self.repo / RELEASE_GOLDEN.format(version)

    def _swap_golden(self, current: int, target: int) -> None:
        """``golden.json`` at the root always belongs to the serving release (``python -m rollout verify``)."""
        live = self.repo / GOLDEN_FILE
        if live.exists():
            os.replace(live, self.golden(current))
        if self.golden(target).exists():
            os.replace(self.golden(target), live)

    def _name(self, lay: Layout, version: int) -> None:
        """Every step of every ensemble names ``version``; an ensemble whose steps already do is left alone."""
        for ensemble in lay.ensembles:
            cfg = read_config(self.repo / ensemble)
            if all(step.model_version == version for step in cfg.ensemble_scheduling.step):
                continue
            for step in cfg.ensemble_scheduling.step:
                step.model_version = version
            write_config(self.repo / ensemble, cfg)
            self.load(ensemble)

    def set_versions(self, model: str, versions: list[int]) -> None:
        """Load ``model`` with exactly ``versions``; nothing to do where it already names them."""
        cfg = read_config(self.repo / model)
        if list(cfg.version_policy.specific.versions) == list(versions):
            return
        cfg.version_policy.specific.versions[:] = versions
        write_config(self.repo / model, cfg)
        self.load(model)

    def load(self, model: str) -> None:
        try:
            self.client.load_model(model)
        except Exception as err:  # tritonclient's InferenceServerException: the server's own message
            raise PublishError(f"{model}: the server refused to load it: {str(err).strip()}") from None

    def unload(self, model: str) -> None:
        try:
            self.client.unload_model(model)
        except Exception as err:
            raise PublishError(f"{model}: the server refused to unload it: {str(err).strip()}") from None


def main(argv: list[str] | None = None) -> int:
    cli_logging.configure()
    parser = argparse.ArgumentParser(prog="python -m server.publish", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("status", "publish", "rollback"))
    parser.add_argument("--repo", type=Path, default=Path("model_repository"), help="the repository the server serves")
    parser.add_argument("--url", default="127.0.0.1:8001", help="the server's gRPC address")
    parser.add_argument("--from", dest="new", type=Path, help="publish: the new build's repository")
    parser.add_argument("--drain-s", type=float, default=2.0, help="how long the old release stays loaded")
    args = parser.parse_args(argv)
    import tritonclient.grpc as grpcclient

    publisher = Publisher(args.repo, grpcclient.InferenceServerClient(args.url), drain_s=args.drain_s)
    try:
        if args.command == "status":
            print(publisher.status())
        elif args.command == "publish":
            if args.new is None:
                print("error: publish needs --from <the new build's repository>", file=sys.stderr)
                return 2
            print(f"release {publisher.publish(args.new)} published")
        else:
            print(f"rolled back to release {publisher.rollback()}")
    except (PublishError, ServedRepositoryError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
