"""The online store's layout in Redis and how to reach it: keys, buckets, packed values, settings, connection.

The writer (``online/writer.py``) and the reader (``runtime/online.py``) share what is here, so they agree
on every byte. Layout in Redis:

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

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from runtime.errors import ShoprankError

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


def price_changes_key(prefix: str) -> bytes:
    """The sorted set of item ids whose price was pushed, scored by the time of the push (the newest
    ``PRICE_LOG`` kept): the retrieval models re-read those prices, so a price filter finds an item whose
    price moved into its range (``runtime/retrieval.py``)."""
    return f"{prefix}:price_changes".encode()


PRICE_LOG = 1_000_000  # price changes kept in the log (a model reads them all once, at its start)


def rules_key(prefix: str) -> bytes:
    """The merchandising rules' JSON document (``runtime/rules.py``; ``python -m online rules set``)."""
    return f"{prefix}:rules".encode()


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
