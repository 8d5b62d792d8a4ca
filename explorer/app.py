"""The ranking explorer's web app (Flask): one page with a form and the ranked items of one or two releases.

``create_app(releases, server=None)``: ``releases`` are ``explain.Release`` objects, shown side by side (the
current release and the previous one, for a rollout review); with ``server`` (``host:port`` of a running
tritonserver) the first column's ranking comes from that server through the SDK. Bad input and a server that
does not answer are shown on the page as a message; the app keeps serving.

Everything the page shows from the visitor (the form) or from the shop's data (titles, categories, SKUs) is
escaped: the app's Jinja environment autoescapes every template, whatever its file name (Flask's default
escapes only ``.html``-like names), and no template marks data ``|safe``. Each response carries a
Content-Security-Policy that allows no script at all, and the page's one style block only by a nonce of
that response, so markup that ever slipped through could not run.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlencode

from flask import Flask, Response, g, render_template, request

from explorer.explain import Answer, ExplorerError, Release, answer_from_server


def create_app(releases: list[Release], server: str | None = None) -> Flask:
    if not releases:
        raise ValueError("the explorer needs at least one release")
    app = Flask(__name__)
    app.jinja_options = {**app.jinja_options, "autoescape": True}  # every template, whatever its name

    @app.before_request
    def nonce() -> None:
        g.csp_nonce = secrets.token_urlsafe(16)

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = content_security_policy(g.get("csp_nonce", ""))
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.get("/")
    def page():
        form = {key: request.args.get(key, "") for key in FORM}
        mode = request.args.get("go")  # the button: "search" or "recommend"
        columns: list[Answer] = []
        error = None
        if mode in ("search", "recommend"):
            try:
                k = int(form["k"] or 10)
            except ValueError:
                k = 0  # explain.check_k names the field
            try:
                options = options_from_form(form)
                for n, rel in enumerate(releases):
                    if n == 0 and server:
                        answer = answer_from_server(
                            rel, server, mode, form["q"], form["user"], form["viewed"], k, options
                        )
                    elif mode == "search":
                        answer = rel.search(form["q"], form["user"], k, options)
                    else:
                        answer = rel.recommend(form["user"], form["viewed"], k, options)
                    columns.append(answer)
            except ExplorerError as err:
                error = str(err)

        def link(**changes: str) -> str:
            """This page's address with ``changes`` to the form (a facet value selected, another page)."""
            return "?" + urlencode({**form, "go": mode or "search", **changes})

        return render_template(
            "explorer.html.j2",
            form=form,
            columns=columns,
            error=error,
            releases=releases,
            server=server,
            csp_nonce=g.csp_nonce,
            link=link,
            facet_link=lambda name, value: link(**facet_choice(name, value)),
            sorts=SORTS,
        )

    return app


# the form's fields: the request, then the listing options (runtime/options.py)
FORM = (
    "q",
    "user",
    "viewed",
    "k",
    "category",
    "brand",
    "attr",
    "pmin",
    "pmax",
    "sort",
    "per_group",
    "offset",
    "facets",
)
SORTS = ("relevance", "price_asc", "price_desc", "newest")
DEFAULT_FACETS = "brand,category,price"


def _number(form: dict[str, str], key: str, label: str, integer: bool = False) -> float | int | None:
    text = form.get(key, "").strip()
    if not text:
        return None
    try:
        return int(text) if integer else float(text)
    except ValueError:
        raise ExplorerError(f"{label}: {text!r} is not a number") from None


def options_from_form(form: dict[str, str]) -> dict:
    """The ``shoprank_options`` the form asks for; its words are checked by the server's own parser."""
    tree: dict = {}
    for key in ("category", "brand"):
        if form.get(key, "").strip():
            tree[key] = form[key].strip()
    attr = form.get("attr", "").strip()
    if attr:
        name, sep, value = attr.partition(":")
        if not sep or not name.strip() or not value.strip():
            raise ExplorerError(f"attribute: {attr!r} is not name:value (colour:black)")
        tree[name.strip()] = value.strip()
    price = {
        k: v
        for k, v in (("min", _number(form, "pmin", "price from")), ("max", _number(form, "pmax", "price below")))
        if v is not None
    }
    if price:
        tree["price"] = price
    options: dict = {"facets": [f.strip() for f in (form.get("facets") or DEFAULT_FACETS).split(",") if f.strip()]}
    if tree:
        options["filter"] = tree
    per_group = _number(form, "per_group", "per group", integer=True)
    if per_group is not None:
        options["per_group"] = per_group
    offset = _number(form, "offset", "offset", integer=True)
    if offset:
        options["offset"] = offset
    if form.get("sort") and form["sort"] != "relevance":
        options["sort"] = form["sort"]
    return options


def facet_choice(name: str, value: dict) -> dict[str, str]:
    """The form's change that selects a facet's value (and starts at the first page again)."""
    if name == "price":
        return {"pmin": str(value.get("min", "")), "pmax": str(value.get("max", "")), "offset": ""}
    if name.startswith("category"):
        return {"category": value["value"], "offset": ""}
    if name == "brand":
        return {"brand": value["value"], "offset": ""}
    return {"attr": f"{name}:{value['value']}", "offset": ""}


def content_security_policy(nonce: str) -> str:
    """No script from anywhere; the page's style block by this response's ``nonce``; forms post back here."""
    return (
        "default-src 'none'; script-src 'none'; "
        f"style-src 'nonce-{nonce}'; img-src 'self' data:; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
