"""A local stand-in for the parts of the Kubernetes API server that ``rollout/kube.py`` calls.

No kube-apiserver can run on these machines (../shared/PLATFORM.md), so this stands in for it, and the
tests say so. What it serves is built from the chart's real ``helm template`` output, as the client's
own model objects (``V1Deployment``, ``V1Pod``, ``V1Node``): the Deployment as rendered (with what the
API server adds: ``spec.replicas``, quantities as strings), pods made from its pod template as the
ReplicaSet controller would make them, with the status a kubelet would report. The pod proxy path
(``/api/v1/namespaces/NS/pods/POD:PORT/proxy/...``) is forwarded to a real local tritonserver per pod.
It checks the bearer token and the label selectors the client sends, so a wrong call fails the test.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import urllib3
from kubernetes import client

TOKEN = "stand-in-token"
METRICS_PORT = 8002  # the chart's metrics port: a pod proxy call to it goes to World.metrics
_API = client.ApiClient()


def _quantities_as_strings(obj):
    """The API server returns every resource quantity as a string (``1`` -> ``"1"``)."""
    if isinstance(obj, dict):
        return {
            k: {q: str(v) for q, v in val.items()}
            if k in ("limits", "requests") and isinstance(val, dict)
            else (_quantities_as_strings(val))
            for k, val in obj.items()
        }
    if isinstance(obj, list):
        return [_quantities_as_strings(x) for x in obj]
    return obj


def deployment_from(docs: list[dict], replicas: int, namespace: str = "shop") -> client.V1Deployment:
    """The rendered Deployment as the API server returns it: in its namespace, replicas set (as the HPA
    would), quantities as strings."""
    raw = next(d for d in docs if d["kind"] == "Deployment")
    raw = _quantities_as_strings(copy.deepcopy(raw))
    raw["spec"]["replicas"] = replicas
    raw["metadata"]["generation"] = 1
    raw["metadata"]["namespace"] = namespace
    return _API.deserialize(json.dumps(raw), "V1Deployment", "application/json")


def pod_from(
    dep: client.V1Deployment,
    name: str,
    node: str,
    ready: bool = True,
    restarts: int = 0,
    engines: tuple[int, str] | None = None,
    annotations: dict | None = None,
    image: str | None = None,
) -> client.V1Pod:
    """A pod of the Deployment's template, with the status a kubelet reports for a running pod.
    ``engines``: the engine-build init container's (exit code, termination message)."""
    assert dep.spec is not None and dep.metadata is not None
    tmpl = dep.spec.template
    assert tmpl.metadata is not None and tmpl.spec is not None
    meta = client.V1ObjectMeta(
        name=name,
        namespace=dep.metadata.namespace,
        labels=dict(tmpl.metadata.labels or {}),
        annotations={**(tmpl.metadata.annotations or {}), **(annotations or {})},
    )
    spec = tmpl.spec.model_copy(deep=True)
    spec.node_name = node
    if image is not None:
        spec.containers[0].image = image
    inits = []
    for ctr in spec.init_containers or []:
        code, msg = engines if (ctr.name == "build-engines" and engines) else (0, "")
        term = client.V1ContainerStateTerminated(exit_code=code, message=msg or None, reason="Completed")
        inits.append(
            client.V1ContainerStatus(
                name=ctr.name,
                image=ctr.image,
                image_id="",
                ready=False,
                restart_count=0,
                state=client.V1ContainerState(terminated=term),
            )
        )
    status = client.V1PodStatus(
        phase="Running",
        pod_ip="10.0.0.1",
        conditions=[client.V1PodCondition(type="Ready", status="True" if ready else "False")],
        init_container_statuses=inits,
        container_statuses=[
            client.V1ContainerStatus(
                name=c.name,
                image=c.image,
                image_id="",
                ready=ready,
                restart_count=restarts,
                state=client.V1ContainerState(running=client.V1ContainerStateRunning()),
            )
            for c in spec.containers
        ],
    )
    return client.V1Pod(metadata=meta, spec=spec, status=status)


def node(name: str, gpu_product: str | None) -> client.V1Node:
    labels = {"kubernetes.io/hostname": name} | ({"nvidia.com/gpu.product": gpu_product} if gpu_product else {})
    return client.V1Node(metadata=client.V1ObjectMeta(name=name, labels=labels))


def _matches(labels: dict, selector: str) -> bool:
    pairs = [s.split("=", 1) for s in selector.split(",") if s]
    return all(labels.get(k) == v for k, v in pairs)


@dataclass
class World:
    """What the stand-in serves. ``pod_states``: successive pod lists; each pods LIST moves one on
    (a rollout seen through repeated polls), the last one stays."""

    deployment: client.V1Deployment
    pod_states: list[list[client.V1Pod]]
    nodes: dict[str, client.V1Node] = field(default_factory=dict)
    backends: dict[str, str] = field(default_factory=dict)  # pod name -> http://host:port of its tritonserver
    metrics: dict[str, str] = field(default_factory=dict)  # pod name -> http://host:port of its metrics page
    # Called with the patched Deployment after a PATCH of its pod template: what the Deployment controller and
    # the kubelets would do next (new pods on the new template) is the test's to stand in for.
    on_patch: Callable[[client.V1Deployment], None] | None = None
    nodes_forbidden: bool = False
    calls: list[str] = field(default_factory=list)
    patches: list[dict] = field(default_factory=list)
    _lists: int = 0

    def pods(self) -> list[client.V1Pod]:
        return self.pod_states[min(self._lists, len(self.pod_states) - 1)]


