"""An online test on a real tritonserver (server/experiment.py, shoprank_client.experiment): a candidate build
served to a share of users beside the live release, started and stopped under SDK load with no failed request;
each user keeps their arm, every response says its release, and the arms' events compare as planted."""

from __future__ import annotations

import asyncio
import math
import shutil
import subprocess
import time

import numpy as np
import pytest

from loadtest.background import under_load
from rollout.__main__ import main as rollout_main
from rollout.compare import Lists, compare
from runtime.repository import layout, read_config, versions_on_disk
from server.experiment import OnlineTests, held, running
from server.launcher import ServerOptions, TritonServer
from server.publish import Publisher, PublishError
from shoprank_client import AsyncRankingClient, RankingClient
from shoprank_client.experiment import bucket
from shoprank_client.types import ClientOptions, RetryPolicy
from tests.conftest import REPO_ROOT

SHARE = 0.3
NAME = "winter-ranker"


def _ranking(result) -> tuple:
    return tuple((item.item_id, round(item.score, 3)) for item in result.items)


def planted_events(arm_of: dict[int, int], click: dict[int, float], seed: int) -> Lists:
    """Three lists per unit, each clicked at its arm's rate: what the shop would log with the served release."""
    rng = np.random.default_rng(seed)
    units = np.repeat(np.array(sorted(arm_of), np.int64), 3)
    arms = np.array([str(arm_of[int(u)]) for u in units], object)
    clicked = rng.random(len(units)) < np.array([click[arm_of[int(u)]] for u in units])
    outcomes = {"click_rate": clicked, "add_to_cart_rate": clicked & False, "purchase_rate": clicked & False}
    return Lists(units, arms, outcomes, 0)


@pytest.mark.triton
@pytest.mark.slow
def test_an_online_test_splits_users_by_share_keeps_their_arm_and_starts_and_stops_without_a_failure(
    small_repo, release_two, known_ids, tmp_path
):
    import tritonclient.grpc as grpcclient

    live = tmp_path / "live"
    shutil.copytree(small_repo, live)
    users, items = known_ids
    candidates = [int(x) for x in np.random.default_rng(5).choice(items, 100, replace=False)]
    shoppers = [int(u) for u in users[:40]]
    options = ServerOptions(model_repository=live, model_control="explicit", log_file=tmp_path / "ts.log")
    with TritonServer(options) as server:
        sdk = ClientOptions(timeout_s=10, retry=RetryPolicy(max_attempts=1), experiment_refresh_s=0.2)
        client = RankingClient(server.grpc_url, sdk)
        never = RankingClient(server.grpc_url, ClientOptions(timeout_s=10, experiment_refresh_s=0))

        def ask(i: int):
            return client.search(shoppers[i % len(shoppers)], "red dress", candidates, k=10)

        before = {u: client.search(u, "red dress", candidates, k=10) for u in shoppers}
        assert {r.release for r in before.values()} == {1}

        publisher = Publisher(live, grpcclient.InferenceServerClient(server.grpc_url), drain_s=0.5)
        tests = OnlineTests(publisher, arm_drain_s=1.0)
        # a candidate whose ranker loads but cannot rank fails its fused models' warm-up: the test does not
        # start, and nothing of it is left (its files withdrawn, every step on release 1 alone, no arm)
        broken = tmp_path / "broken"
        shutil.copytree(small_repo, broken)
        shutil.copyfile(small_repo / "text_encoder" / "1" / "model.onnx", broken / "ranker" / "1" / "model.onnx")
        with pytest.raises(PublishError, match="(?s)its warm-up request failed.*the test did not start"):
            tests.start(SHARE, NAME, new_repo=broken, hold=True)
        assert held(live) is None and running(live) is None and versions_on_disk(live / "ranker") == [1]
        assert not [p.name for p in live.iterdir() if p.name.endswith("__treatment")]
        assert all(read_config(live / m).version_policy.specific.versions == [1] for m in layout(live).steps)
        # held: the treatment is loaded, and no user is sent to it
        test, answers, failures = under_load(ask, lambda: tests.start(SHARE, NAME, new_repo=release_two, hold=True))
        assert failures == [] and answers
        assert (test.control, test.treatment, test.share) == (1, 2, SHARE)
        assert running(live) is None and held(live) == test
        assert tests.status()["test"] is None and tests.status()["held"]["treatment"] == 2
        assert versions_on_disk(live / "ranker") == [1, 2]
        with pytest.raises(PublishError, match="online test is running"):
            publisher.publish(release_two)
        time.sleep(0.3)  # the SDK re-reads: still no test
        assert {r.release for r in answers} | {
            client.search(u, "red dress", candidates, k=10).release for u in shoppers
        } == {1}

        # the gate on the candidate before shoppers meet it: its arm answers as its own build did (the live
        # repository names its golden set), and not as the control's build (another ranker); the control still
        # answers as its build
        said: list[str] = []
        arm = ["--url", server.http_url, "--arm", "treatment"]
        assert rollout_main(["verify", "--golden", str(live), *arm], said.append) == 0, said
        assert rollout_main(["verify", "--golden", str(live / ".golden.2.json"), *arm], said.append) == 0, said
        assert rollout_main(["verify", "--golden", str(live / "golden.json"), *arm], said.append) == 1
        assert "verify: FAILED" in said[-1]
        assert rollout_main(["verify", "--golden", str(live), "--url", server.http_url], said.append) == 0, said

        # opened: the SDKs split the users
        opened, answers, failures = under_load(ask, tests.open)
        assert failures == [] and answers
        assert running(live) == opened and held(live) is None and (opened.name, opened.treatment) == (NAME, 2)
        with pytest.raises(PublishError, match="splits users already"):
            tests.open()
        time.sleep(0.3)  # the SDK re-reads the test

        # the split: the configured share of users, each always in the same arm, as the SDK's hash says
        units = list(range(10**6, 10**6 + 600))
        arm_of = {u: client.recommend(u, candidates, k=10).release for u in units}
        share = sum(r == 2 for r in arm_of.values()) / len(units)
        assert abs(share - SHARE) < 4 * math.sqrt(SHARE * (1 - SHARE) / len(units)), share
        assert {u: client.recommend(u, candidates, k=10).release for u in units} == arm_of
        assert all((arm_of[u] == 2) == (bucket(NAME, u) < SHARE) for u in units)
        assert {never.recommend(u, candidates, k=10).release for u in units[:50]} == {1}  # no split: control

        async def async_arms() -> dict[int, int | None]:
            async with AsyncRankingClient(server.grpc_url, sdk) as aclient:
                return {u: (await aclient.recommend(u, candidates, k=10)).release for u in units[:100]}

        assert asyncio.run(async_arms()) == {u: arm_of[u] for u in units[:100]}  # the asyncio client splits alike

        # each shopper's answer during the test is wholly their arm's release
        during = {u: client.search(u, "red dress", candidates, k=10) for u in shoppers}
        control = [u for u in shoppers if during[u].release == 1]
        treated = [u for u in shoppers if during[u].release == 2]
        assert control and treated
        assert all(_ranking(during[u]) == _ranking(before[u]) for u in control)
        assert all(_ranking(during[u]) != _ranking(before[u]) for u in treated)  # release 2 ranks differently
        for u in control + treated:
            assert during[u].model == "search" and during[u].release == (2 if bucket(NAME, u) < SHARE else 1)

        # the arms' events, with the release as the arm: a planted click difference is found, none is not
        planted = next(d for d in compare(planted_events(arm_of, {1: 0.15, 2: 0.25}, 1), "1") if "click" in d.metric)
        assert planted.significant and planted.delta > 0
        same = next(d for d in compare(planted_events(arm_of, {1: 0.2, 2: 0.2}, 2), "1") if "click" in d.metric)
        assert not same.significant

        kept, answers, failures = under_load(ask, lambda: tests.stop("treatment"))
        assert failures == [] and kept == 2
        assert {r.release for r in answers} == {1, 2}  # the load saw both arms, then the kept one
        after = {u: client.search(u, "red dress", candidates, k=10) for u in shoppers}
        assert {r.release for r in after.values()} == {2}
        assert all(_ranking(after[u]) == _ranking(during[u]) for u in treated)
        assert layout(live).arms == () and running(live) is None
        assert not (live / "search__treatment").exists()
        assert publisher.status()["serving"] == 2


