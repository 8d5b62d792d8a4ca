import pytest
from google.protobuf import json_format

from builders.repository.assemble import SOURCE_REPO
from builders.repository.model_specs import specs
from builders.repository.triton_config import (
    MAX_PRIORITY,
    ModelSpec,
    Tensor,
    instance_count,
    preferred_instance_groups,
)
from runtime.contract import MAX_CANDIDATES
from runtime.repository import parse_pbtxt

pytestmark = pytest.mark.unit


def test_every_spec_renders_and_parses_back_equal():
    for spec in specs():
        assert parse_pbtxt(spec.render()) == spec.to_proto()


def test_committed_configs_are_in_sync_with_the_specs():
    for spec in specs():
        committed = (SOURCE_REPO / spec.name / "config.pbtxt").read_text()
        assert committed == spec.render(), f"{spec.name}: run `make configs`"


def test_triton_schema_rejects_a_wrong_value():
    bad = ModelSpec(name="x", backend="python", inputs=(Tensor("A", "int64", (1,)),), outputs=())
    cfg = bad.to_dict()
    cfg["input"][0]["data_type"] = "TYPE_NOT_A_TYPE"
    with pytest.raises(json_format.ParseError, match="TYPE_NOT_A_TYPE"):
        json_format.ParseDict(cfg, type(bad.to_proto())())
    cfg = bad.to_dict()
    cfg["max_batch_sise"] = 4
    with pytest.raises(json_format.ParseError, match="max_batch_sise"):
        json_format.ParseDict(cfg, type(bad.to_proto())())


def test_every_model_sets_batching_and_instances_on_purpose():
    for spec in specs():
        assert "max_batch_size" in spec.why, spec.name
        if spec.platform != "ensemble":
            assert spec.instances >= 1 and "instance_group" in spec.why, spec.name
        if spec.max_batch_size > 0:
            assert spec.dynamic_batching and "dynamic_batching" in spec.why, spec.name


def test_ranker_batch_covers_the_candidate_cap():

    ranker = next(s for s in specs() if s.name == "ranker")
    assert ranker.max_batch_size >= MAX_CANDIDATES


def test_no_ensemble_step_sets_a_queue_limit():
    """Triton 24.10 hangs an ensemble whose step rejects a request for a full queue (fixed upstream in
    triton-inference-server/core#466): shed load at the client (deadlines) instead, see docs/serving.md."""
    all_specs = {s.name: s for s in specs()}
    steps = {step.model for s in specs() for step in s.steps}
    assert steps and all(all_specs[name].max_queue_size == 0 for name in steps)


@pytest.mark.parametrize("count", [1, 2, 3, 4, 8, 16, 32])
def test_preferred_instances_are_groups_of_one_in_a_strict_priority_order(count):
    spec = ModelSpec(
        name="x",
        backend="python",
        instances=count,
        preferred_instances=True,
        inputs=(Tensor("A", "int64", (1,)),),
        outputs=(),
    )
    cfg = spec.to_proto()  # through Triton's own schema
    assert instance_count(cfg) == count and all(g.count == 1 and g.kind == g.KIND_CPU for g in cfg.instance_group)
    priorities = [g.rate_limiter.priority for g in cfg.instance_group]
    assert priorities[0] == 1 and priorities == sorted(set(priorities)) and priorities[-1] <= MAX_PRIORITY
    if count > 1:  # the second instance takes a request only while the first is busy, or once in 1,000 at most
        assert priorities[1] >= 2 and (count > 2 or priorities[1] == 1000)
    plain = ModelSpec(name="x", backend="python", instances=count, inputs=(), outputs=()).to_proto()
    assert (
        instance_count(plain) == count
        and len(plain.instance_group) == 1
        and not plain.instance_group[0].HasField("rate_limiter")
    )


def test_preferred_instances_refuse_a_count_below_one():
    with pytest.raises(ValueError, match="instances: expected a whole number >= 1, got 0"):
        preferred_instance_groups(0)
