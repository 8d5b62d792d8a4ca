"""Online tests: two releases served side by side, each user always answered by the same one.

An online test (an A/B test) compares the serving release (the *control*) with another release on disk
(the *treatment*: a candidate build staged with ``--from``, or an older release) on real shoppers. While it
runs, the server serves both:

* every composing model has both versions loaded (``version_policy { specific [control, treatment] }``);
* each public ensemble (``search``, ``recommend``, ...) names the control's version as always, and has a
  copy, ``<ensemble>__treatment``, whose steps name the treatment's (config parameter ``shoprank_arm_of``);
* each public ensemble's config parameter ``shoprank_experiment`` holds the test as JSON (``Experiment``):
  its name, the treatment's ensemble and release, and the share of users it gets.

**The SDK splits the users** (``shoprank_client.experiment``): it reads the test from the public ensemble's
config (every ``experiment_refresh_s``), and sends a user to the treatment's ensemble when the hash of the
test's name and the user's id falls below the share. A user keeps their arm for the whole test, on every
client and every pod, with no state anywhere; another test reshuffles them. **Every response says which
release answered** (``RESULT_INFO``'s ``release``, ``RankingResult.release``): the shop logs it with its
events, and ``python -m rollout compare --arm-column release`` compares the arms.

Why the SDK splits, and not a router model on the server: a router is one more model on every request of
every call, and on the cpu target a Python-backend hop costs about a millisecond on a 3 ms search
(docs/benchmarks.md: the fused layout's one-step ensemble alone costs 0.1-0.9 ms); the SDK's split costs a
hash per call and one config read per ``experiment_refresh_s``, and it works unchanged on both layouts and
both targets. The price: a caller that does not use the SDK is always answered by the control (its
responses still say so).

**A test can start held** (``start --hold``): the treatment's ensembles are loaded, each holding the test in
its own config, and no user is sent to them until ``open`` copies the test into the public ensembles. In
between, ``python -m rollout verify --golden <repo> --arm treatment`` checks the treatment against its own
build's golden set on the live server; ``make ab-start`` runs the three in turn, and ends a held test whose
treatment fails (``stop --keep control``), so no shopper meets a candidate that does not answer as built.

Stopping keeps one release (``--keep control`` or ``treatment``): the test leaves the public ensembles'
configs first; the treatment's ensembles stay loaded ``arm_drain_s`` more (an SDK still routing to them
until its next config read is answered), then are unloaded and deleted. Keeping the treatment is the usual
zero-failure switch (``server/publish.py``). Publish and rollback are refused while a test runs.

    python -m server.experiment start  --repo model_repository --from build/candidate --share 0.1 [--hold]
    python -m server.experiment open   --repo model_repository          # a held test: the SDKs split
    python -m server.experiment status --repo model_repository
    python -m server.experiment stop   --repo model_repository --keep treatment
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tritonclient.grpc import model_config_pb2

from runtime import cli_logging
from runtime.contract import ARM_PARAMETER, ARM_SUFFIX, EXPERIMENT_PARAMETER
from runtime.repository import Layout, ServedRepositoryError, layout, read_config, serving_version, versions_on_disk
from server.publish import Publisher, PublishError, refuse_during_test, write_config

logger = logging.getLogger(__name__)

ARM_DRAIN_S = 15.0  # the SDK reads a test every 10 s (ClientOptions.experiment_refresh_s), and then some


@dataclass(frozen=True)
class Experiment:
    """A running online test, as the public ensemble ``ensemble``'s config holds it for the SDK."""

    name: str  # hashed with the user's id: another name is another split
    share: float  # of users, to the treatment
    control: int  # the releases
    treatment: int
    arm: str  # the treatment's ensemble for this public ensemble

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Experiment:
        return cls(**json.loads(text))


def arm_name(ensemble: str) -> str:
    return f"{ensemble}{ARM_SUFFIX}"


def running(repo: Path, lay: Layout | None = None) -> Experiment | None:
    """The test the repository's public ensembles hold, or None."""
    lay = lay or layout(repo)
    for ensemble in lay.ensembles:
        cfg = read_config(repo / ensemble)
        if EXPERIMENT_PARAMETER in cfg.parameters:
            return Experiment.from_json(cfg.parameters[EXPERIMENT_PARAMETER].string_value)
    return None


