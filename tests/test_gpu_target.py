"""The gpu target: everything around the TensorRT engine build, which cannot run on these machines.

Profiles, engine names, trtexec command lines, configs, INT8 calibration caches and the whole
``--target gpu`` build are tested here without TensorRT. The engine build and its parity check need
TensorRT and a GPU: those tests are skipped with the exact reason (``engine.unavailable_reason``).
"""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml

from builders.build import build
from builders.gpu import calibration_cache, engine, naming, profiles, specs, trtexec
from builders.repository.model_specs import ENSEMBLE, spec_by_name
from builders.variants.calibration import ranker_batches
from runtime import contract as c
from runtime.repository import parse_pbtxt

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.unit
def test_profiles_cover_exactly_what_the_configs_allow():
    enc = profiles.for_spec(spec_by_name()[c.TEXT_ENCODER])
    assert enc.min[c.INPUT_IDS] == (1, c.QUERY_PAD_MULTIPLE)
    assert enc.max[c.INPUT_IDS] == (spec_by_name()[c.TEXT_ENCODER].max_batch_size, c.QUERY_TOKENS)
    assert enc.opt[c.INPUT_IDS] == enc.opt[c.ATTENTION_MASK] == profiles.ENCODER_OPT
    rk = profiles.for_spec(spec_by_name()[c.RANKER])
    assert rk.min[c.CAT_FEATURES] == (1, c.N_CAT) and rk.max[c.DENSE_FEATURES] == (c.RANKER_MAX_BATCH, c.N_DENSE)
    with pytest.raises(ValueError, match="needs a batching model"):
        profiles.for_spec(spec_by_name()[c.TOPK])
    with pytest.raises(ValueError, match="only text_encoder and ranker"):
        profiles.for_spec(dataclasses.replace(spec_by_name()[c.TOPK], max_batch_size=8))
    with pytest.raises(ValueError, match="min <= opt <= max"):
        profiles.Profile({"x": (1, 8)}, {"x": (8, 40)}, {"x": (64, 32)})


@pytest.mark.unit
def test_engine_names_carry_compute_capability_and_tensorrt_version():
    assert naming.engine_filename("9.0", "10.5.0") == "model.sm90.trt10.5.0.plan"
    assert naming.trt_version_from_int("100500") == "10.5.0"
    assert naming.trt_version_int("10.5.0") == 100500
    assert naming.cc_model_filenames(("8.0", "9.0"), "10.5.0") == {
        "8.0": "model.sm80.trt10.5.0.plan",
        "9.0": "model.sm90.trt10.5.0.plan",
    }
    with pytest.raises(ValueError, match="compute capability"):
        naming.engine_filename("sm90", "10.5.0")
    with pytest.raises(ValueError, match="TensorRT version"):
        naming.engine_filename("9.0", "10")


@pytest.mark.unit
def test_trtexec_command_lines():
    prof = profiles.for_spec(spec_by_name()[c.RANKER])
    cmd = trtexec.command("r/model.onnx", "r/model.plan", prof, "fp16", timing_cache="t.cache")
    assert cmd[:3] == ["trtexec", "--onnx=r/model.onnx", "--saveEngine=r/model.plan"]
    assert f"--minShapes=cat_features:1x7,dense_features:1x{c.N_DENSE}" in cmd
    assert f"--maxShapes=cat_features:4096x7,dense_features:4096x{c.N_DENSE}" in cmd
    assert "--fp16" in cmd and "--int8" not in cmd and "--timingCacheFile=t.cache" in cmd
    int8 = trtexec.command("m.onnx", "m.plan", prof, "int8", calib_cache="cal.cache")
    assert "--int8" in int8 and "--calib=cal.cache" in int8 and "--fp16" in int8
    assert "--fp16" not in trtexec.command("m.onnx", "m.plan", prof, "fp32")
    with pytest.raises(ValueError, match="calibration cache"):
        trtexec.command("m.onnx", "m.plan", prof, "int8")
    with pytest.raises(ValueError, match="precision"):
        trtexec.build_args(prof, "bf8")


@pytest.mark.unit
def test_the_charts_engine_build_uses_the_generated_arguments():
    values = yaml.safe_load((REPO_ROOT / "helm" / "shoprank" / "values.yaml").read_text())
    assert values["engineBuild"]["engines"] == trtexec.engine_entries("fp16")


