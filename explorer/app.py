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
        form = {key: request.args.get(key, "") for key in ("q", "user", "viewed", "k")}
        mode = request.args.get("go")  # the button: "search" or "recommend"
        columns: list[Answer] = []
        error = None
        if mode in ("search", "recommend"):
            try:
                k = int(form["k"] or 10)
            except ValueError:
                k = 0  # explain.check_k names the field
            try:
                for n, rel in enumerate(releases):
                    if n == 0 and server:
                        answer = answer_from_server(rel, server, mode, form["q"], form["user"], form["viewed"], k)
                    elif mode == "search":
                        answer = rel.search(form["q"], form["user"], k)
                    else:
                        answer = rel.recommend(form["user"], form["viewed"], k)
                    columns.append(answer)
            except ExplorerError as err:
                error = str(err)
        return render_template(
            "explorer.html.j2",
            form=form,
            columns=columns,
            error=error,
            releases=releases,
            server=server,
            csp_nonce=g.csp_nonce,
        )

    return app


def content_security_policy(nonce: str) -> str:
    """No script from anywhere; the page's style block by this response's ``nonce``; forms post back here."""
    return (
        "default-src 'none'; script-src 'none'; "
        f"style-src 'nonce-{nonce}'; img-src 'self' data:; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