def held(repo: Path, lay: Layout | None = None) -> Experiment | None:
    """A test started with ``hold``: its treatment's ensembles loaded and holding it, the public ensembles not
    (no user is sent to the treatment). None when no test is held, or when it splits users already."""
    lay = lay or layout(repo)
    if not lay.arms or running(repo, lay) is not None:
        return None
    first = arm_name(lay.ensembles[0])  # the arm of the ensemble ``running`` reads
    cfg = read_config(repo / (first if first in lay.arms else lay.arms[0]))
    if EXPERIMENT_PARAMETER not in cfg.parameters:
        return None
    return Experiment.from_json(cfg.parameters[EXPERIMENT_PARAMETER].string_value)


def _string_parameter(cfg: model_config_pb2.ModelConfig, key: str, value: str) -> None:
    cfg.parameters[key].string_value = value


class OnlineTests:
    """Starts and stops online tests on the server ``publisher`` switches releases of."""

    def __init__(self, publisher: Publisher, arm_drain_s: float = ARM_DRAIN_S):
        self.publisher = publisher
        self.repo = publisher.repo
        self.arm_drain_s = arm_drain_s

    def status(self) -> dict[str, Any]:
        def shown(test: Experiment | None) -> dict[str, Any] | None:
            return None if test is None else {k: v for k, v in asdict(test).items() if k != "arm"}

        return {"test": shown(running(self.repo)), "held": shown(held(self.repo))}

    def start(
        self, share: float, name: str, new_repo: Path | None = None, release: int | None = None, hold: bool = False
    ) -> Experiment:
        """Serve the treatment (``new_repo`` staged as the next release, or the release ``release`` on disk)
        to ``share`` of the users, beside the serving release. ``hold``: load the treatment and stop there, no
        user sent to it, until ``open`` (so it can be verified first)."""
        if not 0.0 < share < 1.0:
            raise PublishError(f"share: {share} is not strictly between 0 and 1")
        if not name or any(ch.isspace() for ch in name):
            raise PublishError(f"name: {name!r} must be a non-empty word (it is hashed with each user's id)")
        if (new_repo is None) == (release is None):
            raise PublishError("name the treatment: a build to stage (--from) or a release on disk (--release)")
        lay = layout(self.repo)
        refuse_during_test(lay, "starting another")
        control = serving_version(self.repo, lay)
        treatment = self.publisher.stage(new_repo) if new_repo is not None else int(release or 0)
        missing = [m for m in lay.released if treatment not in versions_on_disk(self.repo / m)]
        if missing:
            raise PublishError(f"release {treatment}: not on disk for {', '.join(missing[:3])}")
        if treatment == control:
            raise PublishError(f"release {treatment} is the one serving: the test needs another")
        try:
            for model in lay.steps:  # both releases loaded
                self.publisher.set_versions(model, sorted({control, treatment}))
        except PublishError as err:  # a model of the treatment failed to load (its warm-up request, say)
            self.publisher.withdraw(treatment, lay, control, remove=new_repo is not None)
            raise PublishError(f"{err}; release {control} serves alone, the test did not start") from None
        for ensemble in lay.ensembles:  # the treatment's ensembles, each holding the test: files first, config last
            cfg = read_config(self.repo / ensemble)
            arm = arm_name(ensemble)
            cfg.name = arm
            for step in cfg.ensemble_scheduling.step:
                step.model_version = treatment
            _string_parameter(cfg, ARM_PARAMETER, ensemble)
            _string_parameter(
                cfg, EXPERIMENT_PARAMETER, Experiment(name, float(share), control, treatment, arm).to_json()
            )
            for version in versions_on_disk(self.repo / ensemble):
                (self.repo / arm / str(version)).mkdir(parents=True, exist_ok=True)
            write_config(self.repo / arm, cfg)
            self.publisher.load(arm)
        if hold:
            logger.info(f"online test {name} held: release {treatment} loaded beside release {control}, no user sent")
            return Experiment(name, float(share), control, treatment, arm_name(lay.ensembles[0]))  # as held() reads it
        return self.open()

    def open(self) -> Experiment:
        """Send the held test's share of users to its treatment: the public ensembles get the test, which the
        SDKs read."""
        lay = layout(self.repo)
        if running(self.repo, lay) is not None:
            raise PublishError(f"{self.repo}: the online test splits users already")
        test = held(self.repo, lay)
        if test is None:
            raise PublishError(f"{self.repo}: no held online test (start one with --hold)")
        for ensemble in lay.ensembles:  # the SDKs learn of it
            cfg = read_config(self.repo / ensemble)
            its_test = read_config(self.repo / arm_name(ensemble)).parameters[EXPERIMENT_PARAMETER].string_value
            _string_parameter(cfg, EXPERIMENT_PARAMETER, its_test)
            write_config(self.repo / ensemble, cfg)
            self.publisher.load(ensemble)
        logger.info(
            f"online test {test.name}: release {test.treatment} to {test.share:.0%} of users, "
            f"release {test.control} to the rest"
        )
        return test  # what running() now reads: the first public ensemble holds its arm's test

    def stop(self, keep: str) -> int:
        """End the running test, serving ``keep`` (``"control"`` or ``"treatment"``) alone: its release."""
        if keep not in ("control", "treatment"):
            raise PublishError(f"keep: {keep!r} is neither 'control' nor 'treatment'")
        lay = layout(self.repo)
        test = running(self.repo, lay)
        announced = test is not None  # a held test sent nobody to its treatment: nothing to drain
        test = test or held(self.repo, lay)
        if test is None and not lay.arms:
            raise PublishError(f"{self.repo}: no online test is running")
        for ensemble in lay.ensembles:  # the SDKs stop splitting at their next read
            cfg = read_config(self.repo / ensemble)
            if EXPERIMENT_PARAMETER in cfg.parameters:
                del cfg.parameters[EXPERIMENT_PARAMETER]
                write_config(self.repo / ensemble, cfg)
                self.publisher.load(ensemble)
        control = serving_version(self.repo, lay)
        treatment = test.treatment if test is not None else control
        kept = treatment if keep == "treatment" else control
        if kept != control:  # the public ensembles move to the treatment; every step has it loaded already
            self.publisher.switch(kept, lay, control)
        drain = self.arm_drain_s if announced else 0.0
        logger.info(f"online test stopped: release {kept} serves; treatment ensembles draining {drain} s")
        time.sleep(drain)  # an SDK that has not read the config since still sends users there
        for arm in lay.arms:
            self.publisher.unload(arm)
            shutil.rmtree(self.repo / arm)
        for model in lay.steps:
            self.publisher.set_versions(model, [kept])
        return kept


