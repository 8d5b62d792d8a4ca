"""The build report page and the ranking explorer, in a real headless Chromium (Debian's, driven by Playwright).

Screenshots go to ``$SHOPRANK_SCREENSHOTS`` when it is set (``make screenshots`` writes docs/screenshots/).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
from pathlib import Path

import pytest

from explorer.app import create_app
from explorer.explain import Release
from shoprank_client import RankingClient
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SMALL = REPO_ROOT / "build" / "small"


def chromium_path() -> str:
    for path in ("/usr/lib/chromium/chromium", shutil.which("chromium") or ""):
        if path and Path(path).exists():
            return path
    raise RuntimeError("no chromium: scripts/get_chromium.sh installs Debian's (make setup runs it)")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


def shot(page, name: str) -> None:
    folder = os.environ.get("SHOPRANK_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def test_the_report_page_opens_offline_and_shows_its_plots_and_tables(small_build, browser):
    # the page and the JSON beside it are written by the same build (later builds into build/small/, such as the
    # gpu target's, write both again)
    report = json.loads((SMALL / "build_report.json").read_text())
    page_file = SMALL / "build_report.html"
    assert page_file.exists()
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.route("**/*", lambda route: route.abort() if not route.request.url.startswith("file:") else route.continue_())
    page.goto(page_file.as_uri())  # offline: every request but the file itself is refused
    assert page.title() == f"shoprank build report: {report['shop']}"
    for plot in ("#plot-ndcg", "#plot-recall", "#plot-propensity"):
        width = page.eval_on_selector(plot, "img => img.complete ? img.naturalWidth : 0")
        assert width > 300, plot  # the embedded PNG decoded
    rows = page.locator("#views tr")
    assert rows.count() == 1 + sum(1 for k in report["ranker"]["test_views"] if k != "lists")
    served = page.locator("#views tr.served td").all_inner_texts()
    assert served[0] == "ranker" and f"{report['ranker']['test_views']['ranker']['ips'][0]:.4f}" in served[2]
    assert report["ranker"]["kind"] in page.locator("#kind").inner_text()
    assert report["golden"]["repository_checksum"] in page.locator("#golden-set").inner_text()
    assert "passed the data contract" in page.locator("#warnings").inner_text()
    shot(page, "report_page.png")
    page.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def explorer_url(small_repo, release_two, triton_server):
    """The explorer on a free port: the first column from the real tritonserver (the small build), the second
    the in-process release two."""
    from werkzeug.serving import make_server

    releases = [Release(small_repo, SMALL), Release(release_two, REPO_ROOT / "build" / "small-v2")]
    down = f"127.0.0.1:{free_port()}"  # nothing listens there
    servers = {"live": create_app(releases, server=triton_server.grpc_url), "down": create_app(releases[:1], down)}
    running = {}
    for name, app in servers.items():
        srv = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        running[name] = srv
    try:
        yield {
            **{name: f"http://127.0.0.1:{srv.server_port}" for name, srv in running.items()},
            "down_server": down,
            "second": releases[1].label,
        }
    finally:
        for srv in running.values():
            srv.shutdown()


def test_the_explorer_answers_a_query_as_the_sdk_does_explains_each_item_and_compares_releases(
    explorer_url, browser, triton_server
):

    query = "running shoes"
    with RankingClient(triton_server.grpc_url) as client:
        sdk = [int(i) for i in client.search_catalog(-1, query, k=8).item_ids]
    page = browser.new_page(viewport={"width": 1500, "height": 900})
    page.goto(explorer_url["live"])
    page.fill("#q", query)
    page.fill("#k", "8")
    page.click("#search")
    first = page.locator("#column-1 tr.item")
    shown = [int(x) for x in first.evaluate_all("rows => rows.map(r => r.dataset.itemId)")]
    assert shown == sdk  # the served ranking, through the SDK
    assert "the same top-k as the in-process pipeline" in page.locator("#column-1 .note").inner_text()
    for why in page.locator("#column-1 td.why").all_inner_texts()[::2]:
        assert why.startswith("similarity ") and why.count(";") >= 1  # the similarity term and what moved it
    assert all(t for t in page.locator("#column-1 td.why").all_inner_texts()[1::2])  # where retrieval found it
    assert page.locator(".column").count() == 2  # two releases side by side: the served one and release two
    assert page.locator("#column-2 h2").inner_text() == explorer_url["second"]
    assert page.locator("#column-2 tr.item").count() == 8
    shot(page, "explorer.png")
    page.close()


def test_the_explorer_says_what_is_wrong_with_a_blank_query_and_a_stopped_server(explorer_url, browser):
    page = browser.new_page()
    page.goto(explorer_url["live"])
    page.fill("#q", "   ")
    page.click("#search")
    assert page.locator("#error").inner_text().startswith("QUERY: blank")
    page.fill("#user", "no-such-user")
    page.fill("#q", "tent")
    page.click("#search")
    assert "USER_ID" in page.locator("#error").inner_text()
    page.goto(explorer_url["down"])
    page.fill("#q", "tent")
    page.click("#search")
    message = page.locator("#error").inner_text()
    assert message.startswith(f"the server at {explorer_url['down_server']} does not answer")
    page.close()