class _Handler(BaseHTTPRequestHandler):
    world: World
    pool: urllib3.PoolManager  # the stand-in's own connections to the backends, closed when it stops

    def log_message(self, *args):  # quiet
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _obj(self, obj) -> None:
        self._send(200, json.dumps(_API.sanitize_for_serialization(obj)).encode())

    def _status(self, code: int, reason: str, message: str) -> None:
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "reason": reason,
            "message": message,
            "code": code,
        }
        self._send(code, json.dumps(body).encode())

    def _handle(self, method: str) -> None:
        w = self.world
        assert w.deployment.metadata is not None
        url = urlparse(self.path)
        w.calls.append(f"{method} {url.path}")
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._status(401, "Unauthorized", "no or wrong bearer token")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method in ("POST", "PATCH") else None
        selector = parse_qs(url.query).get("labelSelector", [""])[0]
        ns = w.deployment.metadata.namespace
        if m := re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods/([^/:]+):(\d+)/proxy(/.*)", url.path):
            backend = (w.metrics if m.group(3) == str(METRICS_PORT) else w.backends).get(m.group(2))
            if m.group(1) != ns or backend is None:
                return self._status(404, "NotFound", f'pods "{m.group(2)}" not found')
            try:
                resp = self.pool.request(
                    method, backend + m.group(4), body=body, headers={"Content-Type": "application/json"}
                )
            except urllib3.exceptions.HTTPError as err:
                return self._status(503, "ServiceUnavailable", f"error trying to reach service: {err}")
            return self._send(resp.status, resp.data, resp.headers.get("Content-Type", "application/json"))
        if method == "PATCH":
            return self._patch(url.path, body or b"")
        if method != "GET":
            return self._status(405, "MethodNotAllowed", method)
        if url.path == f"/apis/apps/v1/namespaces/{ns}/deployments":
            items = [w.deployment] if _matches(w.deployment.metadata.labels or {}, selector) else []
            return self._obj(client.V1DeploymentList(items=items))
        if url.path == f"/api/v1/namespaces/{ns}/pods":
            pods = [p for p in w.pods() if p.metadata is not None and _matches(p.metadata.labels or {}, selector)]
            w._lists += 1
            return self._obj(client.V1PodList(items=pods))
        if m := re.fullmatch(r"/api/v1/nodes/([^/]+)", url.path):
            if w.nodes_forbidden:
                return self._status(403, "Forbidden", 'nodes "x" is forbidden: cannot get resource "nodes"')
            if m.group(1) in w.nodes:
                return self._obj(w.nodes[m.group(1)])
            return self._status(404, "NotFound", f'nodes "{m.group(1)}" not found')
        if re.fullmatch(r"/api(s/apps)?/v1/namespaces/[^/]+/(pods|deployments)", url.path):
            return self._obj(client.V1PodList(items=[]) if "pods" in url.path else client.V1DeploymentList(items=[]))
        return self._status(404, "NotFound", url.path)

    def _patch(self, path: str, body: bytes) -> None:
        """A strategic merge patch of the Deployment's pod template annotations (what ``Cluster.patch_pod_template``
        sends); anything else is refused, so a wrong call fails the test."""
        w = self.world
        dep = w.deployment
        assert dep.metadata is not None and dep.spec is not None and dep.spec.template.metadata is not None
        if path != f"/apis/apps/v1/namespaces/{dep.metadata.namespace}/deployments/{dep.metadata.name}":
            return self._status(404, "NotFound", path)
        if self.headers.get("Content-Type") != "application/strategic-merge-patch+json":
            return self._status(415, "UnsupportedMediaType", str(self.headers.get("Content-Type")))
        patch = json.loads(body)
        annotations = patch.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations")
        if not isinstance(annotations, dict) or set(patch) != {"spec"}:
            return self._status(422, "Invalid", f"the stand-in applies pod template annotations only: {patch}")
        tmpl = dep.spec.template.metadata
        tmpl.annotations = {**(tmpl.annotations or {}), **annotations}
        dep.metadata.generation = (dep.metadata.generation or 0) + 1
        w.patches.append(annotations)
        if w.on_patch is not None:
            w.on_patch(dep)
        return self._obj(dep)

    def do_PATCH(self):
        self._handle("PATCH")

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")


class StandInApiServer:
    """Serves ``world`` on a free local port; ``kubeconfig(path)`` writes a kubeconfig pointing at it."""

    def __init__(self, world: World):
        self.pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(total=30))
        handler = type("Handler", (_Handler,), {"world": world, "pool": self.pool})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.world = world
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> StandInApiServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        # a kept-alive connection to a tritonserver would hold that server's shutdown for its whole exit timeout
        self.pool.clear()

    def kubeconfig(self, path) -> str:
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "standin", "cluster": {"server": self.url}}],
            "users": [{"name": "operator", "user": {"token": TOKEN}}],
            "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "operator"}}],
            "current-context": "standin",
        }
        path.write_text(json.dumps(cfg))
        return str(path)
