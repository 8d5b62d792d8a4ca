"""Write item fields into the online store (the layout is ``runtime/online.py``'s).

Every update is partial: the fields given are written, the others keep their value, and an item the
store has never seen gets NaN (unset: the build's value) for the fields not given. Each item is written
with ``SET key <all unset> NX`` then ``SETRANGE`` per field, all items of one call in one MULTI/EXEC
transaction: a reader never sees half an update, and concurrent writers of different fields do not
overwrite each other.

Interactions (``record``): a click, cart or purchase is pushed onto the user's recent list (newest
first, trimmed to ``recent_keep``, expiring ``ttl`` after the last one: 30 days for a user, 30 minutes
for an anonymous session, whose id the shop sends as USER_ID).

Cluster mode (``cluster=True``, ``runtime/online.py``'s bucket layout): an update is one ``HSET`` of the fields
given into its bucket's hash, atomic for the item; the updates of one call go in one cluster pipeline (no
MULTI across slots), so each item is updated whole and a reader never sees half an update.

New items (``add_items``): an item the build never saw, pushed with its title, gets the title embedded
by the repository's own encoder (``online/embed.py``) and stored next to its price and stock, so topk
ranks it by its text, and listed in ``{prefix}:new_items``, so retrieval finds it (``runtime/retrieval.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime.errors import ShoprankError
from runtime.online_store import (
    DEFAULT_BUCKETS,
    ONLINE_FIELDS,
    PRICE_LOG,
    SNAPSHOT_FILE,
    bucket_key,
    bucket_of,
    embedding_key,
    encode,
    field_name,
    field_offset,
    item_key,
    new_items_key,
    price_changes_key,
    recent_key,
    rules_key,
)

EVENTS = ("click", "cart", "purchase")
USER_TTL_S = 30 * 24 * 3600
SESSION_TTL_S = 30 * 60


class UpdateError(ShoprankError, ValueError):
    """An update that cannot be applied; the message names the item and the field."""


@dataclass(frozen=True)
class ItemUpdate:
    item_id: int
    values: Mapping[str, float]


def check(update: ItemUpdate, where: str = "") -> ItemUpdate:
    at = f"{where}: " if where else ""
    if not update.values:
        raise UpdateError(f"{at}item {update.item_id}: no field to update (fields: {', '.join(ONLINE_FIELDS)})")
    for name, value in update.values.items():
        if name not in ONLINE_FIELDS:
            raise UpdateError(f"{at}item {update.item_id}: unknown field {name!r} (fields: {', '.join(ONLINE_FIELDS)})")
        if not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(float(value)):
            raise UpdateError(f"{at}item {update.item_id}: {name} must be a finite number, got {value!r}")
        if name == "price" and float(value) <= 0:
            raise UpdateError(f"{at}item {update.item_id}: price must be > 0, got {value}")
        if name == "stock" and float(value) < 0:
            raise UpdateError(f"{at}item {update.item_id}: stock must be >= 0, got {value}")
    return update


@dataclass(frozen=True)
class Interaction:
    """``user_id``: the id the shop's requests send as USER_ID (a user's, or an anonymous session's)."""

    user_id: int
    item_id: int
    event: str = "click"
    session: bool = False  # an anonymous session: shorter expiry


def check_interaction(it: Interaction, where: str = "") -> Interaction:
    at = f"{where}: " if where else ""
    if it.event not in EVENTS:
        raise UpdateError(f"{at}event: expected one of {', '.join(EVENTS)}, got {it.event!r}")
    return it


