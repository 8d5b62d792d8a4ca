"""The ranking explorer's web app (Flask): one page with a form and the ranked items of one or two releases.

``create_app(releases, server=None)``: ``releases`` are ``explain.Release`` objects, shown side by side (the
current release and the previous one, for a rollout review); with ``server`` (``host:port`` of a running
tritonserver) the first column's ranking comes from that server through the SDK. Bad input and a server that
does not answer are shown on the page as a message; the app keeps serving.
"""

from __future__ import annotations

from flask import Flask, render_template, request

from explorer.explain import Answer, ExplorerError, Release, answer_from_server


def create_app(releases: list[Release], server: str | None = None) -> Flask:
    if not releases:
        raise ValueError("the explorer needs at least one release")
    app = Flask(__name__)

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
            "explorer.html.j2", form=form, columns=columns, error=error, releases=releases, server=server
        )

    return app
