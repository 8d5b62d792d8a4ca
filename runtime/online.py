"""Fresh item fields (price, stock) from the online store, a real Redis, for a request's candidates.

The build freezes every feature into the repository; a shop's prices and stock change all day. When
``SHOPRANK_ONLINE_URL`` is set, the feature models read the candidates' current values from Redis in
one round trip (one ``MGET``) through a small in-process cache, and rank with them. Anything Redis does
not hold, and everything while Redis is down or slow, comes from the build's snapshot: a Redis failure
never fails a ranking request. The layout, the settings and the connection are ``runtime/online_store.py``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.arrays import Floats, Int64s
from runtime.online_store import (
    FIELD_BYTES,
    ONLINE_FIELDS,
    VALUE_BYTES,
    OnlineSettings,
    bucket_key,
    connect,
    encode,
    key_prefix,
    new_items_key,
    price_changes_key,
    rules_key,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OnlineRead:
    """What one request read: ``values [N, len(ONLINE_FIELDS)]`` float32 (NaN: the build's value), the title
    embeddings of new candidates by position, and the user's recent item ids, newest first."""

    values: Floats
    embeddings: dict[int, Floats]
    recent: Int64s


NO_RECENT: Int64s = np.zeros(0, np.int64)


class OnlineItems:
    """Current values of ``ONLINE_FIELDS`` for a request's candidates, new items' embeddings, recent activity.

    ``read(ids, user_id, new)`` asks Redis once (one pipeline: an ``MGET`` of what the cache lacks, and an
    ``LRANGE`` of the user's recent items). Item values and embeddings come from the cache when they were
    read less than ``max_staleness_s`` ago. After a failure (error or timeout) Redis is skipped for
    ``retry_after_s``: every value is NaN, nothing is recent, the build's values rank. The first success
    brings it back. Each change of state is logged once and reported through ``on_state``.
    """

    def __init__(
        self,
        settings: OnlineSettings,
        client: Any = None,
        clock: Callable[[], float] = time.monotonic,
        log: Callable[[str], None] | None = None,
        on_state: Callable[[bool], None] | None = None,
        on_read: Callable[[str], None] | None = None,
    ):
        self.settings = settings
        self._client = client if client is not None else connect(settings)
        self._clock = clock
        self._log = log or logger.warning  # the served models pass Triton's own logger
        self._on_state = on_state
        self._on_read = on_read
        self._cache: dict[bytes, tuple[float, bytes | None]] = {}  # key -> (read at, value)
        self._key_prefix = key_prefix(settings.prefix)
        self._emb_prefix = key_prefix(settings.prefix, "emb")
        self._recent_prefix = key_prefix(settings.prefix, "recent")
        self._unset = encode({})
        self._skip_until = -math.inf
        self._unanswered: set[int] = set()  # positions of the last fetch's keys whose node failed (cluster mode)
        self._refresh_topology = False
        self._node_down: dict[str, float] = {}  # cluster mode: a failed node -> when to ask it again
        self._pool: Any = None  # cluster mode: one thread a node, so the nodes' round trips overlap
        self.up = True
        self.failures = 0
        self.partial_failures = 0  # cluster mode: reads where some nodes failed (their keys used the build's values)
        self.last_error = ""
        self.keep_alive: list[Any] = []  # objects the hooks need (Triton deletes a MetricFamily it loses)
        self._hook_failed = False

    def fetch(self, ids: Int64s) -> Floats:
        """Only the item values (``read`` without embeddings or recent activity)."""
        return self.read(ids).values

    def read(self, ids: Int64s, user_id: int | None = None, new: Int64s | None = None) -> OnlineRead:
        """``new``: positions in ``ids`` of candidates the build does not know (their embeddings are read)."""
        # Per request on the feature model's hot path: list comprehensions over the candidates, one round
        # trip, one decode of all values (measured: make bench-online).
        now = self._clock()
        id_list = ids.tolist()
        keys = [self._key_prefix + b"%d" % i for i in id_list]
        new_pos = [] if new is None else new.tolist()
        keys += [self._emb_prefix + b"%d" % id_list[p] for p in new_pos]
        fresh_after = now - self.settings.max_staleness_s
        hits = list(map(self._cache.get, keys))
        got: list[bytes | None] = [h[1] if h is not None and h[0] >= fresh_after else None for h in hits]
        missing = [i for i, h in enumerate(hits) if h is None or h[0] < fresh_after]
        want_recent = user_id is not None and self.settings.recent > 0
        recent = NO_RECENT
        if not missing and not want_recent:
            self._read("cached")
        elif now < self._skip_until:
            self._read("skipped")
        else:
            try:
                recent_of = self._recent_prefix + b"%d" % int(user_id or 0) if want_recent else None
                of_ids = None
                if self.settings.cluster:  # each missing key's item id (its bucket) and kind: embeddings after items
                    n_ids = len(id_list)
                    key_ids = [id_list[i] if i < n_ids else id_list[new_pos[i - n_ids]] for i in missing]
                    of_ids = (key_ids, [i >= n_ids for i in missing])
                fetched, recent_raw = self._fetch([keys[i] for i in missing], recent_of, of_ids)
            except Exception as err:  # any client error (timeout, refused, protocol) is a fallback
                self._failed(now, err)
            else:
                self._recovered()
                lost = self._unanswered  # cluster mode: keys of a node that failed are not cached
                self._cache.update(
                    (keys[i], (now, v)) for n, (i, v) in enumerate(zip(missing, fetched, strict=True)) if n not in lost
                )
                for i, v in zip(missing, fetched, strict=True):
                    got[i] = v
                while len(self._cache) > self.settings.cache_items:  # oldest first-insertion out
                    del self._cache[next(iter(self._cache))]
                if recent_raw:
                    recent = np.array([int(r) for r in recent_raw if r.isdigit() or r[1:].isdigit()], np.int64)
                self._read("partial" if lost else "ok")
        n = len(id_list)
        packed = b"".join([v if v is not None and len(v) == VALUE_BYTES else self._unset for v in got[:n]])
        values: Floats = np.frombuffer(packed, "<f4").reshape(n, len(ONLINE_FIELDS))
        embeddings = {p: np.frombuffer(v, "<f4") for p, v in zip(new_pos, got[n:], strict=True) if v}
        return OnlineRead(values, embeddings, recent)

    def new_items(self, known: int) -> tuple[Int64s, list[bytes | None]] | None:
        """The items added online, oldest first, with their raw embeddings (``embedding_key``), when their
        number differs from ``known``; None when it does not, or while Redis is skipped or failing (one
        ``ZCARD`` per call when nothing changed). Failures count like ``read``'s."""
        now = self._clock()
        if now < self._skip_until:
            return None
        key = new_items_key(self.settings.prefix)
        try:
            if int(self._client.zcard(key)) == known:
                return None
            members = self._client.zrange(key, 0, -1)
            ids = np.array([int(m) for m in members if m.isdigit() or m[1:].isdigit()], np.int64)
            emb_keys = [self._emb_prefix + b"%d" % i for i in ids.tolist()]
            vectors = self._fetch(emb_keys, None, (ids.tolist(), [True] * len(ids)))[0] if ids.size else []
        except Exception as err:
            self._failed(now, err)
            return None
        self._recovered()
        return ids, list(vectors)

    def price_changes(self, since: float) -> tuple[Int64s, Floats, float] | None:
        """The items whose price was pushed after ``since`` (unix seconds), their current prices (NaN: none
        set) and the newest push's time; None while Redis is skipped or failing."""
        now = self._clock()
        if now < self._skip_until:
            return None
        try:
            got = self._client.zrangebyscore(
                price_changes_key(self.settings.prefix), f"({since}", "+inf", withscores=True
            )
        except Exception as err:
            self._failed(now, err)
            return None
        self._recovered()
        ids = np.array([int(m) for m, _ in got], np.int64)
        newest = max((float(t) for _, t in got), default=since)
        prices = self.fetch(ids)[:, ONLINE_FIELDS.index("price")] if ids.size else np.zeros(0, np.float32)
        return ids, prices, newest

    def rules_text(self) -> str | None:
        """The merchandising rules' document (``runtime/rules.py``), "" when none is set; None while Redis is
        skipped or failing (the rules last read stay). One ``GET``; failures count like ``read``'s."""
        now = self._clock()
        if now < self._skip_until:
            return None
        try:
            raw = self._client.get(rules_key(self.settings.prefix))
        except Exception as err:
            self._failed(now, err)
            return None
        self._recovered()
        return "" if raw is None else bytes(raw).decode("utf-8", "replace")

    def _fetch(
        self, keys: list[bytes], recent_of: bytes | None, of_ids: tuple[list[int], list[bool]] | None = None
    ) -> tuple[list[bytes | None], list[bytes]]:
        """The values of ``keys`` (item and embedding keys of the single-node layout) and, with ``recent_of``,
        that recent list: one round trip (single node: an ``MGET`` and the ``LRANGE`` in one pipeline; cluster:
        ``_fetch_cluster`` with ``of_ids``, each key's item id and whether it is an embedding's, where the keys
        of a node that failed come back None and are listed in ``self._unanswered``)."""
        self._unanswered = set()
        if self.settings.cluster and of_ids is not None:
            return self._fetch_cluster(of_ids[0], of_ids[1], recent_of)
        if recent_of is None:
            return (self._client.mget(keys) if keys else []), []
        pipe = self._client.pipeline(transaction=False)
        if keys:
            pipe.mget(keys)
        pipe.lrange(recent_of, 0, self.settings.recent - 1)
        replies = pipe.execute()
        return (replies[0] if keys else []), replies[-1]

    def _fetch_cluster(
        self, ids: list[int], is_emb: list[bool], recent_of: bytes | None
    ) -> tuple[list[bytes | None], list[bytes]]:
        """Cluster mode: one ``HMGET`` per bucket hash the keys fall in (items: every field; embeddings: one
        field) and the ``LRANGE``, grouped by the node that holds each slot and sent to every node at once
        (``_cluster_round_trip``). An item's fields come back packed as in single-node mode (a field never
        written: NaN); a failed node's keys come back None (the build's values) and are listed in
        ``self._unanswered``."""
        s, n_fields = self.settings, len(ONLINE_FIELDS)
        arr = np.asarray(ids, np.int64)
        emb = np.asarray(is_emb, bool)
        code = arr % s.buckets + emb * s.buckets  # one group per (kind, bucket)
        order = np.argsort(code, kind="stable")
        cuts = np.flatnonzero(np.diff(code[order])) + 1
        groups = []  # (positions, is embedding)
        commands: list[tuple[bytes, list[bytes] | None]] = []
        for positions in np.split(order, cuts) if len(order) else []:
            group = int(code[positions[0]])
            kind_emb = group >= s.buckets
            member_ids = arr[positions].tolist()
            if kind_emb:
                fields = [b"%d" % i for i in member_ids]
            else:
                fields = [b"%d:%d" % (i, f) for i in member_ids for f in range(n_fields)]
            commands.append((bucket_key(s.prefix, "embs" if kind_emb else "items", group % s.buckets), fields))
            groups.append((positions.tolist(), kind_emb))
        if recent_of is not None:
            commands.append((recent_of, None))  # None: the LRANGE
        replies = self._cluster_round_trip(commands)
        out: list[bytes | None] = [None] * len(ids)
        unset = self._unset[:FIELD_BYTES]
        width = FIELD_BYTES * n_fields
        for (positions, kind_emb), reply in zip(groups, replies, strict=False):
            if reply is None:  # its node failed
                self._unanswered.update(positions)
            elif kind_emb:
                for pos, value in zip(positions, reply, strict=True):
                    out[pos] = value
            else:
                packed = b"".join([v if v is not None and len(v) == FIELD_BYTES else unset for v in reply])
                for n, pos in enumerate(positions):
                    out[pos] = packed[n * width : (n + 1) * width]
        recent = replies[-1] if recent_of is not None else []
        return out, list(recent or [])

    def _cluster_round_trip(self, commands: list[tuple[bytes, list[bytes] | None]]) -> list[Any]:
        """Each command's reply, None where its node failed (``_fetch_cluster``). A node that failed is not
        asked again for ``retry_after_s`` (its keys use the build's values at once); only when every master
        has failed does the read fail as a whole (the store is down, as for one Redis)."""
        from redis.crc import key_slot

        client, s = self._client, self.settings
        now = self._clock()
        if self._refresh_topology:
            self._refresh_topology = False
            client.nodes_manager.initialize()  # after a failover or a reshard: who holds which slot now
        by_node: dict[str, tuple[Any, list[int]]] = {}
        for n, (key, _) in enumerate(commands):
            node = client.nodes_manager.get_node_from_slot(key_slot(key), s.read_from_replicas)
            by_node.setdefault(node.name, (node, []))[1].append(n)

        def send(node: Any, indices: list[int]) -> list[Any]:
            pipe = client.get_redis_connection(node).pipeline(transaction=False)
            for n in indices:
                key, fields = commands[n]
                if fields is None:
                    pipe.lrange(key, 0, s.recent - 1)
                else:
                    pipe.hmget(key, fields)
            return list(pipe.execute(raise_on_error=False))

        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="online-store")
        live = {name: v for name, v in by_node.items() if self._node_down.get(name, -math.inf) <= now}
        futures = {name: self._pool.submit(send, node, idx) for name, (node, idx) in live.items()}
        replies: list[Any] = [None] * len(commands)
        errors = []
        for name, future in futures.items():
            try:
                got = future.result(timeout=2 * s.timeout_s + 1.0)
            except Exception as err:  # the node is down or slow: its keys use the build's values
                errors.append(f"{name}: {type(err).__name__}: {err}")
                self._node_down[name] = now + s.retry_after_s
                continue
            for n, reply in zip(live[name][1], got, strict=True):
                if isinstance(reply, Exception):  # MOVED / ASK / TRYAGAIN: the slot is elsewhere now
                    errors.append(f"{name}: {type(reply).__name__}: {reply}")
                else:
                    replies[n] = reply
        if errors:
            self._refresh_topology = True
            self.last_error = errors[0]
        if errors or len(live) < len(by_node):
            self.partial_failures += 1
            masters = {node.name for node in client.get_primaries()}
            if masters and all(self._node_down.get(m, -math.inf) > now for m in masters):
                raise ConnectionError(f"every master failed: {'; '.join(errors[:3]) or self.last_error}")
        return replies

    def _read(self, outcome: str) -> None:
        if self._on_read is not None:
            self._hook(self._on_read, outcome)

    def _hook(self, hook: Callable[[Any], None], value: object) -> None:
        """Metrics are best effort: a failing hook is logged once and never fails the request."""
        try:
            hook(value)
        except Exception as err:
            if not self._hook_failed:
                self._hook_failed = True
                self._log(f"online store metrics failed ({type(err).__name__}: {err}); ranking is unaffected")

    def _failed(self, now: float, err: Exception) -> None:
        self.failures += 1
        self.last_error = f"{type(err).__name__}: {err}"
        self._skip_until = now + self.settings.retry_after_s
        self._read("failed")
        if self.up:
            self.up = False
            self._log(
                f"online store unreachable ({self.last_error}): ranking with the build's values; "
                f"retrying every {self.settings.retry_after_s * 1e3:.0f} ms"
            )
            if self._on_state is not None:
                self._hook(self._on_state, False)

    def _recovered(self) -> None:
        if not self.up:
            self.up = True
            self._log(f"online store reachable again after {self.failures} failed read(s)")
            if self._on_state is not None:
                self._hook(self._on_state, True)
