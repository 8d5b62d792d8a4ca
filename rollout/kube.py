"""The only module that talks to the Kubernetes API (the official ``kubernetes`` client).

Everything else in ``rollout/`` takes the client's own model objects (``V1Deployment``, ``V1Pod``,
``V1Node``) and a transport per pod, so it is tested without a cluster on objects built from the
chart's rendered manifests.

How each pod is reached: the API server's **pod proxy** (``/api/v1/namespaces/NS/pods/POD:PORT/proxy/...``),
to Triton's HTTP port. Why the proxy and not a port-forward: one HTTP request per call with the
operator's own credentials and RBAC (``pods/proxy``), no local ports, no long-lived SPDY/websocket
stream per pod, the same from a laptop and from a pipeline's in-cluster Job. Its cost: it carries
HTTP only (hence Triton's HTTP/JSON endpoint, not gRPC), and the connection to the pod comes from the
control plane, so the chart's NetworkPolicy must admit it (``networkPolicy.allowApiServer``). Where
that is not wanted, ``kubectl port-forward`` each pod and pass ``verify --url``.

NOT RUN AGAINST A REAL CLUSTER on the project's machines (no kube-apiserver can run there): the tests
run this module against a local HTTP stand-in for the API server that serves objects built from the
chart's rendered manifests and forwards the pod proxy path to real local tritonservers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from rollout.triton_http import Transport, Unreachable
from runtime.errors import ShoprankError

CHART = "shoprank"
SERVER_CONTAINER = "tritonserver"
DEFAULT_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}


class KubeError(ShoprankError, RuntimeError):
    """The API server refused or could not be reached; the message says what was asked and why."""


@dataclass
class Release:
    """What the API server says about one release: its Deployment, its pods, their nodes."""

    namespace: str
    name: str
    deployment: object  # V1Deployment
    pods: list  # V1Pod
    nodes: dict  # node name -> V1Node, or None where the node could not be read (RBAC: nodes get)

    @property
    def deployment_name(self) -> str:
        return self.deployment.metadata.name  # type: ignore[attr-defined]


class Cluster:
    def __init__(self, api_client, timeout_s: float = 10.0):
        from kubernetes import client

        self.api = api_client
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.timeout_s = timeout_s

    @classmethod
    def connect(cls, context: str | None = None, kubeconfig: str | None = None, in_cluster: bool = False) -> Cluster:
        """From a kubeconfig (its current or the named context) or the pod's service account."""
        from kubernetes import client, config

        try:
            if in_cluster:
                config.load_incluster_config()
            else:
                config.load_kube_config(config_file=kubeconfig, context=context)
        except config.ConfigException as err:
            where = "in-cluster service account" if in_cluster else f"kubeconfig {kubeconfig or '~/.kube/config'}"
            raise KubeError(f"cannot load the {where}: {err}") from None
        return cls(client.ApiClient())

    def _call(self, what: str, fn, *args, **kwargs):
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, _request_timeout=self.timeout_s, **kwargs)
        except ApiException as err:
            raise KubeError(f"{what}: HTTP {err.status} {err.reason}") from None
        except HTTPError as err:
            raise KubeError(f"{what}: {err}") from None

    def _list(self, fn, kind: str, namespace: str, selector: str) -> list:
        return self._call(f"list {kind} -l {selector} -n {namespace}", fn, namespace, label_selector=selector).items

    def release(self, namespace: str, name: str) -> Release:
        """The release's Deployment (chart labels), its pods (the Deployment's selector) and their nodes."""
        from kubernetes.client.exceptions import ApiException

        selector = f"app.kubernetes.io/instance={name},app.kubernetes.io/name={CHART}"
        deps = self._list(self.apps.list_namespaced_deployment, "deployments", namespace, selector)
        if not deps:
            raise KubeError(f"no Deployment of release {name!r} in namespace {namespace!r} (labels {selector})")
        dep = deps[0]
        match = dep.spec.selector.match_labels or {}
        pod_selector = ",".join(f"{k}={v}" for k, v in sorted(match.items()))
        pods = self._list(self.core.list_namespaced_pod, "pods", namespace, pod_selector)
        nodes: dict = {}
        for pod in pods:
            node = pod.spec.node_name
            if node and node not in nodes:
                try:
                    nodes[node] = self.core.read_node(node, _request_timeout=self.timeout_s)
                except ApiException:
                    nodes[node] = None  # no "get nodes" permission: the GPU product shows as unknown
        return Release(namespace, name, dep, pods, nodes)

    def patch_pod_template(self, namespace: str, deployment: str, annotations: dict[str, str]) -> None:
        """Set annotations on the Deployment's pod template: a changed value rolls its pods (a new ReplicaSet),
        as ``kubectl rollout restart`` does. A strategic merge patch: the template's other annotations stay."""
        body = {"spec": {"template": {"metadata": {"annotations": annotations}}}}
        self._call(
            f"patch deployment {deployment} -n {namespace}",
            self.apps.patch_namespaced_deployment,
            deployment,
            namespace,
            body,
        )

    def transports(self, release: Release, port_name: str = "http") -> dict[str, Transport]:
        """A transport to each running pod's named Triton port (``http``, ``metrics``), through the pod proxy."""
        return {
            p.metadata.name: self.proxy(release.namespace, p.metadata.name, pod_port(p, port_name))
            for p in sorted(release.pods, key=lambda p: p.metadata.name)
            if p.metadata.deletion_timestamp is None and p.status is not None and p.status.pod_ip
        }

    def proxy(self, namespace: str, pod: str, port: int) -> Transport:
        """A transport to ``pod:port`` through the API server's pod proxy."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        base = f"/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy"

        def send(method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
            headers = {"Content-Type": "application/octet-stream", "Accept": "application/json"}
            try:
                request = self.api.param_serialize(
                    method, base + path, header_params=headers, body=body, auth_settings=["BearerToken"]
                )
                resp = self.api.call_api(*request, _request_timeout=self.timeout_s)
                data = resp.read()
            except (ApiException, HTTPError) as err:
                raise Unreachable(f"pod proxy {pod}:{port}: {err}") from None
            if resp.status >= 500 and _is_status(data):
                # The API server's own answer (it could not reach the pod), not Triton's.
                raise Unreachable(f"pod proxy {pod}:{port}: HTTP {resp.status} {json.loads(data).get('message', '')}")
            return resp.status, data

        return send


def pod_port(pod, name: str = "http") -> int:
    """The Triton container's port of that name (the chart names them http, grpc, metrics)."""
    for ctr in pod.spec.containers or []:
        if ctr.name == SERVER_CONTAINER:
            for port in ctr.ports or []:
                if port.name == name:
                    return int(port.container_port)
    return DEFAULT_PORTS[name]


def _is_status(data: bytes) -> bool:
    try:
        return json.loads(data).get("kind") == "Status"
    except (ValueError, AttributeError):
        return False
