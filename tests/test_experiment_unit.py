"""Online tests without a server: the SDK's user split (shoprank_client.experiment) and what the server side
(server/experiment.py) refuses before it loads anything."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from runtime.contract import ARM_PARAMETER, EXPERIMENT_PARAMETER
from runtime.repository import layout
from server.experiment import Experiment, OnlineTests, arm_name
from server.publish import Publisher, PublishError, write_config
from shoprank_client.experiment import EXPERIMENT_PARAMETER as SDK_PARAMETER
from shoprank_client.experiment import Splits, bucket, parse_split, unit_id
from shoprank_client.types import ClientOptions

pytestmark = pytest.mark.unit


def config_with(test: Experiment | None) -> dict:
    """What ``get_model_config(..., as_json=True)`` answers for a public model."""
    params = {} if test is None else {SDK_PARAMETER: {"string_value": test.to_json()}}
    return {"config": {"name": "search", "platform": "ensemble", "parameters": params}}


TEST = Experiment("winter", 0.25, 3, 4, "search__treatment")


def test_the_sdk_and_the_server_name_the_same_parameter():
    assert SDK_PARAMETER == EXPERIMENT_PARAMETER


def test_the_split_gives_the_share_and_each_unit_one_arm_that_another_test_reshuffles():
    split = parse_split(config_with(TEST))
    assert split is not None and split.arm == "search__treatment" and split.treatment == 4
    units = range(20_000)
    treated = [split.treated(u) for u in units]
    share = sum(treated) / len(treated)
    assert abs(share - 0.25) < 4 * math.sqrt(0.25 * 0.75 / len(treated))
    assert treated == [split.treated(u) for u in units]  # stable
    other = [bucket("spring", u) < 0.25 for u in units]
    overlap = sum(a and b for a, b in zip(treated, other, strict=True)) / len(treated)
    assert abs(overlap - 0.25 * 0.25) < 0.01  # independent of the first test's split


def test_a_string_id_is_split_as_the_int64_the_sdk_sends():
    assert unit_id("account-17") == unit_id("account-17") != unit_id("account-18")
    assert unit_id(42) == 42


def test_a_model_without_a_test_always_answers_with_itself():
    assert parse_split(config_with(None)) is None
    splits = Splits(10.0)
    splits.learn("search", config_with(None))
    assert {splits.target("search", u) for u in range(1000)} == {"search"}


def test_the_test_is_reread_after_the_refresh_and_after_a_failed_treatment():
    now = [0.0]
    splits = Splits(10.0, clock=lambda: now[0])
    assert splits.stale("search")
    splits.learn("search", config_with(TEST))
    assert not splits.stale("search")
    assert {splits.target("search", u) for u in range(1000)} == {"search", "search__treatment"}
    now[0] = 10.0
    assert splits.stale("search")
    splits.learn("search", config_with(None))  # the test stopped
    assert {splits.target("search", u) for u in range(1000)} == {"search"}
    splits.forget("search")
    assert splits.stale("search")
    assert not Splits(0.0).stale("search")  # refresh 0: never read, always the control


def test_a_negative_refresh_is_refused_naming_the_option():
    with pytest.raises(ValueError, match="experiment_refresh_s"):
        ClientOptions(experiment_refresh_s=-1)


class NoServer:
    def load_model(self, name: str) -> None:
        raise AssertionError(f"load_model({name!r}) called: the test should have been refused first")

    unload_model = load_model


@pytest.mark.parametrize(
    ("share", "name", "release", "message"),
    [
        (1.5, "t", 1, "share"),
        (0.0, "t", 1, "share"),
        (0.1, "two words", 1, "name"),
        (0.1, "t", None, "--from"),
        (0.1, "t", 1, "is the one serving"),
        (0.1, "t", 9, "release 9: not on disk"),
    ],
)
def test_a_bad_start_is_refused_naming_the_field_before_anything_loads(
    small_repo, tmp_path, share, name, release, message
):
    live = tmp_path / "live"
    shutil.copytree(small_repo, live)
    tests = OnlineTests(Publisher(live, NoServer()))
    with pytest.raises(PublishError, match=message):
        tests.start(share, name, release=release)
    assert layout(live).arms == ()


def test_publish_and_rollback_are_refused_while_a_test_runs_and_stop_needs_one(small_repo, tmp_path):
    live = tmp_path / "live"
    shutil.copytree(small_repo, live)
    publisher = Publisher(live, NoServer())
    with pytest.raises(PublishError, match="no online test is running"):
        OnlineTests(publisher).stop("control")
    lay = layout(live)
    ensemble = lay.ensembles[0]
    cfg = (live / ensemble / "config.pbtxt").read_text()
    arm = live / arm_name(ensemble)
    (arm / "1").mkdir(parents=True)
    (arm / "config.pbtxt").write_text(cfg)
    from runtime.repository import read_config

    arm_cfg = read_config(arm)
    arm_cfg.name = arm.name
    arm_cfg.parameters[ARM_PARAMETER].string_value = ensemble
    write_config(arm, arm_cfg)
    assert layout(live).arms == (arm.name,) and arm.name not in layout(live).ensembles
    for action in (lambda: publisher.publish(small_repo), publisher.rollback):
        with pytest.raises(PublishError, match="an online test is running"):
            action()
    with pytest.raises(PublishError, match="keep"):
        OnlineTests(publisher).stop("both")
    assert json.loads(TEST.to_json())["share"] == 0.25


def test_the_command_refuses_bad_input_naming_the_option(small_repo, tmp_path, capsys):
    from server.experiment import main

    live = tmp_path / "live"
    shutil.copytree(small_repo, live)
    assert main(["stop", "--repo", str(live)]) == 2
    assert "--keep" in capsys.readouterr().err
    assert main(["start", "--repo", str(live), "--share", "2", "--release", "1"]) == 2
    assert "share: 2.0" in capsys.readouterr().err
    assert layout(live).arms == ()