class OnlineWriter:
    """Applies updates to a Redis; ``prefix`` must be the serving side's ``SHOPRANK_ONLINE_PREFIX``, and in
    cluster mode (a ``RedisCluster`` client, ``cluster=True``) ``buckets`` its ``SHOPRANK_ONLINE_BUCKETS``."""

    def __init__(
        self,
        client: Any,
        prefix: str = "shoprank",
        chunk: int = 1000,
        recent_keep: int = 50,
        cluster: bool = False,
        buckets: int = DEFAULT_BUCKETS,
    ):
        self.client = client
        self.prefix = prefix
        self.chunk = chunk
        self.recent_keep = recent_keep
        self.cluster = cluster
        self.buckets = buckets
        self._unset = encode({})

    def set_rules(self, text: str) -> None:
        """Replace the merchandising rules' document (checked by the caller: ``online.rules.resolve``); every
        model reads it within ``runtime.rules.POLL_S``."""
        self.client.set(rules_key(self.prefix), text.encode("utf-8"))

    def rules(self) -> str:
        raw = self.client.get(rules_key(self.prefix))
        return "" if raw is None else bytes(raw).decode("utf-8")

    def apply(self, updates: Iterable[ItemUpdate]) -> int:
        """Write the updates (checked first: nothing is written if one is invalid); returns how many."""
        return self.write([check(u) for u in updates])

    def write(self, batch: list[ItemUpdate], log_prices: bool = True) -> int:
        """Write updates that ``check`` has passed already. ``log_prices``: also list the items whose price
        changed in the price-change log (``price_changes_key``), trimmed to its newest ``PRICE_LOG``."""
        log = price_changes_key(self.prefix)
        for start in range(0, len(batch), self.chunk):
            pipe = self.client.pipeline(transaction=not self.cluster)
            chunk = batch[start : start + self.chunk]
            for u in chunk:
                self._queue(pipe, u)
            priced = {str(u.item_id): time.time() for u in chunk if "price" in u.values} if log_prices else {}
            pipe.execute()
            if priced:  # after the values: a reader that sees the log entry reads the new price
                self.client.zadd(log, priced)
                self.client.zremrangebyrank(log, 0, -PRICE_LOG - 1)
        return len(batch)

    def _queue(self, pipe: Any, u: ItemUpdate) -> None:
        if self.cluster:  # one HSET of the given fields: atomic for the item
            fields = {
                field_name(u.item_id, ONLINE_FIELDS.index(n)): np.array([v], "<f4").tobytes()
                for n, v in u.values.items()
            }
            pipe.hset(bucket_key(self.prefix, "items", bucket_of(u.item_id, self.buckets)), mapping=fields)
            return
        key = item_key(self.prefix, u.item_id)
        pipe.set(key, self._unset, nx=True)
        for name, value in u.values.items():
            pipe.setrange(key, field_offset(name), np.array([value], "<f4").tobytes())

    def set_items(self, item_ids: Sequence[int], **fields: Sequence[float]) -> int:
        """Bulk: the same fields for many items, e.g. ``set_items(ids, price=p, stock=s)``."""
        columns = {k: np.asarray(v, np.float64) for k, v in fields.items()}
        for name, col in columns.items():
            if len(col) != len(item_ids):
                raise UpdateError(f"{name}: {len(col)} values for {len(item_ids)} items")
        return self.apply(
            ItemUpdate(int(i), {k: float(col[n]) for k, col in columns.items()}) for n, i in enumerate(item_ids)
        )

    def seed(self, repository: Path) -> int:
        """The build's snapshot of every item (``search_features/1/online_snapshot.npz``)."""
        path = Path(repository) / "search_features" / "1" / SNAPSHOT_FILE
        if not path.exists():
            raise UpdateError(f"{path} is missing: build the repository first (make build)")
        with np.load(path) as snap:
            updates = [
                ItemUpdate(int(i), {"price": float(p), "stock": float(s)})
                for i, p, s in zip(
                    snap["item_id"].tolist(), snap["price"].tolist(), snap["stock"].tolist(), strict=True
                )
            ]
        return self.write([check(u) for u in updates], log_prices=False)  # the build's own prices: nothing moved

    def record(self, interactions: Iterable[Interaction]) -> int:
        """Push interactions onto their users' recent lists, in one pipeline; returns how many."""
        batch = [check_interaction(i) for i in interactions]
        pipe = self.client.pipeline(transaction=False)
        for it in batch:
            key = recent_key(self.prefix, it.user_id)
            pipe.lpush(key, b"%d" % it.item_id)
            pipe.ltrim(key, 0, self.recent_keep - 1)
            pipe.expire(key, SESSION_TTL_S if it.session else USER_TTL_S)
        if batch:
            pipe.execute()
        return len(batch)

    def recent(self, user_id: int) -> list[int]:
        return [int(v) for v in self.client.lrange(recent_key(self.prefix, user_id), 0, -1)]

    def add_items(self, items: Sequence[tuple[int, str]], embed: Any, **fields: Sequence[float]) -> int:
        """New items ``(item_id, title)``: titles embedded by ``embed`` (``online.embed.RepositoryEncoder``),
        stored with the fields given (e.g. ``price=[...]``, ``stock=[...]``) in one transaction."""
        for item_id, title in items:
            if not isinstance(title, str) or not title.strip():
                raise UpdateError(f"item {item_id}: title must be a non-empty string, got {title!r}")
        updates = []
        for n, (item_id, _) in enumerate(items):
            values = {k: float(v[n]) for k, v in fields.items() if v[n] is not None}
            if values:
                updates.append(check(ItemUpdate(int(item_id), values)))
        vectors = np.asarray(embed([t for _, t in items]), "<f4")
        pipe = self.client.pipeline(transaction=not self.cluster)
        added_at = time.time()
        for (item_id, _), vector in zip(items, vectors, strict=True):
            if self.cluster:
                key = bucket_key(self.prefix, "embs", bucket_of(item_id, self.buckets))
                pipe.hset(key, field_name(item_id, -1), vector.tobytes())
            else:
                pipe.set(embedding_key(self.prefix, item_id), vector.tobytes())
        # the retrieval models poll this set: the items become retrievable from the whole catalogue
        pipe.zadd(new_items_key(self.prefix), {b"%d" % int(item_id): added_at for item_id, _ in items})
        for u in updates:
            self._queue(pipe, u)
        pipe.execute()
        return len(items)

    def clear(self) -> int:
        """Delete every key of this prefix (tests, or a shop starting over)."""
        if self.cluster:  # every master's keys (a cluster's SCAN is per node), deleted one by one
            from redis.cluster import RedisCluster

            keys = list(
                self.client.scan_iter(match=f"{self.prefix}:*", count=1000, target_nodes=RedisCluster.PRIMARIES)
            )
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.delete(key)
            return int(sum(pipe.execute())) if keys else 0
        keys = list(self.client.scan_iter(match=f"{self.prefix}:*", count=1000))
        return int(self.client.delete(*keys)) if keys else 0