def main(argv: list[str] | None = None) -> int:
    cli_logging.configure()
    parser = argparse.ArgumentParser(prog="python -m server.experiment", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("status", "start", "open", "stop"))
    parser.add_argument("--repo", type=Path, default=Path("model_repository"), help="the repository the server serves")
    parser.add_argument("--url", default="127.0.0.1:8001", help="the server's gRPC address")
    parser.add_argument("--from", dest="new", type=Path, help="start: the candidate build's repository (the treatment)")
    parser.add_argument("--release", type=int, help="start: a release on disk as the treatment (instead of --from)")
    parser.add_argument("--share", type=float, default=0.1, help="start: the share of users the treatment gets")
    parser.add_argument("--name", help="start: the test's name, hashed with each user's id (default: the time)")
    parser.add_argument("--hold", action="store_true", help="start: load the treatment, send no user to it until open")
    parser.add_argument("--keep", choices=("control", "treatment"), help="stop: the release that serves after")
    parser.add_argument("--drain-s", type=float, default=2.0, help="stop: how long a replaced release stays loaded")
    args = parser.parse_args(argv)
    import tritonclient.grpc as grpcclient

    publisher = Publisher(args.repo, grpcclient.InferenceServerClient(args.url), drain_s=args.drain_s)
    tests = OnlineTests(publisher)
    try:
        if args.command == "status":
            print({**publisher.status(), **tests.status()})
        elif args.command == "start" and args.hold:
            name = args.name or time.strftime("test-%Y%m%d-%H%M%S")
            test = tests.start(args.share, name, args.new, args.release, hold=True)
            print(
                f"online test {test.name} held: release {test.treatment} loaded beside release {test.control}, "
                "no user sent to it; verify it (python -m rollout verify --golden REPO --arm treatment), then "
                "open it (python -m server.experiment open) or end it (stop --keep control)"
            )
        elif args.command in ("start", "open"):
            if args.command == "start":
                name = args.name or time.strftime("test-%Y%m%d-%H%M%S")
                test = tests.start(args.share, name, args.new, args.release)
            else:
                test = tests.open()
            print(
                f"online test {test.name}: release {test.treatment} to {test.share:.0%} of users, "
                f"release {test.control} to the rest"
            )
        elif args.keep is None:
            print("error: stop needs --keep control|treatment", file=sys.stderr)
            return 2
        else:
            print(f"online test stopped: release {tests.stop(args.keep)} serves")
    except (PublishError, ServedRepositoryError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
