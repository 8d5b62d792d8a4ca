"""The build report page and the ranking explorer, in a real headless Chromium (Debian's, driven by Playwright).

Screenshots go to ``$SHOPRANK_SCREENSHOTS`` when it is set (``make screenshots`` writes docs/screenshots/).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlencode

import pyarrow as pa
import pytest

from builders import report_page, steps
from builders.data import config as cfg_mod
from builders.data.dataset import ShopData
from explorer.app import create_app
from explorer.explain import Release
from shoprank_client import RankingClient
from tests import shops
from tests.conftest import REPO_ROOT
from tests.helpers import HOSTILE, script_surfaces

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


def hostile_shop_work(root: Path) -> Path:
    """A work folder whose data step ran on the grocery shop with hostile titles and an event naming a hostile
    SKU the catalogue does not have (the data contract warns about it, quoting the SKU)."""
    catalogue, customers, events = shops.generate(n_items=600, n_users=100, n_sessions=1500)
    names = catalogue.column("name").to_pylist()
    catalogue = catalogue.set_column(
        catalogue.schema.get_field_index("name"),
        "name",
        pa.array([f"{HOSTILE[i % len(HOSTILE)]} {n}" for i, n in enumerate(names)]),
    )
    skus = [HOSTILE[0] if s == "SKU-99999-1KG" else s for s in events.column("item_id").to_pylist()]
    events = events.set_column(events.schema.get_field_index("item_id"), "item_id", pa.array(skus))
    config = cfg_mod.load(shops.write(root / "files", (catalogue, customers, events)))
    steps.data(config, root / "work" / "data")
    return root / "work"


def test_the_report_page_shows_hostile_warnings_and_names_as_text_and_runs_nothing(
    small_build, browser, tmp_path_factory
):
    work = hostile_shop_work(tmp_path_factory.mktemp("hostile-shop"))
    problems = json.loads((work / "data" / "validation.json").read_text())["problems"]
    assert any(HOSTILE[0] in p["message"] and p["level"] == "warning" for p in problems)  # quoting the SKU
    report = {**json.loads((SMALL / "build_report.json").read_text()), "shop": HOSTILE[1]}
    report["repository"] = {**report["repository"], "out": HOSTILE[3]}
    page_file = report_page.write(report, work)
    assert script_surfaces(page_file.read_text()) == []
    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(page_file.as_uri())
    assert HOSTILE[0] in page.locator("#warnings").inner_text()  # shown as text
    assert HOSTILE[1] in page.locator("h1").inner_text() and page.title().endswith(HOSTILE[1])
    assert page.evaluate("typeof window.__xss") == "undefined" and dialogs == []
    assert page.eval_on_selector("#plot-ndcg", "img => img.naturalWidth") > 300  # the policy lets its PNGs in
    page.close()


@pytest.fixture(scope="module")
def hostile_explorer(small_repo, tmp_path_factory):
    """The explorer over the small build, its titles, categories and SKUs replaced by hostile text."""
    from werkzeug.serving import make_server

    work = tmp_path_factory.mktemp("hostile-explorer")
    shop = ShopData.load(SMALL / "data")
    shop.item_titles = [f"{HOSTILE[i % len(HOSTILE)]} {t}" for i, t in enumerate(shop.item_titles)]
    shop.categories = [f"{HOSTILE[i % len(HOSTILE)]} {c}" for i, c in enumerate(shop.categories)]
    shop.item_keys = [f"{HOSTILE[i % len(HOSTILE)]}-{i}" for i in range(len(shop.item_ids))]
    shop.save(work / "data")
    srv = make_server("127.0.0.1", 0, create_app([Release(small_repo, work)]), threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_port}"
    finally:
        srv.shutdown()


def test_the_explorer_shows_hostile_data_and_input_as_text_and_runs_nothing(hostile_explorer, browser):
    page = browser.new_page(viewport={"width": 1500, "height": 900})
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{hostile_explorer}/?{urlencode({'q': 'tent', 'k': '12', 'go': 'search'})}")
    cells = " ".join(page.locator("#column-1 tr.item").all_inner_texts())
    assert page.locator("#column-1 tr.item").count() == 12
    assert all(p in cells for p in HOSTILE)  # hostile titles, categories and SKUs, shown as text
    for payload in HOSTILE:
        for form in (
            {"q": payload, "go": "search"},
            {"q": "tent", "user": payload, "go": "search"},  # an unknown user id, echoed in the error
            {"viewed": payload, "go": "recommend"},
            {"q": "tent", "k": payload, "go": "search"},
        ):
            response = page.goto(f"{hostile_explorer}/?{urlencode(form)}")
            assert response is not None and "script-src 'none'" in response.headers["content-security-policy"]
            for field, value in form.items():
                if field != "go":
                    assert page.input_value(f"#{field}") == value  # the form shows what was typed, as typed
            if form.get("user") or form.get("viewed"):
                assert payload in page.locator("#error").inner_text()  # the message repeats it, as text
    assert page.evaluate("typeof window.__xss") == "undefined" and dialogs == []
    page.close()


LOCUST_REPORT = """
import json, sys
from locust import User, task
from locust.env import Environment
from locust.html import get_html_report

class Shopper(User):
    @task
    def idle(self):
        pass