@pytest.mark.unit
def test_tensorrt_configs_validate_with_tritons_schema():
    by_name = {s.name: s for s in specs.specs()}
    for name in (c.TEXT_ENCODER, c.RANKER):
        cfg = parse_pbtxt(by_name[name].render())
        assert cfg.platform == "tensorrt_plan" and not cfg.backend
        assert cfg.instance_group[0].kind == cfg.instance_group[0].KIND_GPU
        assert dict(cfg.cc_model_filenames)["9.0"] == "model.sm90.trt10.5.0.plan"
        assert list(cfg.dynamic_batching.preferred_batch_size) == list(specs.PREFERRED[name])
        assert cfg.max_batch_size == spec_by_name()[name].max_batch_size  # same contract as the cpu target
        assert [i.name for i in cfg.input] == [t.name for t in spec_by_name()[name].inputs]
    for name in (c.SEARCH_FEATURES, c.TOPK, c.SEARCH_ENSEMBLE):
        # python models stay on CPU, the ensembles are the cpu target's ensemble layout's
        assert by_name[name] == spec_by_name(layout=ENSEMBLE)[name]
    assert not any(name.endswith("_fused") for name in by_name)  # the gpu target has no fused layout


@pytest.mark.unit
def test_onnxruntime_with_the_tensorrt_execution_provider_is_the_other_runtime():
    cfg = parse_pbtxt({s.name: s for s in specs.specs("ort-trt", "fp16")}[c.RANKER].render())
    assert cfg.backend == "onnxruntime" and not cfg.platform and not cfg.cc_model_filenames
    acc = cfg.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert acc.name == "tensorrt" and acc.parameters["precision_mode"] == "FP16"
    assert acc.parameters["trt_engine_cache_enable"] == "1"
    with pytest.raises(ValueError, match="--gpu-runtime tensorrt"):
        specs.specs("ort-trt", "int8")
    with pytest.raises(ValueError, match="gpu runtime"):
        specs.specs("tvm")


@pytest.mark.unit
def test_tensorrt_calibration_cache_format_round_trips():
    text = calibration_cache.tensorrt_cache_text({"b": 2.54, "a": 127.0}, 100500)
    header, scales = calibration_cache.parse_tensorrt_cache(text)
    assert header == "TRT-100500-MinMaxCalibration"
    assert list(scales) == ["a", "b"]
    assert scales["a"] == pytest.approx(1.0) and scales["b"] == pytest.approx(0.02, rel=1e-6)


@pytest.mark.unit
def test_calibration_ranges_come_from_the_data(small_dcn):

    rng = np.random.default_rng(0)
    cat = rng.integers(0, 3, (64, c.N_CAT)).astype(np.int64)
    dense = (rng.random((64, c.N_DENSE)) * 6.0 - 3.0).astype(np.float32)
    feeds = ranker_batches(cat, dense, batch=32)
    ranges = calibration_cache.tensor_ranges(small_dcn[0] / "ranker" / "model.onnx", feeds)  # the DCN's graph
    assert ranges[c.DENSE_FEATURES] == pytest.approx(float(np.abs(dense).max()))
    assert c.LOGIT in ranges and len(ranges) > 10


