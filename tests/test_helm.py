"""The Helm chart, rendered by the real helm binary and validated against Kubernetes schemas (no cluster
can run here: see helm/README.md for what is and is not tested)."""

import json
import re
import subprocess
import uuid
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from builders.repository.model_specs import ENSEMBLE, FUSED, specs
from runtime.online_store import OnlineSettings
from server.experiment import arm_name
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.helm
CHART = REPO_ROOT / "helm" / "shoprank"
HELM = REPO_ROOT / "build" / "tools" / "helm"
KUBERNETES = "1.33.0"
PROFILES = [None, "values-gpu.yaml", "values-cpu.yaml", "values-hybrid.yaml"]
CRDS = {
    "ServiceMonitor": ("monitoring.coreos.com/v1", "endpoints"),
    "PrometheusRule": ("monitoring.coreos.com/v1", "groups"),
    "ScaledObject": ("keda.sh/v1alpha1", "triggers"),
}


@pytest.fixture(scope="module", autouse=True)
def helm_binary():
    subprocess.run(["bash", str(REPO_ROOT / "scripts" / "get_helm.sh")], check=True, capture_output=True)
    assert HELM.exists()


def helm(*args):
    return subprocess.run([str(HELM), *args], capture_output=True, text=True)


def render(profile=None, *sets):
    args = ["template", "rel", str(CHART), "--namespace", "shop"]
    if profile:
        args += ["-f", str(CHART / profile)]
    for s in sets:
        args += ["--set", s]
    out = helm(*args)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def kind(docs, k, suffix=""):
    found = [d for d in docs if d["kind"] == k and d["metadata"]["name"].endswith(suffix)]
    assert found, f"no {k}"
    return found[0]


# The nightly retrain CronJob on (docs/retrain.md): a release volume on a PVC, the exports on another.
RETRAIN = [
    "retrain.enabled=true",
    "modelRepository.source=pvc",
    "modelRepository.pvc.claimName=models",
    "retrain.exports.claimName=exports",
]


