"""What the online store adds to a feature model's work per request, in process, on the same requests.

``search_features``' ``FeatureStore.search`` on the small build, three ways, interleaved request by
request so the machine's drift hits all alike:

* ``build``: no online store (the build's values);
* ``online, MGET``: a real redis-server on loopback, staleness 0: every request does its one ``MGET``;
* ``online, cached``: staleness 60 s: the values come from the in-process cache.

At 100 and 1,000 candidates. This is the feature model's own cost; the served p50/p99 through the
ensemble is still to be measured (docs/online.md).

``python -m benchmarks.online_read [--requests 300] [--out docs/online.md]``; ``make bench-online``.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.pipeline import machine, small_build_main
from online.writer import OnlineWriter
from runtime import contract as c
from runtime.features import FeatureStore
from runtime.online import OnlineItems
from runtime.online_store import OnlineSettings, connect
from server.redis_server import RedisServer

SIZES = (100, 1000)
WAYS = ("build", "online, MGET", "online, cached")


def measure(repo: Path, n_requests: int) -> list[str]:

    folder = repo / c.SEARCH_FEATURES / "1"
    rng = np.random.default_rng(0)
    lines = [
        f"Machine: {machine()}; {n_requests} requests per size, the same for every way; median and p99 per request.",
        "",
        "| candidates | " + " | ".join(f"{w} p50 / p99" for w in WAYS) + " | MGET adds (p50) |",
        "|---|" + "---|" * (len(WAYS) + 1),
    ]
    with RedisServer() as redis_server:
        OnlineWriter(connect(OnlineSettings(url=redis_server.url, timeout_s=5)), prefix="bench").seed(repo)

        def store(staleness_s: float | None) -> FeatureStore:
            if staleness_s is None:
                return FeatureStore.load(folder)
            settings = OnlineSettings(url=redis_server.url, prefix="bench", max_staleness_s=staleness_s, timeout_s=1)
            return FeatureStore.load(folder, online=OnlineItems(settings))

        stores = [store(None), store(0.0), store(60.0)]
        items = stores[0].tables.item_ids_sorted
        user = stores[0].tables.user_ids_sorted[:1]
        query = np.array([b"shoes"], object)
        for n in SIZES:
            n = min(n, len(items))
            reqs = [rng.choice(items, n, replace=False) for _ in range(n_requests)]
            for s in stores:  # warm-up (and fills the cached store)
                for r in reqs[:20]:
                    s.search(user, query, r)
            times: list[list[float]] = [[] for _ in stores]
            for r in reqs:
                for i, s in enumerate(stores):
                    start = time.perf_counter()
                    s.search(user, query, r)
                    times[i].append((time.perf_counter() - start) * 1e3)
            p50 = [statistics.median(t) for t in times]
            p99 = [float(np.percentile(t, 99)) for t in times]
            cells = " | ".join(f"{a:.3f} / {b:.3f} ms" for a, b in zip(p50, p99, strict=True))
            lines.append(f"| {n} | {cells} | +{p50[1] - p50[0]:.3f} ms |")
    return lines


def main(argv: list[str] | None = None) -> int:

    return small_build_main(argv, __doc__, "bench-online", 300, measure)


if __name__ == "__main__":
    sys.exit(main())