@pytest.mark.triton
@pytest.mark.slow
def test_make_ab_start_sends_no_user_to_a_treatment_that_does_not_answer_as_its_build(
    small_repo, release_two, known_ids, tmp_path
):
    """``make ab-start`` holds the test, verifies the treatment against its own golden set, and opens it only
    then: a candidate whose answers are not its build's (here its golden set holds another build's) ends the test
    with no user sent to it; a sound one is opened."""
    import tritonclient.grpc as grpcclient

    live = tmp_path / "live"
    shutil.copytree(small_repo, live)
    unsound = tmp_path / "unsound"
    shutil.copytree(release_two, unsound)
    shutil.copyfile(small_repo / "golden.json", unsound / "golden.json")
    users, items = known_ids
    candidates = [int(x) for x in np.random.default_rng(6).choice(items, 50, replace=False)]
    options = ServerOptions(model_repository=live, model_control="explicit", log_file=tmp_path / "ts.log")
    with TritonServer(options) as server:
        ports = [f"GRPC_PORT={server.grpc_url.rsplit(':', 1)[1]}", f"HTTP_PORT={server.http_url.rsplit(':', 1)[1]}"]

        def make(*args: str) -> subprocess.CompletedProcess:
            cmd = ["make", "-s", *args, f"REPO={live}", "SHARE=0.5", "NAME=gate", *ports]
            return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)

        refused = make("ab-start", f"FROM={unsound}")
        assert refused.returncode != 0, refused.stdout + refused.stderr
        assert "verify: FAILED" in refused.stdout and "no user was sent to it" in refused.stderr
        assert layout(live).arms == () and running(live) is None and held(live) is None
        client = RankingClient(server.grpc_url, ClientOptions(timeout_s=10, experiment_refresh_s=0))
        assert {client.recommend(int(u), candidates, k=10).release for u in users[:20]} == {1}

        opened = make("ab-start", f"FROM={release_two}")
        assert opened.returncode == 0, opened.stdout + opened.stderr
        test = running(live)
        assert test is not None and (test.name, test.share, test.control) == ("gate", 0.5, 1)
        assert "verify: PASSED" in opened.stdout, opened.stdout
        publisher = Publisher(live, grpcclient.InferenceServerClient(server.grpc_url), drain_s=0.5)
        assert OnlineTests(publisher, arm_drain_s=0.5).stop("control") == 1
        assert layout(live).arms == ()