@pytest.mark.parametrize("profile", PROFILES)
def test_lint_and_every_manifest_is_valid_kubernetes(profile):
    out = helm("lint", str(CHART), *(["-f", str(CHART / profile)] if profile else []))
    assert out.returncode == 0, out.stdout + out.stderr
    docs = render(profile)
    assert {d["kind"] for d in docs} >= {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Pod",
    }
    for doc in docs:
        if doc["kind"] in CRDS:  # no Kubernetes schema for custom resources: check their required parts
            assert doc["apiVersion"] == CRDS[doc["kind"]][0] and CRDS[doc["kind"]][1] in doc["spec"], doc["kind"]
        else:
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_triton_flags_probes_and_security():
    dep = kind(render(), "Deployment")
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["image"].endswith(":24.10-py3-shoprank-0.1.0")
    for flag in ("--strict-readiness=true", "--exit-timeout-secs=30", "--model-control-mode=none"):
        assert flag in c["args"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300  # big model loads
    assert c["securityContext"]["readOnlyRootFilesystem"] and c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert not c["securityContext"]["allowPrivilegeEscalation"] and pod["securityContext"]["runAsNonRoot"]
    shm = next(v for v in pod["volumes"] if v["name"] == "shm")
    assert shm["emptyDir"]["medium"] == "Memory"


def test_each_start_removes_the_shared_memory_a_killed_server_of_the_pod_left(tmp_path):
    """The container's command, run here by the real /bin/sh: it removes the regions under the chart's prefix in
    /dev/shm (a killed server's, which the pod's emptyDir keeps), leaves any other file there, and then execs
    tritonserver with the chart's arguments (a stand-in on PATH that writes them down)."""
    c = kind(render(), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    prefix = "shoprank_pod_"
    assert f"--backend-config=python,shm-region-prefix-name={prefix}" in c["args"]
    stale = Path("/dev/shm") / f"{prefix}{uuid.uuid4()}"
    other = Path("/dev/shm") / f"shoprank_test_other_{uuid.uuid4()}"
    fake = tmp_path / "bin" / "tritonserver"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path / "args.txt"}\n')
    fake.chmod(0o755)
    try:
        stale.write_bytes(b"x" * 1024)
        other.write_bytes(b"y")
        env = {"PATH": f"{fake.parent}:/usr/bin:/bin"}
        done = subprocess.run([*c["command"], *c["args"]], env=env, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert not stale.exists() and other.exists()
        assert (tmp_path / "args.txt").read_text().splitlines() == c["args"]
    finally:
        stale.unlink(missing_ok=True)
        other.unlink(missing_ok=True)


def test_drain_sequence_fits_in_the_grace_period():
    docs = render(None, "drain.preStopSleepSeconds=15", "server.exitTimeoutSeconds=45")
    dep = kind(docs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "15"]
    assert "--exit-timeout-secs=45" in c["args"]
    assert pod["terminationGracePeriodSeconds"] == 15 + 45 + 10  # preStop + exit timeout + margin
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_config_changes_roll_the_pods():
    def checksum(*sets):
        return kind(render(None, *sets), "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    base = checksum()
    assert checksum("modelRepository.cloud.uri=s3://shoprank-models/model_repository/0.2.0") != base
    assert checksum("server.logVerbose=1") != base
    assert checksum("replicaCount=5") == base  # not a pod change


def test_the_builds_repository_checksum_labels_the_pods_and_rolls_them():
    """`python -m rollout status|wait` tell pods apart by this annotation (rollout/status.py)."""
    digest = "sha256:" + "ab" * 32

    def annotations(*sets):
        return kind(render(None, *sets), "Deployment")["spec"]["template"]["metadata"]["annotations"]

    plain, marked = annotations(), annotations(f"modelRepository.checksum={digest}")
    assert "shoprank.io/repository-checksum" not in plain
    assert marked["shoprank.io/repository-checksum"] == digest
    assert marked["checksum/config"] != plain["checksum/config"]  # a new build at the same URI rolls the pods


def test_the_api_servers_pod_proxy_is_admitted_to_the_http_port_only_when_asked():
    assert len(kind(render(), "NetworkPolicy")["spec"]["ingress"]) == 2
    ingress = kind(render(None, "networkPolicy.allowApiServer.cidrs={172.16.0.0/28,10.0.0.2/32}"), "NetworkPolicy")
    rule = ingress["spec"]["ingress"][2]
    assert rule == {
        "from": [{"ipBlock": {"cidr": "172.16.0.0/28"}}, {"ipBlock": {"cidr": "10.0.0.2/32"}}],
        "ports": [{"port": "http", "protocol": "TCP"}],
    }


def test_gpu_and_cpu_profiles_schedule_differently():
    gpu = kind(render("values-gpu.yaml"), "Deployment")["spec"]["template"]["spec"]
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert gpu["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu["tolerations"]
    cpu_docs = render("values-cpu.yaml")
    assert "nvidia.com/gpu" not in yaml.safe_dump(cpu_docs)
    cpu = kind(cpu_docs, "Deployment")["spec"]["template"]["spec"]
    init = cpu["initContainers"][0]
    assert "sha256sum -c" in init["args"][0] and any(e["name"] == "ARTIFACT_SHA256" for e in init["env"])
    hybrid = kind(render("values-hybrid.yaml"), "Deployment")["spec"]["template"]["spec"]
    assert hybrid["volumes"][-1]["persistentVolumeClaim"]["claimName"] == "shoprank-models"


def test_the_cpu_profile_loads_the_fused_layouts_served_models_only():
    """values-cpu.yaml names what the cpu target's fused repository serves, as the local launcher does."""
    args = kind(render("values-cpu.yaml"), "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--model-control-mode=explicit" in args and not any(a == "--model-control-mode=none" for a in args)
    named = {a.split("=", 1)[1] for a in args if a.startswith("--load-model=")}
    fused = {s.name for s in specs(layout=FUSED)}
    served = {s.name for s in specs(layout=FUSED) if s.platform == "ensemble"}
    served |= {step.model for s in specs(layout=FUSED) for step in s.steps}
    assert named == served and named <= fused
    default = kind(render(), "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--model-control-mode=none" in default and not any(a.startswith("--load-model") for a in default)
    # its fused models' instances are ordered by rate-limiter priorities, which only a rate-limited server reads
    assert "--rate-limit=execution_count" in args and "--rate-limit=off" in default


def test_services_pdb_networkpolicy_and_hpa():
    docs = render()
    headless = kind(docs, "Service", "-headless")
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["ports"][0]["name"] == "grpc"
    assert kind(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    netpol = kind(docs, "NetworkPolicy")["spec"]["ingress"]
    assert netpol[1]["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    hpa = kind(docs, "HorizontalPodAutoscaler")["spec"]
    assert hpa["metrics"][0]["pods"]["metric"]["name"] == "shoprank_queue_us_per_request"
    behavior = hpa["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] > behavior["scaleUp"]["stabilizationWindowSeconds"]
    assert "replicas" not in kind(docs, "Deployment")["spec"]  # the HPA owns the replica count


def test_helm_test_hook_runs_a_real_inference():
    pod = next(d for d in render() if d["kind"] == "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert "/v2/models/recommend/infer" in pod["spec"]["containers"][0]["args"][0]


@pytest.mark.parametrize(
    "sets, message",
    [
        (["modelRepository.source=pvc"], "claimName"),
        (
            [
                "modelRepository.source=artifact",
                "modelRepository.artifact.url=https://x/y.tgz",
                "modelRepository.artifact.sha256=abc",
            ],
            "sha256",
        ),
        (["modelRepository.source=ftp"], "source"),
        (["replicaCount=0"], "replicaCount"),
        (["server.extraArgs[0]=log-verbose=1"], "extraArgs"),
        (["server.rateLimit=always"], "rateLimit"),
        (["autoscaling.minReplicas=5", "autoscaling.maxReplicas=3"], "minReplicas (5) is greater than maxReplicas (3)"),
        (["autoscaling.kind=vpa"], "kind"),
        (["engineBuild.enabled=true"], "engineBuild needs a local repository"),
        (
            [
                "engineBuild.enabled=true",
                "modelRepository.source=pvc",
                "modelRepository.pvc.claimName=m",
                "gpu.enabled=false",
            ],
            "set gpu.enabled=true",
        ),
        (["engineBuild.engines[0].model=enc", "engineBuild.engines[0].onnx=enc/1/model.plan"], "onnx"),
        (["online.enabled=true"], "online.enabled needs the store's address"),
        (["online.enabled=true", "online.existingSecret=s"], "set online.egress.cidr"),
        (["online.enabled=true", "online.url=http://x"], "/online/url"),
        (["online.soldOut=hide"], "soldOut"),
        (["online.enabled=true", "online.redis.enabled=true", "online.cluster.enabled=true"], "not a cluster"),
        (["online.cluster.seeds={nohost}"], "seeds"),
        (["modelRepository.checksum=abc123"], "/modelRepository/checksum"),
        (["networkPolicy.allowApiServer.cidrs={10.0.0.1}"], "/networkPolicy/allowApiServer/cidrs/0"),
        (["retrain.enabled=true"], "retrain.enabled promotes releases on the repository's volume"),
        ([*RETRAIN[:3]], "retrain.enabled needs the shop's exports"),
        ([*RETRAIN, "modelRepository.checksum=sha256:" + "0" * 64], "leave modelRepository.checksum empty"),
        ([*RETRAIN, "retrain.schedule=nightly"], "/retrain/schedule"),
        ([*RETRAIN, "retrain.keepReleases=1"], "/retrain/keepReleases"),
        ([*RETRAIN, "retrain.config.data.folder=/data"], "/retrain/config/data/folder"),
        ([*RETRAIN[:3], "retrain.sync.image=amazon/aws-cli:2.22.35"], "/retrain/sync/command"),
    ],
)
def test_wrong_values_are_rejected_with_a_clear_message(sets, message):
    args = ["template", "rel", str(CHART)]
    for s in sets:
        args += ["--set", s]
    out = helm(*args)
    assert out.returncode != 0 and message in out.stderr, out.stderr


def test_monitoring_objects_deploy_the_tested_rules():
    docs = render("values-gpu.yaml")
    rule = kind(docs, "PrometheusRule")
    assert rule["spec"] == yaml.safe_load((CHART / "files" / "rules.yaml").read_text())  # what promtool tested
    assert kind(docs, "ServiceMonitor")["spec"]["endpoints"][0]["port"] == "metrics"
    dashboard = kind(docs, "ConfigMap", "-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["shoprank.json"])["panels"]
    assert not [d for d in render() if d["kind"] in CRDS]  # off by default: needs the operator's CRDs


def test_every_monitoring_expression_tells_the_public_calls_from_their_steps():
    """Latency, errors and the autoscaling signal are per public call (the ensembles of both layouts and an
    online test's treatment arms); requests queue in every other model (a step). A call missing from these
    regexes would have no SLO or error alert, and its steps' queue time would count against the other calls'
    requests in the autoscaling signal."""
    models = specs(layout=FUSED, scan=True) + specs(layout=ENSEMBLE, scan=True)
    calls = sorted({m.name for m in models if m.platform == "ensemble"})
    public = calls + [arm_name(call) for call in calls]
    steps = sorted({m.name for m in models if m.platform != "ensemble"})
    assert len(calls) == 4 and "search_catalog" in calls and "text_encoder" in steps and "search_fused" in steps
    files = ["files/rules.yaml", "files/prometheus-adapter-rules.yaml", "files/dashboard.json", "../README.md"]
    found = [(f, m) for f in files for m in re.findall(r'model[=!]~\\?"([^"\\]+)\\?"', (CHART / f).read_text())]
    assert {f for f, _ in found} == set(files) and len(found) >= 12, found
    for f, regex in found:
        assert [name for name in public if not re.fullmatch(regex, name)] == [], (f, regex)
        assert [name for name in steps if re.fullmatch(regex, name)] == [], (f, regex)


def test_keda_replaces_the_hpa_when_selected():
    docs = render(None, "autoscaling.kind=keda", "autoscaling.queueTimeTargetMicroseconds=3000")
    assert not [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    trigger = kind(docs, "ScaledObject")["spec"]["triggers"][0]
    assert trigger["type"] == "prometheus" and "shoprank:queue_us_per_request:rate1m" in trigger["metadata"]["query"]
    assert trigger["metadata"]["threshold"] == "3000"


def test_prometheus_adapter_rule_exposes_the_hpa_metric():
    rules = yaml.safe_load((CHART / "files" / "prometheus-adapter-rules.yaml").read_text())
    hpa = kind(render(), "HorizontalPodAutoscaler")
    assert rules[0]["name"]["as"] == hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
    assert "namespace" not in rules[0]["metricsQuery"].split("<<.LabelMatchers>>")[0]  # namespace-agnostic


def test_engine_build_runs_on_the_node_before_triton_with_a_per_gpu_cache():
    docs = render("values-hybrid.yaml", "engineBuild.enabled=true")
    pod = kind(docs, "Deployment")["spec"]["template"]["spec"]
    init = {c["name"]: c for c in pod["initContainers"]}
    assert list(init) == ["copy-model-repository", "build-engines"]  # a writable copy, then the engines
    build = init["build-engines"]
    assert build["resources"]["limits"]["nvidia.com/gpu"] == 1 and build["command"][-1].endswith("build-engines.sh")
    assert build["terminationMessagePolicy"] == "FallbackToLogsOnError"  # its summary or log tail: rollout status
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["engine-cache"]["hostPath"]["path"] == "/var/cache/shoprank-engines"
    assert volumes["models"] == {"name": "models", "emptyDir": {}}
    assert volumes["models-src"]["persistentVolumeClaim"]["readOnly"] is True
    triton_mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "models")
    assert triton_mount["readOnly"] is True
    cm = kind(docs, "ConfigMap", "-engine-build")["data"]
    lines = [line for line in cm["engines.txt"].splitlines() if line.strip()]
    assert [line.split("|")[0] for line in lines] == ["text_encoder", "ranker"]
    assert "--maxShapes=cat_features:4096x7" in lines[1]
    assert cm["build-engines.sh"] == (CHART / "files" / "build-engines.sh").read_text()


def test_gpu_utilization_is_an_optional_second_hpa_metric():
    hpa = kind(render("values-gpu.yaml", "autoscaling.gpuUtilization.enabled=true"), "HorizontalPodAutoscaler")
    names = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"]]
    assert names == ["shoprank_queue_us_per_request", "shoprank_gpu_utilization_percent"]
    rules = yaml.safe_load((CHART / "files" / "prometheus-adapter-rules.yaml").read_text())
    assert "shoprank_gpu_utilization_percent" in [r["name"]["as"] for r in rules]


def test_the_response_cache_the_encoder_config_enables_is_configured_and_can_be_turned_off():
    args = kind(render(), "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--cache-config=local,size=67108864" in args
    off = kind(render(None, "server.responseCacheBytes=0"), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert not any(a.startswith("--cache-config") for a in off["args"])


def test_the_online_store_is_configured_from_a_secret_and_only_it_is_reachable():
    docs = render(None, "online.enabled=true", "online.redis.enabled=true", "online.timeoutMs=30")
    for doc in docs:
        if doc["kind"] not in CRDS:
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    triton = kind(docs, "Deployment", "shoprank")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in triton["env"]}
    secret = kind(docs, "Secret", "-online")
    assert env["SHOPRANK_ONLINE_URL"]["valueFrom"]["secretKeyRef"] == {"name": secret["metadata"]["name"], "key": "url"}
    assert secret["stringData"]["url"] == "redis://rel-shoprank-redis:6379/0"
    assert env["SHOPRANK_ONLINE_TIMEOUT_MS"]["value"] == "30" and env["SHOPRANK_SOLD_OUT"]["value"] == "filter"
    redis = kind(docs, "Deployment", "-redis")["spec"]["template"]["spec"]["containers"][0]
    assert "--save" in redis["args"] and redis["securityContext"]["readOnlyRootFilesystem"]

    policies = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "NetworkPolicy"}
    serving = policies["rel-shoprank"]
    assert serving["policyTypes"] == ["Ingress", "Egress"]
    targets = [rule.get("to") for rule in serving["egress"]]
    assert [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "rel-shoprank-redis"}}}] in targets
    assert {p["port"] for rule in serving["egress"] for p in rule["ports"]} == {53, 6379, 443}  # DNS, Redis, S3
    store = policies["rel-shoprank-redis"]
    assert store["ingress"][0]["ports"] == [{"port": "redis", "protocol": "TCP"}]

    # A managed Redis: the user's Secret, an egress rule to its address range, no Redis pod.
    docs = render(None, "online.enabled=true", "online.existingSecret=shop-redis", "online.egress.cidr=10.8.0.0/24")
    triton = kind(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert triton["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "shop-redis"
    assert not [d for d in docs if d["kind"] in ("Secret",) or d["metadata"]["name"].endswith("-redis")]
    egress = kind(docs, "NetworkPolicy")["spec"]["egress"]
    assert {"to": [{"ipBlock": {"cidr": "10.8.0.0/24"}}], "ports": [{"port": 6379, "protocol": "TCP"}]} in egress

    # A Redis Cluster behind TLS: cluster mode, its seeds and buckets, every node's range and ports reachable.
    docs = render(
        None,
        "online.enabled=true",
        "online.existingSecret=shop-cluster",
        "online.cluster.enabled=true",
        "online.cluster.seeds={10.9.0.11:6379,10.9.0.12:6379}",
        "online.cluster.readFromReplicas=true",
        "online.egress.cidr=10.9.0.0/24",
        "online.egress.extraPorts={6380}",
    )
    env = {
        e["name"]: e.get("value") for e in kind(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["SHOPRANK_ONLINE_CLUSTER"] == "1" and env["SHOPRANK_ONLINE_BUCKETS"] == "12"
    assert env["SHOPRANK_ONLINE_SEEDS"] == "10.9.0.11:6379,10.9.0.12:6379" and env["SHOPRANK_ONLINE_REPLICAS"] == "1"
    egress = kind(docs, "NetworkPolicy")["spec"]["egress"]
    assert {
        "to": [{"ipBlock": {"cidr": "10.9.0.0/24"}}],
        "ports": [{"port": 6379, "protocol": "TCP"}, {"port": 6380, "protocol": "TCP"}],
    } in egress

    parsed = OnlineSettings.from_env(
        {**{k: v for k, v in env.items() if v}, "SHOPRANK_ONLINE_URL": "rediss://u:p@10.9.0.10:6379"}
    )
    assert parsed.cluster and parsed.seeds == ("10.9.0.11:6379", "10.9.0.12:6379") and parsed.read_from_replicas

    # Off (the default): no egress rules, nothing of the store.
    docs = render()
    assert kind(docs, "NetworkPolicy")["spec"]["policyTypes"] == ["Ingress"]
    assert "env" not in kind(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("sets", [RETRAIN, [*RETRAIN, "modelRepository.pvc.subPath=shop/", "engineBuild.enabled=true"]])
def test_the_retrain_cronjob_and_its_rbac_are_valid_kubernetes_and_promote_through_the_volumes_link(sets, tmp_path):
    from builders.data import config as cfg_mod
    from retrain.__main__ import _parser

    docs = render("values-gpu.yaml", *sets, "networkPolicy.allowApiServer.cidrs={10.0.0.0/28}")
    for doc in docs:
        if doc["kind"] not in CRDS:
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    cron = kind(docs, "CronJob", "-retrain")
    assert cron["spec"]["schedule"] == "0 3 * * *" and cron["spec"]["concurrencyPolicy"] == "Forbid"
    job = cron["spec"]["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0 and job["activeDeadlineSeconds"] == 14400
    pod = job["template"]["spec"]
    (ctr,) = pod["containers"]
    # the args are the retrain's own: its parser reads them as the Job will
    args = _parser().parse_args(ctr["args"])
    assert (args.volume, args.kube_release, args.namespace, args.in_cluster) == (Path("/volume"), "rel", "shop", True)
    assert ctr["command"] == ["python", "-m", "retrain"] and args.keep == 5 and args.rollout_timeout == 900
    sub = "shop" if any("subPath=shop/" in s for s in sets) else ""
    mounts = {m["mountPath"]: m for m in ctr["volumeMounts"]}
    assert mounts["/volume"].get("subPath", "") == sub and not mounts["/volume"].get("readOnly")
    assert mounts["/exports"]["readOnly"] and mounts[str(args.config.parent)]["readOnly"]
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["volume"]["persistentVolumeClaim"] == {"claimName": "models"}
    assert vols["exports"]["persistentVolumeClaim"] == {"claimName": "exports", "readOnly": True}
    # the shop's config the Job reads is a valid shoprank.yaml
    cm = kind(docs, "ConfigMap", "-retrain")
    (tmp_path / "shoprank.yaml").write_text(cm["data"][args.config.name])
    assert cfg_mod.load(tmp_path / "shoprank.yaml").data.folder == Path("/exports")
    # the Job's pod is not one of the Deployment's (its selector), nor the Service's
    dep = kind(docs, "Deployment")
    selector = dep["spec"]["selector"]["matchLabels"]
    labels = job["template"]["metadata"]["labels"]
    assert not all(labels.get(k) == v for k, v in selector.items())
    # the pods serve the release the volume's link names, resolved when each container starts
    tmpl = dep["spec"]["template"]["spec"]
    want = f"{sub}/current".lstrip("/")
    served = [m for c in tmpl["containers"] + tmpl.get("initContainers", []) for m in c["volumeMounts"]]
    assert {m.get("subPath") for m in served if m["name"] in ("models", "models-src") and "subPath" in m} == {want}
    assert "shoprank.io/repository-checksum" not in dep["spec"]["template"]["metadata"]["annotations"]
    # RBAC: patch only this release's Deployment; read pods; the pod proxy
    role = kind(docs, "Role", "-retrain")
    rules = {
        (r["apiGroups"][0], r["resources"][0], v): r.get("resourceNames") for r in role["rules"] for v in r["verbs"]
    }
    assert rules[("apps", "deployments", "patch")] == [dep["metadata"]["name"]]
    assert ("", "pods/proxy", "get") in rules and ("", "pods", "list") in rules
    assert not any(v in ("delete", "create", "update") for _, _, v in rules)
    binding = kind(docs, "RoleBinding", "-retrain")
    assert (
        binding["subjects"][0]["name"]
        == pod["serviceAccountName"]
        == kind(docs, "ServiceAccount", "-retrain")["metadata"]["name"]
    )
    # the watch reads each pod's metrics through the API server's pod proxy
    ingress = kind(docs, "NetworkPolicy")["spec"]["ingress"][2]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}, {"port": "metrics", "protocol": "TCP"}]


def test_the_retrain_cronjob_can_copy_the_exports_from_a_bucket_first():
    docs = render(
        None,
        *RETRAIN[:3],
        "retrain.sync.image=amazon/aws-cli:2.22.35",
        "retrain.sync.command={aws,s3,sync,s3://shop-exports/latest/,/exports}",
        "retrain.sync.credentialsSecret=aws",
        "retrain.timeZone=Europe/Berlin",
    )
    cron = kind(docs, "CronJob", "-retrain")
    kubernetes_validate.validate(cron, KUBERNETES, strict=True)
    assert cron["spec"]["timeZone"] == "Europe/Berlin"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["command"][-1] == "/exports" and init["envFrom"] == [{"secretRef": {"name": "aws"}}]
    assert {v["name"]: v for v in pod["volumes"]}["exports"] == {"name": "exports", "emptyDir": {}}
    assert "CronJob" not in {d["kind"] for d in render()}  # off by default
