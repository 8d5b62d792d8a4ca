"""Monitoring: promtool unit tests for every alert, and the scaling signal on a real Prometheus
scraping the real local tritonserver while load runs."""

import json
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import pytest
import yaml

from server.launcher import free_port
from shoprank_client import RankingClient
from tests.conftest import REPO_ROOT

TOOLS = REPO_ROOT / "build" / "tools"
FILES = REPO_ROOT / "helm" / "shoprank" / "files"
SIGNAL = "shoprank:queue_us_per_request:rate1m"


@pytest.fixture(scope="module", autouse=True)
def prometheus_tools():
    subprocess.run(["bash", str(REPO_ROOT / "scripts" / "get_prometheus.sh")], check=True, capture_output=True)


@pytest.mark.unit
def test_rules_are_valid_and_every_alert_has_a_promtool_test():
    check = subprocess.run(
        [str(TOOLS / "promtool"), "check", "rules", str(FILES / "rules.yaml")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    out = subprocess.run(
        [str(TOOLS / "promtool"), "test", "rules", "rules_test.yaml"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT / "tests" / "prometheus",
    )
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr
    alerts = {
        r["alert"]
        for g in yaml.safe_load((FILES / "rules.yaml").read_text())["groups"]
        for r in g["rules"]
        if "alert" in r
    }
    tested = {
        t["alertname"]
        for case in yaml.safe_load((REPO_ROOT / "tests" / "prometheus" / "rules_test.yaml").read_text())["tests"]
        for t in case.get("alert_rule_test", [])
        if t.get("exp_alerts")
    }
    assert alerts and alerts == tested, alerts ^ tested


def query(url: str, expr: str) -> dict:
    with urllib.request.urlopen(f"{url}/api/v1/query?query={urllib.parse.quote(expr)}", timeout=5) as resp:
        return json.loads(resp.read())


def value(url: str, expr: str) -> float:
    result = query(url, expr)["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


@pytest.fixture(scope="module")
def prometheus(triton_server, tmp_path_factory):
    """A real Prometheus scraping the session's tritonserver every second, with the chart's rules.

    The rules' 1-minute windows are shortened to 5 s here so that a test of seconds can watch the
    signal rise and fall; everything else in the expressions is the shipped file.
    """
    d = tmp_path_factory.mktemp("prometheus")
    (d / "rules.yaml").write_text((FILES / "rules.yaml").read_text().replace("[1m]", "[5s]").replace("[5m]", "[10s]"))
    metrics = triton_server.metrics_url.split("//", 1)[1].split("/", 1)[0]
    (d / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(d / "rules.yaml")],
                "scrape_configs": [{"job_name": "triton", "static_configs": [{"targets": [metrics]}]}],
            }
        )
    )
    port = free_port()
    with open(d / "log.txt", "w") as log:  # the child keeps its own copy of the handle
        proc = subprocess.Popen(
            [
                str(TOOLS / "prometheus"),
                f"--config.file={d / 'prometheus.yml'}",
                f"--storage.tsdb.path={d / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if urllib.request.urlopen(f"{url}/-/ready", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.triton
@pytest.mark.slow
def test_scaling_signal_rises_with_load_and_falls_after(prometheus, triton_server, known_ids):

    users, items = known_ids
    time.sleep(4)
    idle_before = value(prometheus, SIGNAL)
    stop = threading.Event()

    def shopper(i):
        with RankingClient(triton_server.grpc_url, timeout_s=30) as client:
            while not stop.is_set():
                client.search(int(users[i % len(users)]), "waterproof hiking boots for women", items[:300], 10)

    threads = [threading.Thread(target=shopper, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    peak = 0.0
    try:
        for _ in range(12):
            time.sleep(1)
            peak = max(peak, value(prometheus, SIGNAL))
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    time.sleep(8)
    after = value(prometheus, SIGNAL)
    assert peak > 1000, f"queue time per request under load was only {peak:.0f} us"
    assert peak > 10 * max(idle_before, 1.0)
    assert after < peak / 10, f"signal stayed at {after:.0f} us after the load (peak {peak:.0f})"
    assert value(prometheus, "shoprank:request_ms:rate5m") >= 0


@pytest.mark.triton
@pytest.mark.slow
def test_every_dashboard_and_alert_expression_runs(prometheus):
    dashboard = json.loads((FILES / "dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [r["expr"] for g in yaml.safe_load((FILES / "rules.yaml").read_text())["groups"] for r in g["rules"]]
    for expr in exprs:
        assert query(prometheus, expr)["status"] == "success", expr
