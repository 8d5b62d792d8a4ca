"""Fresh item fields (price, stock) from the online store, a real Redis, for a request's candidates.

The build freezes every feature into the repository; a shop's prices and stock change all day. When
``SHOPRANK_ONLINE_URL`` is set, the feature models read the candidates' current values from Redis in
one round trip (one ``MGET``) through a small in-process cache, and rank with them. Anything Redis does
not hold, and everything while Redis is down or slow, comes from the build's snapshot: a Redis failure
never fails a ranking request.

Layout in Redis (``online/writer.py`` writes it, this module only reads):

* ``{prefix}:item:{item_id}`` -> ``ONLINE_FIELDS`` as little-endian float32, packed (8 bytes). A NaN
  field was never pushed: the build's value is used. Packed values keep the read to one ``MGET`` and
  its decoding to one ``np.frombuffer``.
* ``{prefix}:emb:{item_id}`` -> the title embedding of an item the build never saw (a new item), as
  little-endian float32 ``[D]``, computed on write by the repository's own encoder. Read in the same
  ``MGET``, only for candidates the build does not know.
* ``{prefix}:new_items`` -> a sorted set of the new items' ids, scored by the time they were added: the
  retrieval models (``runtime/retrieval.py``) poll it, so new items become retrievable without a rebuild.
* ``{prefix}:recent:{user_id}`` -> a list, newest first, of the item ids a user (or an anonymous
  session, whose id the request sends as USER_ID) clicked, carted or bought. Read with ``LRANGE`` in the
  same round trip (one pipeline), never cached: a click changes the next request.

**Cluster mode** (``SHOPRANK_ONLINE_CLUSTER=1``, a Redis Cluster's seed node in the URL): a cluster answers a
multi-key command only for keys of one hash slot, and redis-py's cluster pipeline refuses ``MGET``. The items
are therefore kept in ``SHOPRANK_ONLINE_BUCKETS`` hashes, one per bucket ``item_id % buckets``, each with a
hash tag of its own (``{prefix}:items:{{prefix}:b}``, fields ``<item_id>:<field index>``, a float32 each; new
items' embeddings likewise in ``{prefix}:embs:{{prefix}:b}``). One request's reads are one ``HMGET`` per
bucket its candidates fall in plus the ``LRANGE``, in one cluster pipeline: redis-py sends each master its
commands at once and then reads the replies, so the round trips to the masters overlap. The recent lists and
the new-items set are single keys, as in single-node mode; the single-node layout is unchanged.

Settings (environment of the tritonserver process; the Helm chart sets them from its values):

=============================== ========= ===============================================================
``SHOPRANK_ONLINE_URL``          unset     ``redis://[:password@]host:port/db`` (or ``rediss://``); unset = off
``SHOPRANK_ONLINE_PREFIX``       shoprank  key prefix, so several shops or releases can share one Redis
``SHOPRANK_ONLINE_STALENESS_MS`` 1000      a cached value is used at most this long after it was read
``SHOPRANK_ONLINE_TIMEOUT_MS``   20        one round trip longer than this counts as a failure
``SHOPRANK_ONLINE_RETRY_MS``     1000      after a failure, Redis is not asked again for this long
``SHOPRANK_SOLD_OUT``            filter    ``filter``: stock 0 leaves the ranking; ``demote``: only its
                                           in-stock feature turns 0 and the ranker decides
``SHOPRANK_ONLINE_RECENT``       20        the newest N interactions of the user read per request; 0 = off
``SHOPRANK_ONLINE_CLUSTER``      0         1: the URL is a Redis Cluster seed node (cluster mode, above)
``SHOPRANK_ONLINE_BUCKETS``      12        cluster mode: item hashes (writer and readers must agree)
``SHOPRANK_ONLINE_REPLICAS``     0         cluster mode, 1: reads may go to replicas (writes never do)
``SHOPRANK_ONLINE_SEEDS``        unset     cluster mode: more seed nodes, ``host:port,host:port`` (the URL's
                                           node may be the one that is down when a process starts)
=============================== ========= ===============================================================
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from runtime.arrays import Floats, Int64s
from runtime.errors import ShoprankError

logger = logging.getLogger(__name__)

ONLINE_FIELDS = ("price", "stock")
FIELD_BYTES = 4
VALUE_BYTES = FIELD_BYTES * len(ONLINE_FIELDS)
UNSET = float("nan")
SNAPSHOT_FILE = "online_snapshot.npz"  # the build's values (item_id, price, stock), in search_features/1
SoldOut = Literal["filter", "demote"]


class OnlineConfigError(ShoprankError, ValueError):
    """A setting of the online store is invalid; the message names the environment variable."""


def key_prefix(prefix: str, kind: str = "item") -> bytes:
    return f"{prefix}:{kind}:".encode()


def embedding_key(prefix: str, item_id: int) -> bytes:
    return key_prefix(prefix, "emb") + b"%d" % int(item_id)


def recent_key(prefix: str, user_id: int) -> bytes:
    return key_prefix(prefix, "recent") + b"%d" % int(user_id)


def new_items_key(prefix: str) -> bytes:
    """The sorted set of item ids added online (``OnlineWriter.add_items``), scored by the time of addition."""
    return f"{prefix}:new_items".encode()


def item_key(prefix: str, item_id: int) -> bytes:
    return key_prefix(prefix) + b"%d" % int(item_id)


DEFAULT_BUCKETS = 12  # whole buckets for 2, 3, 4, 6 or 12 masters; more balance finer but cost per read


def bucket_of(item_id: int, buckets: int) -> int:
    return int(item_id) % buckets


def bucket_key(prefix: str, kind: str, bucket: int) -> bytes:
    """Cluster mode: the hash of one bucket (``kind`` items or embs), its own hash tag: one slot per bucket."""
    return f"{prefix}:{kind}:{{{prefix}:{bucket}}}".encode()


def field_name(item_id: int, field: int) -> bytes:
    """Cluster mode: an item's field in its bucket's hash (``field``: index in ONLINE_FIELDS; -1 = embedding)."""
    return b"%d" % int(item_id) if field < 0 else b"%d:%d" % (int(item_id), field)


def encode(values: Mapping[str, float]) -> bytes:
    """One item's packed value; fields not given are NaN (unset: the build's value is used)."""
    unknown = set(values) - set(ONLINE_FIELDS)
    if unknown:
        raise ValueError(f"unknown online field(s) {sorted(unknown)}; the online fields are {list(ONLINE_FIELDS)}")
    return np.array([values.get(f, UNSET) for f in ONLINE_FIELDS], "<f4").tobytes()


def field_offset(name: str) -> int:
    return ONLINE_FIELDS.index(name) * FIELD_BYTES


@dataclass(frozen=True)
class OnlineSettings:
    url: str | None = None
    prefix: str = "shoprank"
    max_staleness_s: float = 1.0
    timeout_s: float = 0.02
    retry_after_s: float = 1.0
    sold_out: SoldOut = "filter"
    cache_items: int = 200_000
    recent: int = 20
    cluster: bool = False
    buckets: int = DEFAULT_BUCKETS
    read_from_replicas: bool = False
    seeds: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OnlineSettings:
        env = os.environ if env is None else env

        def ms(name: str, default: float, minimum: float) -> float:
            raw = env.get(name)
            if raw is None or raw == "":
                return default / 1e3
            try:
                value = float(raw)
            except ValueError:
                raise OnlineConfigError(f"{name}: expected milliseconds, got {raw!r}") from None
            if not math.isfinite(value) or value < minimum:
                raise OnlineConfigError(f"{name}: must be >= {minimum:g} ms, got {raw}")
            return value / 1e3

        sold_out = env.get("SHOPRANK_SOLD_OUT") or "filter"
        if sold_out not in ("filter", "demote"):
            raise OnlineConfigError(f"SHOPRANK_SOLD_OUT: expected 'filter' or 'demote', got {sold_out!r}")
        recent_raw = env.get("SHOPRANK_ONLINE_RECENT") or "20"
        if not recent_raw.isdigit() or int(recent_raw) > 1000:
            raise OnlineConfigError(f"SHOPRANK_ONLINE_RECENT: expected a count from 0 to 1000, got {recent_raw!r}")
        url = env.get("SHOPRANK_ONLINE_URL") or None
        if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
            raise OnlineConfigError(f"SHOPRANK_ONLINE_URL: expected redis://host:port/db, got {url!r}")

        def flag(name: str) -> bool:
            raw = env.get(name) or "0"
            if raw not in ("0", "1"):
                raise OnlineConfigError(f"{name}: expected 0 or 1, got {raw!r}")
            return raw == "1"

        buckets_raw = env.get("SHOPRANK_ONLINE_BUCKETS") or str(DEFAULT_BUCKETS)
        if not buckets_raw.isdigit() or not 1 <= int(buckets_raw) <= 16384:
            raise OnlineConfigError(f"SHOPRANK_ONLINE_BUCKETS: expected a count from 1 to 16384, got {buckets_raw!r}")
        cluster = flag("SHOPRANK_ONLINE_CLUSTER")
        seeds = tuple(x.strip() for x in (env.get("SHOPRANK_ONLINE_SEEDS") or "").split(",") if x.strip())
        for seed in seeds:
            host, _, port = seed.rpartition(":")
            if not host or not port.isdigit():
                raise OnlineConfigError(f"SHOPRANK_ONLINE_SEEDS: expected host:port entries, got {seed!r}")
        if cluster and url is not None and url.startswith("unix://"):
            raise OnlineConfigError("SHOPRANK_ONLINE_CLUSTER: a Redis Cluster is reached over TCP, not unix://")
        return cls(
            url=url,
            prefix=env.get("SHOPRANK_ONLINE_PREFIX") or "shoprank",
            max_staleness_s=ms("SHOPRANK_ONLINE_STALENESS_MS", 1000, 0),
            timeout_s=ms("SHOPRANK_ONLINE_TIMEOUT_MS", 20, 1),
            retry_after_s=ms("SHOPRANK_ONLINE_RETRY_MS", 1000, 0),
            sold_out="filter" if sold_out == "filter" else "demote",
            recent=int(recent_raw),
            cluster=cluster,
            buckets=int(buckets_raw),
            read_from_replicas=flag("SHOPRANK_ONLINE_REPLICAS"),
            seeds=seeds,
        )


def ensure_ssl() -> None:
    """Make ``import ssl`` work where the interpreter's stdlib does not match it (redis imports ssl).

    The python backend stub of the local tritonserver wheel embeds Debian's libpython 3.11.2 but reads
    the project venv's stdlib (a newer 3.11), whose ``_ssl`` needs symbols 3.11.2 lacks. Debian's own
    ``_ssl`` for that libpython is loaded instead. Elsewhere (the NGC image, a plain Python) ``ssl``
    imports normally and nothing happens here.
    """
    try:
        import ssl
    except ImportError as err:
        import importlib.machinery
        import importlib.util
        import sys

        minor = sys.version_info.minor
        path = f"/usr/lib/python3.{minor}/lib-dynload/_ssl.cpython-3{minor}-x86_64-linux-gnu.so"
        if not os.path.exists(path):
            raise ImportError(f"ssl cannot be imported ({err}) and {path} does not exist") from None
        loader = importlib.machinery.ExtensionFileLoader("_ssl", path)
        spec = importlib.util.spec_from_loader("_ssl", loader)
        if spec is None:
            raise ImportError(f"ssl cannot be imported ({err}); {path} does not load") from None
        sys.modules["_ssl"] = importlib.util.module_from_spec(spec)
        loader.exec_module(sys.modules["_ssl"])
        sys.modules.pop("ssl", None)
        import ssl  # noqa: F401


def connect(settings: OnlineSettings) -> Any:
    """A ``redis.Redis`` client with the settings' timeouts (no retries: a slow read falls back instead); in
    cluster mode a ``redis.cluster.RedisCluster`` from the seed node (it discovers the others, follows
    MOVED/ASK redirections and re-reads the topology after a failover)."""
    ensure_ssl()
    import redis

    if settings.cluster:
        from redis.cluster import ClusterNode, RedisCluster

        seeds = [ClusterNode(h, int(p)) for h, _, p in (x.rpartition(":") for x in settings.seeds)]  # type: ignore[no-untyped-call]
        return RedisCluster.from_url(
            settings.url or "",
            startup_nodes=seeds or None,
            socket_timeout=settings.timeout_s,
            socket_connect_timeout=settings.timeout_s,
            read_from_replicas=settings.read_from_replicas,
            cluster_error_retry_attempts=1,
            # a topology with uncovered slots (a master lost, its replica not promoted yet) is still used: the
            # other slots keep being read (and managed services may hide CONFIG: no full-coverage check)
            require_full_coverage=False,
            health_check_interval=0,
        )
    return redis.Redis.from_url(
        settings.url or "",
        socket_timeout=settings.timeout_s,
        socket_connect_timeout=settings.timeout_s,
        retry=None,
        health_check_interval=0,
    )


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
        from redis.cluster import key_slot

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