@pytest.mark.unit
def test_without_tensorrt_the_engine_build_says_exactly_why(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(engine, "TRTEXEC_PATHS", ("trtexec",))
    reason = engine.unavailable_reason()
    assert reason and "no trtexec" in reason and "TensorRT builder is not installed" in reason
    with pytest.raises(engine.EngineBuildError, match="no trtexec"):
        engine.build(tmp_path / "m.onnx", tmp_path, spec_by_name()[c.RANKER])


@pytest.mark.unit
def test_a_failed_engine_build_names_the_command_to_reproduce_it(monkeypatch, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\necho 'NVIDIA H100 80GB HBM3, 9.0'\n")
    (bin_dir / "trtexec").write_text(
        "#!/bin/sh\n[ \"$1\" = --help ] && echo '[TensorRT v100500]' && exit 0\n"
        "echo '[E] parse error in node /cross.0/Gemm' >&2; exit 3\n"
    )
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    assert engine.unavailable_reason() is None and engine.local_gpu() == ("NVIDIA H100 80GB HBM3", "9.0")
    with pytest.raises(engine.EngineBuildError) as err:
        engine.build(tmp_path / "m.onnx", tmp_path, spec_by_name()[c.RANKER])
    assert "rc 3" in str(err.value) and "--saveEngine=" in str(err.value) and "parse error" in str(err.value)
    assert "model.sm90.trt10.5.0" in str(err.value)


@pytest.mark.slow
def test_gpu_target_build_writes_a_valid_repository_with_calibration_caches(small_build, tmp_path):

    out = tmp_path / "gpu_repo"
    report = build(
        "gpu",
        "small",
        out=out,
        work=REPO_ROOT / "build" / "small",
        progress=False,
        precision="int8",
    )
    assert report["target"] == "gpu" and report["gpu"]["precision"] == "int8"
    trees = report["ranker"]["kind"] == "gbdt"
    assert report["gpu"]["ranker_kind"] == report["ranker"]["kind"]
    if trees:  # TensorRT compiles no tree ensemble: the ranker stays on CPU instances of the onnxruntime backend
        ranker = parse_pbtxt((out / c.RANKER / "config.pbtxt").read_text())
        assert ranker.backend == "onnxruntime" and ranker.platform == ""
        assert [g.kind for g in ranker.instance_group] == [ranker.instance_group[0].KIND_CPU]
        assert not (out / c.RANKER / "1" / "calibration.cache").exists()
    for name in (c.TEXT_ENCODER,) if trees else (c.TEXT_ENCODER, c.RANKER):
        cfg = parse_pbtxt((out / name / "config.pbtxt").read_text())
        assert cfg.platform == "tensorrt_plan"
        assert (out / name / "1" / "model.onnx").exists()  # the engine's source, for the on-node build
        header, scales = calibration_cache.parse_tensorrt_cache((out / name / "1" / "calibration.cache").read_text())
        assert header == "TRT-100500-MinMaxCalibration" and all(v > 0 for v in scales.values())
    checks = "\n".join(report["repository"]["checks"])
    assert "to be built on the GPU node" in checks
    if engine.unavailable_reason():
        assert "not built here" in report["gpu"]["engines"]
    # retrieval: the exact scan on a GPU instance, called by the retrieval models (retrieval.engine auto)
    scan = parse_pbtxt((out / c.ITEM_SCAN / "config.pbtxt").read_text())
    assert scan.backend == "onnxruntime" and [g.kind for g in scan.instance_group] == [scan.instance_group[0].KIND_GPU]
    for name in (c.RETRIEVE_SEARCH, c.RETRIEVE_RECOMMEND):
        cfg = parse_pbtxt((out / name / "config.pbtxt").read_text())
        assert cfg.parameters[c.SCAN_PARAMETER].string_value == c.ITEM_SCAN
        assert [g.kind for g in cfg.instance_group] == [cfg.instance_group[0].KIND_CPU]
    table = out / c.ITEM_SCAN / "1" / "item_embeddings.npy"
    assert table.stat().st_ino == (out / c.TOPK / "1" / "item_embeddings.npy").stat().st_ino  # one copy
    assert "item_scan: config ok (onnxruntime)" in checks


@pytest.mark.gpu
@pytest.mark.skipif(
    engine.unavailable_reason() is not None, reason=f"needs TensorRT and a GPU: {engine.unavailable_reason()}"
)
def test_engines_build_and_match_onnxruntime(small_build, tmp_path):

    report = build(
        "gpu",
        "small",
        out=tmp_path / "gpu_repo",
        work=REPO_ROOT / "build" / "small",
        progress=False,
    )
    for name in (c.TEXT_ENCODER,) if report["ranker"]["kind"] == "gbdt" else (c.TEXT_ENCODER, c.RANKER):
        parity = report["gpu"][f"{name}_parity"]
        assert parity["min_cosine"] > 0.999, parity


@pytest.mark.unit
def test_gpu_specs_are_derived_not_copied():
    enc = {s.name: s for s in specs.specs()}[c.TEXT_ENCODER]
    assert dataclasses.replace(enc, platform="", backend="onnxruntime").inputs == spec_by_name()[c.TEXT_ENCODER].inputs
