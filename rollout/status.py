"""One row per pod of a release, and what disagrees between them. Plain functions over the kubernetes
client's model objects (``V1Deployment``, ``V1Pod``, ``V1Node``) and each pod's ``TritonView``."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

from rollout.kube import SERVER_CONTAINER
from rollout.triton_http import TritonView

REPO_CHECKSUM = "shoprank.io/repository-checksum"  # the build's repository checksum (modelRepository.checksum)
CONFIG_CHECKSUM = "checksum/config"  # the chart's hash of repository location, server flags, image, online
RELEASE = "shoprank.io/release"  # the retrain CronJob's release on the volume (retrain/cluster.py sets it)
ENGINE_INIT = "build-engines"
GPU_LABEL = "nvidia.com/gpu.product"
NOT_ON_A_CLUSTER = (
    "note: rollout's cluster layer (rollout/kube.py) is tested against a stand-in for the API server serving the "
    "chart's rendered manifests, never against a real cluster (helm/README.md, 'Checking a release')"
)


@dataclass
class PodRow:
    pod: str
    phase: str
    ready: bool
    restarts: int
    node: str
    gpu: str  # product label; "-" no GPU asked; "?" node unreadable
    image: str
    repository_checksum: str  # "" when the chart was not given modelRepository.checksum
    config_checksum: str
    current: bool  # on the Deployment's current pod template (both checksums, the release and the image)
    engines: str  # the engine-build init container: "-" none, "built: ...", "running", "failed: ..."
    triton_ready: bool | None  # None: Triton not asked or not reachable
    models: dict[str, list[str]] = field(default_factory=dict)  # model -> loaded (READY) versions
    triton_error: str | None = None


@dataclass
class ReleaseStatus:
    namespace: str
    release: str
    deployment: str
    want_replicas: int
    repository_checksum: str
    config_checksum: str
    image: str
    pods: list[PodRow]
    problems: list[str]  # the release is not all there or pods disagree: `status` exits 1
    warnings: list[str] = field(default_factory=list)  # worth knowing, not failing

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        return asdict(self) | {"ok": self.ok, "note": NOT_ON_A_CLUSTER}


def _container_image(spec, name: str) -> str:
    for ctr in spec.containers or []:
        if ctr.name == name:
            return ctr.image or ""
    return ""


def _engines(pod) -> str:
    init_specs = {c.name for c in (pod.spec.init_containers or [])}
    if ENGINE_INIT not in init_specs:
        return "-"
    for st in (pod.status.init_container_statuses or []) if pod.status else []:
        if st.name != ENGINE_INIT:
            continue
        state = st.state
        if state is None:
            break
        if state.terminated is not None:
            msg = (state.terminated.message or "").strip().replace("\n", " | ")
            if state.terminated.exit_code == 0:
                return f"built: {msg}" if msg else "built"
            return f"failed: exit {state.terminated.exit_code}" + (f": {msg}" if msg else "")
        if state.running is not None:
            return "running"
        if state.waiting is not None:
            last = st.last_state.terminated if st.last_state is not None else None
            why = f" (last: exit {last.exit_code})" if last is not None else ""
            return f"waiting: {state.waiting.reason or ''}{why}"
    return "pending"


def pod_row(pod, node, template_annotations: dict, template_image: str, view: TritonView | None) -> PodRow:
    ann = pod.metadata.annotations or {}
    conditions = {c.type: c.status for c in (pod.status.conditions or [])} if pod.status else {}
    restarts = sum(s.restart_count or 0 for s in (pod.status.container_statuses or [])) if pod.status else 0
    gpu_asked = any(
        "nvidia.com/gpu" in ((c.resources.limits or {}) if c.resources else {}) for c in pod.spec.containers or []
    )
    if not gpu_asked:
        gpu = "-"
    elif node is None:
        gpu = "?"
    else:
        gpu = (node.metadata.labels or {}).get(GPU_LABEL, "?")
    image = _container_image(pod.spec, SERVER_CONTAINER)
    current = (
        ann.get(REPO_CHECKSUM, "") == template_annotations.get(REPO_CHECKSUM, "")
        and ann.get(CONFIG_CHECKSUM, "") == template_annotations.get(CONFIG_CHECKSUM, "")
        and ann.get(RELEASE, "") == template_annotations.get(RELEASE, "")
        and image == template_image
    )
    phase = (pod.status.phase if pod.status else None) or "Unknown"
    if pod.metadata.deletion_timestamp is not None:
        phase = "Terminating"
    return PodRow(
        pod=pod.metadata.name,
        phase=phase,
        ready=conditions.get("Ready") == "True",
        restarts=restarts,
        node=pod.spec.node_name or "",
        gpu=gpu,
        image=image,
        repository_checksum=ann.get(REPO_CHECKSUM, ""),
        config_checksum=ann.get(CONFIG_CHECKSUM, ""),
        current=current,
        engines=_engines(pod),
        triton_ready=None if view is None or view.error else view.ready,
        models=view.loaded() if view is not None and not view.error else {},
        triton_error=view.error if view is not None else None,
    )


def release_status(release, views: dict[str, TritonView], golden_checksum: str | None = None) -> ReleaseStatus:
    """The rows of ``release`` (``rollout.kube.Release``) and every disagreement, in words."""
    dep = release.deployment
    tmpl = dep.spec.template
    t_ann = tmpl.metadata.annotations or {}
    t_image = _container_image(tmpl.spec, SERVER_CONTAINER)
    rows = [
        pod_row(p, release.nodes.get(p.spec.node_name), t_ann, t_image, views.get(p.metadata.name))
        for p in sorted(release.pods, key=lambda p: p.metadata.name)
    ]
    want = dep.spec.replicas if dep.spec.replicas is not None else (dep.status.replicas or 0 if dep.status else 0)
    problems: list[str] = []
    warnings: list[str] = []
    repo_sum = t_ann.get(REPO_CHECKSUM, "")
    if not repo_sum:
        warnings.append(
            "the release has no repository checksum: set modelRepository.checksum to the build's "
            "(golden.json's repository_checksum) so pods can be told apart by what they serve"
        )
    if golden_checksum and repo_sum and golden_checksum != repo_sum:
        problems.append(f"the golden set is for repository {golden_checksum[:19]}, the release serves {repo_sum[:19]}")
    if len(rows) < want:
        problems.append(f"{len(rows)} pods, the Deployment wants {want}")
    for r in rows:
        if not r.current:
            problems.append(f"{r.pod}: not on the current pod template (old checksum or image): rollout in progress")
        if r.phase == "Terminating":
            problems.append(f"{r.pod}: terminating")
        elif not r.ready:
            problems.append(f"{r.pod}: not ready (phase {r.phase})")
        if r.restarts:
            warnings.append(f"{r.pod}: {r.restarts} restarts")
        if r.engines.startswith(("failed", "waiting")):
            problems.append(f"{r.pod}: engine build {r.engines}")
        if r.triton_error:
            problems.append(f"{r.pod}: Triton not reachable: {r.triton_error}")
        elif r.triton_ready is False:
            problems.append(f"{r.pod}: Triton says not ready")
    answered = [r for r in rows if r.triton_ready is not None]
    if answered:
        layouts = {r.pod: tuple(sorted((m, tuple(v)) for m, v in r.models.items())) for r in answered}
        common = Counter(layouts.values()).most_common(1)[0][0]
        for r in answered:
            if layouts[r.pod] != common:
                diff = _model_difference(dict(layouts[r.pod]), dict(common))
                problems.append(f"{r.pod}: loaded models differ from the other pods: {diff}")
        for r in answered:
            if not r.models or any(not v for v in r.models.values()):
                empty = sorted(m for m, v in r.models.items() if not v)
                problems.append(f"{r.pod}: models with no version loaded: {', '.join(empty) or 'all'}")
    products = {r.gpu for r in rows if r.gpu not in ("-", "?")}
    if len(products) > 1:
        warnings.append(
            f"pods run on {len(products)} GPU products ({', '.join(sorted(products))}): each built its own engines"
        )
    return ReleaseStatus(
        namespace=release.namespace,
        release=release.name,
        deployment=dep.metadata.name,
        want_replicas=want,
        repository_checksum=repo_sum,
        config_checksum=t_ann.get(CONFIG_CHECKSUM, ""),
        image=t_image,
        pods=rows,
        problems=problems,
        warnings=warnings,
    )


def _model_difference(mine: dict, common: dict) -> str:
    """What one pod's loaded versions (model -> versions) have that most pods' do not."""
    changed = [
        f"{m} versions {list(v)} (others: {list(common.get(m, ()))})" for m, v in mine.items() if v != common.get(m)
    ]
    return "; ".join(changed) or "models missing: " + ", ".join(sorted(set(common) - set(mine)))


def _engines_cell(r: PodRow) -> str:
    cell = r.engines.replace(f"{r.gpu} ", "") if r.gpu not in ("-", "?") else r.engines  # the GPU has a column
    return cell if len(cell) <= 60 else cell[:57] + "..."


def _short(checksum: str) -> str:
    return checksum.split(":", 1)[-1][:12] if checksum else "-"


def table(st: ReleaseStatus) -> str:
    """A human table, one line per pod, then every disagreement."""
    head = (
        f"release {st.release} in {st.namespace}: Deployment {st.deployment}, {st.want_replicas} replicas wanted\n"
        f"  current template: repository {_short(st.repository_checksum)}  config {_short(st.config_checksum)}  "
        f"image {st.image}"
    )
    cols = ["POD", "READY", "RESTARTS", "NODE", "GPU", "REPOSITORY", "CURRENT", "ENGINES", "TRITON", "MODELS"]
    rows = []
    for r in st.pods:
        triton = "unreachable" if r.triton_error else {True: "ready", False: "not ready", None: "-"}[r.triton_ready]
        versions = sorted({",".join(v) for v in r.models.values()})
        models = f"{len(r.models)} models, versions {'/'.join(versions)}" if r.models else "-"
        rows.append(
            [
                r.pod,
                "yes" if r.ready else "no",
                str(r.restarts),
                r.node or "-",
                r.gpu,
                _short(r.repository_checksum),
                "yes" if r.current else "NO",
                _engines_cell(r),
                triton,
                models,
            ]
        )
    widths = [max(len(str(x)) for x in col) for col in zip(cols, *rows, strict=False)]
    lines = [head, ""]
    for row in [cols, *rows]:
        lines.append("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip())
    lines.append("")
    if st.problems:
        lines.append(f"{len(st.problems)} problem{'s' if len(st.problems) != 1 else ''}:")
        lines += [f"  - {p}" for p in st.problems]
    else:
        lines.append("all pods agree: ready, on the current template, same models and versions")
    lines += [f"warning: {w}" for w in st.warnings]
    lines.append(NOT_ON_A_CLUSTER)
    return "\n".join(lines)
