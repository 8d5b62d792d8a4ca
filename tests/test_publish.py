"""Model updates on a running server (server/publish.py): a new release and a rollback under a steady
load from the SDK, with zero failed requests and every response wholly from one release."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from loadtest.background import under_load
from rollout.__main__ import main as rollout_main
from rollout.golden import load as load_golden
from runtime.repository import layout, read_config, serving_version, versions_on_disk
from server.launcher import ServerOptions, TritonServer
from server.publish import Publisher, PublishError, check_compatible
from shoprank_client import RankingClient
from shoprank_client.types import ClientOptions, RetryPolicy

REPO_ROOT = Path(__file__).resolve().parent.parent


class NoServer:
    """Stands where the gRPC client goes in tests that must fail before anything is loaded."""

    def load_model(self, name: str) -> None:
        raise AssertionError(f"load_model({name!r}) called: the publish should have been refused first")


@pytest.mark.unit
def test_a_fresh_build_serves_its_one_version_and_names_its_models(small_repo):
    lay = layout(small_repo)
    assert set(lay.ensembles) == {"search", "recommend", "search_catalog", "recommend_catalog"}
    # the cpu target's fused layout: one step per call, whose parts are released with it but not served
    assert {"search_fused", "recommend_fused", "search_catalog_fused", "recommend_catalog_fused"} == set(lay.steps)
    assert {
        "search_features",
        "recommend_features",
        "text_encoder",
        "ranker",
        "topk",
        "query_tokens",
        "retrieve_search",
        "retrieve_recommend",
    } == set(lay.parts)
    assert serving_version(small_repo, lay) == 1


@pytest.mark.unit
def test_the_ensemble_layout_has_no_parts(ensemble_repo):
    lay = layout(ensemble_repo)
    assert lay.parts == () and "text_encoder" in lay.steps and "search_fused" not in lay.steps


@pytest.mark.unit
def test_a_build_whose_config_changed_is_refused_naming_the_model(small_repo, tmp_path):
    live, new = tmp_path / "live", tmp_path / "new"
    shutil.copytree(small_repo, live)
    shutil.copytree(small_repo, new)
    cfg = new / "ranker" / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace("max_batch_size: 4096", "max_batch_size: 2048"))
    with pytest.raises(PublishError, match=r"ranker: config differs .*max_batch_size: 2048"):
        check_compatible(live, new)
    with pytest.raises(PublishError, match="ranker: config differs"):
        Publisher(live, NoServer()).publish(new)
    assert versions_on_disk(live / "ranker") == [1]  # nothing was copied


@pytest.mark.unit
def test_rollback_without_an_older_release_is_refused(small_repo, tmp_path):
    live = tmp_path / "live"
    shutil.copytree(small_repo, live)
    with pytest.raises(PublishError, match="release 1 is serving and no older release is on disk"):
        Publisher(live, NoServer()).rollback()


def _ranking(result) -> tuple:
    return tuple((item.item_id, round(item.score, 3)) for item in result.items)


@pytest.mark.triton
@pytest.mark.slow
def test_publish_and_rollback_under_load_fail_no_request_and_never_mix_releases(
    small_repo, release_two, known_ids, tmp_path
):
    import tritonclient.grpc as grpcclient

    live = tmp_path / "live"
    shutil.copytree(small_repo, live)
    users, items = known_ids
    rng = np.random.default_rng(3)
    requests = [
        (int(users[i % len(users)]), ["running shoes", "red dress", "gift"][i % 3] if i % 4 else None)
        + ([int(x) for x in rng.choice(items, 100, replace=False)],)
        for i in range(16)
    ]
    options = ServerOptions(model_repository=live, model_control="explicit", log_file=tmp_path / "ts.log")
    with TritonServer(options) as server:
        # No retries: a request that fails once counts as failed.
        client = RankingClient(server.grpc_url, ClientOptions(timeout_s=10, retry=RetryPolicy(max_attempts=1)))

        def ask(i: int) -> tuple:
            user, query, candidates = requests[i]
            if query is None:
                return _ranking(client.recommend(user, candidates, k=10))
            return _ranking(client.search(user, query, candidates, k=10))

        def tagged(i: int) -> tuple[int, tuple]:
            return i % len(requests), ask(i % len(requests))

        release1 = [ask(i) for i in range(len(requests))]
        publisher = Publisher(live, grpcclient.InferenceServerClient(server.grpc_url), drain_s=1.0)

        # A release whose ranker loads but cannot rank (another model's file): its fused models fail the
        # warm-up request at load, so the publish stops before any ensemble switches and withdraws it.
        broken = tmp_path / "broken"
        shutil.copytree(small_repo, broken)
        shutil.copyfile(small_repo / "text_encoder" / "1" / "model.onnx", broken / "ranker" / "1" / "model.onnx")

        def refused() -> str:
            with pytest.raises(PublishError, match="_fused: its warm-up request failed") as err:
                publisher.publish(broken)
            return str(err.value)

        message, answers, failures = under_load(tagged, refused)
        assert "release 1 still serves, release 2 was withdrawn" in message
        assert failures == [] and answers and all(got == release1[i] for i, got in answers)
        assert publisher.status()["serving"] == 1 and versions_on_disk(live / "ranker") == [1]
        assert all(read_config(live / m).version_policy.specific.versions == [1] for m in layout(live).steps)
        version, answers, failures = under_load(tagged, lambda: publisher.publish(release_two))
        release2 = [ask(i) for i in range(len(requests))]

        assert version == 2 and publisher.status()["serving"] == 2
        # The release's tables are shared between its models as in the build (one inode each).
        assert (
            len(
                {
                    (live / m / "2" / "feature_store" / "item_ctr.npy").stat().st_ino
                    for m in ("search_features", "recommend_features", "retrieve_search")
                }
            )
            == 1
        )
        # Every request ranks differently in the two releases, so a mixed or wrong one would show.
        assert all(a != b for a, b in zip(release1, release2, strict=True))
        assert failures == []
        mixed = [i for i, got in answers if got not in (release1[i], release2[i])]
        assert mixed == [], f"{len(mixed)} of {len(answers)} responses came from neither release alone"
        assert {got == release2[i] for i, got in answers} == {True, False}  # the load saw both releases
        # golden.json follows the serving release: the server answers release 2's golden set
        assert load_golden(live).repository_checksum == load_golden(release_two).repository_checksum
        assert rollout_main(["verify", "--golden", str(live), "--url", server.http_url], out=lambda _: None) == 0

        version, answers, failures = under_load(tagged, publisher.rollback)
        assert version == 1 and publisher.status()["serving"] == 1
        assert failures == []
        assert [i for i, got in answers if got not in (release1[i], release2[i])] == []
        assert [ask(i) for i in range(len(requests))] == release1
        assert load_golden(live).repository_checksum == load_golden(small_repo).repository_checksum
        assert rollout_main(["verify", "--golden", str(live), "--url", server.http_url], out=lambda _: None) == 0
        assert versions_on_disk(live / "ranker") == [1, 2]  # release 2 kept: it can be published again
