"""What the ranking explorer shows, as plain functions over a built repository (no web code here).

``Release`` reads one release of a repository (a build's, or one version folder of a served one) through the
in-process pipeline (``builders.repository.pipeline``), the same files and code the server runs, and the
build's own item table (titles, categories, prices, stock) from its work folder. ``Release.search`` and
``Release.recommend`` answer like ``search_catalog`` and ``recommend_catalog`` and explain every item:

* **why this score**: the served score is ``logit + sim_weight * z(cos)``. The similarity term is shown as
  it is. Each of the ranker's dense features is then replaced, for that item alone, by its mean over the
  request's candidates, and the ranker is run again: the change in the item's score is what that feature
  moved it by, against an average candidate of the same request (the three largest are shown). The
  categorical inputs (user, item, category ids) are not replaced: an id has no mean.
* **where retrieval found it**: among the items clicked after the query (the query statistics), at rank r
  of the nearest items to the query's embedding, co-visited with the viewed or recent items, or as a
  popular item filling the list.

``answer_from_server`` takes the ranked ids from a running server through the SDK instead (the explanation is
still computed in-process from the same release's files), and turns a server that does not answer into a
clear message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from builders.data.dataset import ShopData
from builders.repository.pipeline import InProcessPipeline
from runtime import contract as c
from runtime.errors import InvalidInput, ShoprankError
from runtime.scoring import similarity
from shoprank_client import RankingClient, RankingError, Unavailable
from shoprank_client.ids import stable_id

TOP_FEATURES = 3
ANONYMOUS = "leave it blank for an anonymous visitor"
CO_VISITED = "co-visited with the viewed or recent items"
NEAREST_OR_POPULAR = "nearest to the recommendation vector, or popular"
MAX_K = 50


class ExplorerError(ShoprankError, ValueError):
    """Bad input or an unavailable source: the message is shown on the page as it is."""


@dataclass
class Item:
    item_id: int  # the int64 id the models use (a string-SKU shop's: the stable hash of the SKU, ``key``)
    title: str
    category: str
    price: float
    in_stock: int
    score: float
    similarity_term: float
    moved_by: list[tuple[str, float]] = field(default_factory=list)  # (feature, score change) largest first
    found: str = ""
    key: str = ""  # the shop's own SKU, where it has string ids
    group: str = ""  # the variant group it represents (item_group_id), and how many of its variants matched
    variants: int = 1


@dataclass
class Answer:
    release: str
    model: str
    items: list[Item]
    candidates: int
    note: str = ""
    info: dict = field(default_factory=dict)  # RESULT_INFO: matches, facets, understood chips, applied rules


def versions(repo: Path) -> list[int]:
    """The version folders of ``repo``'s ranker on disk, newest first."""
    folder = repo / c.RANKER
    return sorted((int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()), reverse=True)


