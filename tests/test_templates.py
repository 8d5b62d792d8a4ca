"""Every template the project renders, with hostile values in every field: shown as text, never markup.

The values are what a marketplace seller could write into a title, a category or a SKU, and what a crafted
link could put into the explorer's form (``tests.helpers.HOSTILE``). A page is inert when nothing in it could
run script (``script_surfaces``); each payload must also be on the page as text, so escaping, not dropping,
is what made it inert.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import jinja2
import pytest

from builders import report_page
from explorer.app import create_app
from explorer.explain import Answer, ExplorerError, Item, Release
from tests.conftest import REPO_ROOT
from tests.helpers import HOSTILE, script_surfaces, shown_text

pytestmark = pytest.mark.unit
H = " ".join(HOSTILE)


def hostile_report() -> dict:
    """A build report whose every free-text field (shop, paths, kinds, list kinds, groups) is hostile."""
    view = {"logged": [0.5, 0.4, 0.6], "ips": [0.3, 0.2, 0.4], "ips_vs_popularity": [0.01, 0.0, 0.02]}
    q = {"ndcg@10": 0.5, "ndcg@10_true": 0.9}
    return {
        "shop": H,
        "target": "cpu",
        "profile": None,
        "repository": {"out": H},
        "data": {"items": 3, "users": 2, "lists": 4, "search_lists": 1, "impressions": 9, "clicks": 2, "purchases": 1},
        "ranker": {
            "kind": H,
            "selection": H,
            "kinds": {H: {"val_ndcg@10_selection": 0.4}},
            "test_views": {"lists": 4, H: view, "popularity": {"logged": [0.4, 0.3, 0.5], "ips": [0.2, 0.1, 0.3]}},
            "test_by_list_kind": {H: {"lists": 2, "ranker": q, "popularity": q, "covisitation": q, "click_prior": q}},
            "test_by_user": {H: {"lists": 2, "ranker": q, "popularity": q}},
            "similarity": {
                H: {"lists": 2, "ndcg@10_logged_with_similarity": 0.5, "ndcg@10_logged_without_similarity": 0.4}
            },
        },
        "golden": {"requests": 3, "repository_checksum": H},
        "published_variants": {H: {"variant": H}},
    }


def report_work(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    problems = [{"level": "warning", "file": "items.csv", "column": "title", "message": p} for p in HOSTILE]
    (tmp_path / "data" / "validation.json").write_text(json.dumps({"problems": problems, "summary": {}}))
    return tmp_path


def hostile_answer() -> Answer:
    item = Item(0, H, H, 1.0, 1, 0.5, 0.1, moved_by=[(H, 0.2)], found=H, key=H, group=H + "-group", variants=2)
    info = {
        "matches": 30,
        "offset": 10,
        "facets": {H: [{"value": H, "count": 3}], "price": [{"value": H, "count": 1, "min": 1.0, "max": 2.0}]},
        "understood": {"chips": [{"field": H, "value": H, "text": H, "applied": True}], "mode": "filter"},
        "rules": [H],
    }
    return Answer(release=H, model=H, items=[item], candidates=1, note=H, info=info)


def render_explorer(template, form: dict) -> str:
    from urllib.parse import urlencode

    def link(**changes: object) -> str:
        return "?" + urlencode({**form, **changes})

    return template.render(
        form=form,
        columns=[hostile_answer()],
        error=H,
        releases=[SimpleNamespace(label=H)],
        server=H,
        csp_nonce="n",
        link=link,
        facet_link=lambda name, value: link(facet=name, value=value["value"]),
        sorts=("relevance", H),
    )


def explorer_page() -> str:
    app = create_app([cast(Release, SimpleNamespace(label=H))])  # the template reads only its label
    template = app.jinja_env.get_template("explorer.html.j2")
    form = {key: H for key in ("q", "user", "viewed", "category", "brand", "attr", "pmin", "pmax", "sort", "facets")}
    return render_explorer(template, {**form, "k": "10"})


def assert_inert_and_shown(html: str) -> None:
    assert script_surfaces(html) == []
    text = shown_text(html)
    for payload in HOSTILE:
        assert payload in text  # escaped and shown, not dropped


def test_every_template_of_the_project_is_covered_here():
    found = {p.relative_to(REPO_ROOT).as_posix() for p in REPO_ROOT.glob("*/templates/*") if p.is_file()}
    assert found == {"explorer/templates/explorer.html.j2", "builders/templates/report.html.j2"}


def test_the_explorer_page_shows_hostile_values_as_text():
    assert_inert_and_shown(explorer_page())


def test_the_report_page_shows_hostile_values_as_text(tmp_path):
    assert_inert_and_shown(report_page.render(hostile_report(), report_work(tmp_path)))


def test_the_check_finds_the_payloads_when_nothing_escapes_them(tmp_path):
    """The same pages rendered without autoescaping fail the check: the tests above can fail."""
    raw = jinja2.Environment(loader=jinja2.FileSystemLoader(REPO_ROOT / "explorer" / "templates"), autoescape=False)
    page = render_explorer(raw.get_template("explorer.html.j2"), {"q": H, "user": "", "viewed": "", "k": ""})
    found = script_surfaces(page)
    assert "<script>" in found and "<svg>" in found and any("onerror" in f for f in found)


def test_the_explorer_escapes_the_form_and_errors_and_forbids_inline_script():
    """Through Flask: a hostile query echoed in the form and in an error message, and the response's policy."""

    class Refusing:
        label = H

        def search(self, query: str, user: str, k: int, options: object = None) -> Answer:
            raise ExplorerError(f"USER_ID: {user} is not a user this build knows")

    client = create_app([Refusing()]).test_client()
    for payload in HOSTILE:
        response = client.get("/", query_string={"q": payload, "user": payload, "viewed": payload, "go": "search"})
        html = response.get_data(as_text=True)
        assert response.status_code == 200 and script_surfaces(html) == []
        assert payload in shown_text(html)
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'none'" in policy and "unsafe-inline" not in policy
        nonce = policy.split("'nonce-")[1].split("'")[0]
        assert f'<style nonce="{nonce}">' in html  # the page's own style, by this response's nonce only


def test_the_report_page_carries_a_policy_with_no_script(tmp_path):
    html = report_page.render(hostile_report(), report_work(tmp_path))
    assert "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; script-src 'none';" in html