env = Environment(user_classes=[Shopper], host="grpc://127.0.0.1:8001")
env.create_local_runner()
for payload in json.loads(sys.argv[2]):  # failures as the locustfile reports them: the server's message
    env.events.request.fire(
        request_type="grpc", name=payload, response_time=1.0, response_length=0,
        exception=RuntimeError("INVALID_ARGUMENT: QUERY: " + payload), context={},
    )
open(sys.argv[1], "w").write(get_html_report(env))
"""


def test_a_locust_report_shows_hostile_names_and_failures_as_text_and_runs_nothing(browser, tmp_path):
    """Locust's own HTML report (``make loadtest``): a request name or a server error quoting a shopper's
    query is data there too (a subprocess: importing locust patches this process with gevent)."""
    out = tmp_path / "report.html"
    subprocess.run([sys.executable, "-c", LOCUST_REPORT, str(out), json.dumps(HOSTILE)], check=True, timeout=120)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(out.as_uri())
    page.wait_for_selector("text=Failures Statistics")
    text = page.locator("body").inner_text()
    assert all(payload in text for payload in HOSTILE)  # shown as text
    assert page.evaluate("typeof window.__xss") == "undefined" and dialogs == []
    page.close()


@pytest.fixture(scope="module")
def fashion_explorer(fashion_build, redis_server, tmp_path_factory):
    """The explorer over the fashion shop, its first column from a real tritonserver that reads a real Redis
    holding one merchandising rule (a hidden item), its second the same release in process (no rules)."""
    from werkzeug.serving import make_server

    from online.rules import resolve
    from online.writer import OnlineWriter
    from runtime.online_store import OnlineSettings, connect
    from tests.conftest import online_tritonserver

    repo, items = fashion_build
    writer = OnlineWriter(connect(OnlineSettings(url=redis_server.url, timeout_s=2)), prefix="explorer")
    writer.seed(repo)
    hidden = next(  # a black dress under 120 in stock: among the candidates of the test's request
        it["sku"]
        for it in items
        if it["category"] == "Women > Dresses"
        and "colour:black" in it["attributes"]
        and it["price"] < 120
        and it["stock"]
    )
    writer.set_rules(resolve(json.dumps({"rules": [{"id": "hide-one", "kind": "hide", "items": [hidden]}]}), repo))
    env = {"SHOPRANK_ONLINE_URL": redis_server.url, "SHOPRANK_ONLINE_PREFIX": "explorer"}
    release = Release(repo, REPO_ROOT / "build" / "fashion-small")
    try:
        with online_tritonserver(repo, env, tmp_path_factory.mktemp("explorer-logs")) as server:
            srv = make_server("127.0.0.1", 0, create_app([release, release], server=server.grpc_url), threaded=True)
            threading.Thread(target=srv.serve_forever, daemon=True).start()
            try:
                yield f"http://127.0.0.1:{srv.server_port}", {it["sku"]: it for it in items}, hidden
            finally:
                srv.shutdown()
    finally:
        writer.clear()


def test_the_explorer_filters_pages_and_counts_facets_with_groups_chips_and_rules(fashion_explorer, browser):
    url, shop, hidden = fashion_explorer
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    page.goto(url)
    page.fill("#q", "black dress")
    page.fill("#pmax", "120")
    page.fill("#facets", "brand,colour,size,price")
    page.click("#search")
    rows = page.locator("#column-1 tr.item")
    skus = [s.strip() for s in page.locator("#column-1 tr.item code").all_inner_texts()]
    assert rows.count() == 10 and all(shop[s]["price"] < 120 for s in skus)
    assert all("colour:black" in shop[s]["attributes"] for s in skus)  # the understood colour, applied
    groups = rows.evaluate_all("rows => rows.map(r => r.dataset.group)")
    assert groups == [shop[s]["item_group_id"] for s in skus] and len(set(groups)) == 10  # one tile a style
    chips = page.locator("#column-1 .chip").all_inner_texts()
    assert "colour: black" in chips and any(c.startswith("category") and "not applied" in c for c in chips)
    assert page.locator("#column-1 .rule").all_inner_texts() == ["hide-one"]  # the server's store has the rule
    assert hidden not in skus
    assert page.locator("#column-2 .rule").count() == 0  # the in-process column reads no online store
    matches = int(page.locator("#column-1 .matches").inner_text())
    page.click("#next-1")
    second = [s.strip() for s in page.locator("#column-1 tr.item code").all_inner_texts()]
    assert second and not set(second) & set(skus)
    assert page.locator("#column-1 tr.item td").first.inner_text() == "11"
    brand = page.locator('#column-1 .facet[data-facet="brand"] li a').first
    name = brand.inner_text()
    count = int(page.locator('#column-1 .facet[data-facet="brand"] li').first.inner_text().rsplit("(", 1)[1][:-1])
    brand.click()  # a facet value: its filter, from the first page
    chosen = [s.strip() for s in page.locator("#column-1 tr.item code").all_inner_texts()]
    assert len(chosen) == min(10, count) and all(shop[s]["brand"] == name for s in chosen)
    # the count was over the first relevant set; selected, retrieval reaches deeper among that brand's items
    assert count <= int(page.locator("#column-1 .matches").inner_text()) and count <= matches
    shot(page, "explorer_listing.png")
    page.fill("#attr", "colour")
    page.click("#search")
    assert page.locator("#error").inner_text().startswith("attribute:")
    page.close()