class Release:
    """One release: ``repo`` at ``version`` (default: the newest on disk), with the build's work folder ``work``
    for the item table."""

    def __init__(self, repo: Path, work: Path, version: int | None = None):

        self.repo = Path(repo)
        self.version = version or versions(self.repo)[0]
        self.pipeline = InProcessPipeline(self.repo, self.version)
        self.shop = ShopData.load(Path(work) / "data")
        golden = self.repo / "golden.json"
        checksum = json.loads(golden.read_text()).get("repository_checksum", "") if golden.exists() else ""
        self.label = f"{self.repo} v{self.version}" + (f" ({checksum[:19]})" if checksum else "")
        self.row_of = {int(i): r for r, i in enumerate(self.shop.item_ids.tolist())}  # id -> the build's table row
        self.users = set(self.shop.user_ids.tolist())
        manifest = json.loads((self.repo / c.SEARCH_FEATURES / str(self.version) / "manifest.json").read_text())
        self.string_users = manifest.get("ids", {}).get("user") == "string"  # user ids typed as the shop's own
        keys = self.shop.item_keys  # a string-SKU shop: its SKUs are typed in the form and shown on the page
        ids = self.shop.item_ids.tolist()
        self.id_of_key = {str(k): int(i) for k, i in zip(keys, ids, strict=True)} if keys else {}

    # -- requests -----------------------------------------------------------------------------------
    def user_id(self, user: str) -> int:
        """The int64 user id of the form's text: blank is an anonymous visitor (-1); else a known id."""
        text = user.strip()
        if not text:
            return -1
        if self.string_users:
            uid = stable_id(text)
        else:
            try:
                uid = int(text)
            except ValueError:
                raise ExplorerError(f"USER_ID: {text!r} is not a number ({ANONYMOUS})") from None
        if uid not in self.users:
            raise ExplorerError(f"USER_ID: {text} is not a user this build knows ({ANONYMOUS})")
        return uid

    def item_id(self, text: str, name: str) -> int:
        """The int64 id of an item typed in the form: the shop's SKU (string-id shops) or the id."""
        text = text.strip()
        if text in self.id_of_key:
            return self.id_of_key[text]
        try:
            iid = int(text)
        except ValueError:
            kind = "a SKU of this shop or an item id" if self.id_of_key else "an item id (a number)"
            raise ExplorerError(f"{name}: {text!r} is not {kind}") from None
        if iid not in self.row_of:
            raise ExplorerError(f"{name}: item {iid} is not in this build's catalogue")
        return iid

    def search(self, query: str, user: str = "", k: int = 10, options: dict | None = None) -> Answer:
        """``options``: the request's ``shoprank_options`` (filters, groups, page, sort, facets)."""
        if not query.strip():
            raise ExplorerError("QUERY: blank: type what a shopper would search for")
        uid, k = self.user_id(user), check_k(k)
        p = self.pipeline
        emb = p.query_embedding(query)
        retriever = p.retriever(False)
        raw = _options(options)
        try:
            feats = retriever.search(
                np.array([uid], np.int64), np.array([query.encode("utf-8")], object), emb, _none(), options=raw
            )
        except InvalidInput as err:
            raise ExplorerError(str(err)) from None
        found = self._search_sources(retriever, query, emb, feats[c.ITEM_IDS])
        return self._answer("search_catalog", feats, emb, k, found, raw)

    def recommend(self, user: str = "", viewed: str = "", k: int = 10, options: dict | None = None) -> Answer:
        uid, k = self.user_id(user), check_k(k)
        context = np.array([self.item_id(viewed, "CONTEXT_ITEM_IDS")] if viewed.strip() else [], np.int64)
        raw = _options(options)
        try:
            feats = self.pipeline.retriever(True).recommend(np.array([uid], np.int64), context, _none(), options=raw)
        except InvalidInput as err:
            raise ExplorerError(str(err)) from None
        co = feats[c.DENSE_FEATURES][:, c.DENSE_COLUMNS.index("context_covisit_sum")] > 0
        found = {
            int(i): CO_VISITED if v else NEAREST_OR_POPULAR
            for i, v in zip(feats[c.ITEM_IDS].tolist(), co.tolist(), strict=True)
        }
        return self._answer("recommend_catalog", feats, feats[c.CONTEXT_EMBEDDING], k, found, raw)

    # -- explanations -------------------------------------------------------------------------------
    def _answer(
        self, model: str, feats: dict, context: np.ndarray, k: int, found: dict[int, str], options: str | None
    ) -> Answer:
        """The page topk makes of the candidates (sort, groups, offset, facets, rules), each item explained."""
        p = self.pipeline
        cat, dense, ids = feats[c.CAT_FEATURES], feats[c.DENSE_FEATURES], np.asarray(feats[c.ITEM_IDS], np.int64)
        logit, weight = p.ranker.run([c.LOGIT, c.SIM_WEIGHT], {c.CAT_FEATURES: cat, c.DENSE_FEATURES: dense})
        sim = similarity(context, feats[c.ITEM_ROWS], p.topk.item_embeddings, feats.get(c.NEW_EMBEDDINGS))
        scores = logit[:, 0] + weight[:, 0] * sim + feats.get(c.BOOSTS, 0.0)
        try:
            out = p.topk.rank(
                context, logit, weight, feats[c.ITEM_ROWS], ids, np.array([k], np.int32),
                feats.get(c.AVAILABLE), feats.get(c.NEW_EMBEDDINGS), feats.get(c.PRICES),
                feats.get(c.NOTES), feats.get(c.BOOSTS), feats.get(c.PINS), options,
            )  # fmt: skip
        except InvalidInput as err:
            raise ExplorerError(str(err)) from None
        position = {int(i): n for n, i in enumerate(ids.tolist())}
        top = np.array([position[int(i)] for i in out[c.TOP_ITEM_IDS].tolist()], np.int64)
        moved = self._moved_by(cat[top], dense[top], dense.mean(axis=0), sim[top], scores[top])
        items = []
        for n, j in enumerate(top.tolist()):
            item = self._item(int(ids[j]), float(scores[j]), float(weight[j, 0] * sim[j]), moved[n], found)
            item.group = _text(out[c.TOP_GROUP_KEYS][n])
            item.variants = int(out[c.TOP_GROUP_MATCHES][n])
            items.append(item)
        info = json.loads(_text(out[c.RESULT_INFO][0]))
        return Answer(self.label, model, items, len(ids), info=info)

    def _moved_by(self, cat, dense, mean, sim, scores) -> list[list[tuple[str, float]]]:
        """Per item, the dense features whose replacement by the candidates' mean changes its score most."""
        n, d = dense.shape
        if n == 0:
            return []
        swapped = np.repeat(dense[:, None, :], d, axis=1)  # [n, d, d]: row j has feature j replaced
        swapped[:, np.arange(d), np.arange(d)] = mean[None, :]
        logit, weight = self.pipeline.ranker.run(
            [c.LOGIT, c.SIM_WEIGHT],
            {c.CAT_FEATURES: np.repeat(cat, d, axis=0), c.DENSE_FEATURES: swapped.reshape(n * d, d).astype(np.float32)},
        )
        without = (logit[:, 0] + weight[:, 0] * np.repeat(sim, d)).reshape(n, d)
        delta = scores[:, None] - without
        out = []
        for row in delta:
            order = np.argsort(-np.abs(row))[:TOP_FEATURES]
            out.append([(c.DENSE_COLUMNS[j], round(float(row[j]), 3)) for j in order if abs(row[j]) >= 1e-3])
        return out

    def _item(self, item_id: int, score: float, sim_term: float, moved, found: dict[int, str]) -> Item:
        shop = self.shop
        row = self.row_of.get(item_id, -1)
        known = row >= 0
        return Item(
            item_id=item_id,
            title=shop.item_titles[row] if known else "(an item added online)",
            category=shop.categories[int(shop.item_category[row])] if known else "",
            price=float(shop.item_price[row]) if known else float("nan"),
            in_stock=int(shop.item_stock[row]) if known else 0,
            score=round(score, 4),
            similarity_term=round(sim_term, 3),
            moved_by=moved,
            found=found.get(item_id, ""),
            key=str(shop.item_keys[row]) if known and shop.item_keys is not None else "",
        )

    def _search_sources(self, retriever, query: str, emb: np.ndarray, ids: np.ndarray) -> dict[int, str]:
        """Where ``search_catalog``'s retrieval found each candidate: among the query statistics' clicked items it
        put first (``Retriever.behaviour``, the same call retrieval makes), at a rank of the query embedding's
        nearest items, else the popular items that fill the list."""
        clicked_rows, _ = retriever.behaviour(retriever.store.queries.match_one(query, lambda: emb))
        clicked = set() if clicked_rows is None else {int(self.shop.item_ids[r]) for r in clicked_rows.tolist()}
        near_rows, _ = retriever.index.search(np.asarray(emb, np.float32).reshape(1, -1), 2 * len(ids))
        near = np.asarray(near_rows).ravel().tolist()
        rank = {int(self.shop.item_ids[r]): n + 1 for n, r in enumerate(near) if 0 <= r < len(self.shop.item_ids)}
        out = {}
        for i in ids.tolist():
            if i in clicked:
                out[int(i)] = "clicked after this query (query statistics)"
            elif i in rank:
                out[int(i)] = f"nearest to the query's embedding, rank {rank[i]}"
            else:
                out[int(i)] = "popular, filling the list"
        return out


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _options(options: dict | None) -> str | None:
    return json.dumps(options) if options else None


