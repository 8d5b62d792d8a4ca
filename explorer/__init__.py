"""The ranking explorer: type a query (or pick a user and an item being viewed) and see what a release ranks
and why (``explain.py``: the logic; ``app.py``: the Flask web app; ``python -m explorer``)."""