def sdk_keywords(options: dict | None) -> dict:
    """The SDK's keywords for an options dict (``runtime/options.py``'s fields)."""
    options = options or {}
    names = {"filter": "filters", "per_group": "per_group", "offset": "offset", "sort": "sort", "facets": "facets"}
    out = {names[k]: v for k, v in options.items() if k in names}
    if "understand" in options:
        out["understand"] = options["understand"]
    return out


def check_k(k: int) -> int:
    if not 1 <= int(k) <= MAX_K:
        raise ExplorerError(f"K: {k} is outside 1..{MAX_K}")
    return int(k)


def _none() -> np.ndarray:
    return np.zeros(0, np.int64)


def answer_from_server(
    release: Release, url: str, mode: str, query: str, user: str, viewed: str, k: int, options: dict | None = None
) -> Answer:
    """The ranked ids from the server at ``url`` (the SDK: ``search_catalog`` for ``mode="search"``, else
    ``recommend_catalog``), each explained from ``release``'s files; a server that does not answer is an
    ``ExplorerError`` saying so. The page's summary (matches, facets, understood chips, the merchandising rules
    that applied: the server's online store has them) is the server's."""

    search = mode == "search"
    local = release.search(query, user, k, options) if search else release.recommend(user, viewed, k, options)
    client = RankingClient(url, timeout_s=2.0, check_contract=False)
    keywords = sdk_keywords(options)
    try:
        uid = release.user_id(user)
        if search:
            got = client.search_catalog(uid, query, k=k, **keywords)
        else:
            keywords.pop("understand", None)
            ctx = [release.item_id(viewed, "CONTEXT_ITEM_IDS")] if viewed.strip() else []
            got = client.recommend_catalog(uid, k=k, context=ctx, **keywords)
    except Unavailable as err:
        raise ExplorerError(f"the server at {url} does not answer: {err}") from None
    except RankingError as err:
        raise ExplorerError(f"the server at {url} refused the request: {err}") from None
    finally:
        client.close()
    by_id = {i.item_id: i for i in local.items}
    items = []
    for n, ranked in enumerate(got.items):
        iid = release.id_of_key.get(str(ranked.item_id)) or int(ranked.item_id)  # a SKU shop answers with SKUs
        item = by_id.get(iid) or release._item(iid, ranked.score, 0.0, [], {})
        served: dict[str, object] = {"score": round(float(ranked.score), 4)}
        if n < len(got.groups):
            served.update(group=got.groups[n], variants=got.group_matches[n])
        items.append(Item(**{**item.__dict__, **served}))
    same = [i.item_id for i in items] == [i.item_id for i in local.items]
    note = f"served by {url} (version {got.model_version}); " + (
        "the same top-k as the in-process pipeline" if same else "differs from the in-process pipeline's top-k"
    )
    return Answer(f"server {url}", local.model, items, local.candidates, note, dict(got.info))
