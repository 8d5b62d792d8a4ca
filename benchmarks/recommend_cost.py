"""What co-visitation costs a served recommendation: two servers, before and after, the same requests, one
run (``make bench-recommend-cost``; results in docs/retrieval.md).

``before`` is a repository built by an earlier commit's code (a git worktree of it, ``--before-code``),
served by that code's own launcher; ``after`` is this tree's repository. Both read one real redis-server
(each under its own key prefix, seeded with its build's prices and stock, and the same recent clicks for
the users asked), as served in production: after's recommendations read the user's recent list before
retrieving. Each request goes to both servers, in alternating order, one at a time:

* ``recommend_catalog``, a product page: a known user viewing one item (CONTEXT_ITEM_IDS);
* ``recommend_catalog``, the homepage: a known user with recent clicks in the online store, no context,
  one with a profile (clicks in the build's statistics window) and one without: before, a user without a
  profile got the most clicked items without any index search; now the recent clicks are a context, so
  their co-visited and nearest items are retrieved (an ANN search);
* ``recommend`` re-ranking 100 and 1,000 candidates for such a user.

Latency is measured by the client (raw ``tritonclient``, the same for both), p50 and p99. Not a test:
nothing asserts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.search_cost import alternate, before_after_parser, print_table, start_before, wait_ready
from online.writer import Interaction, OnlineWriter
from runtime import cli_logging
from runtime.features import FeatureStore
from runtime.online_store import OnlineSettings, connect
from server.launcher import ServerOptions, TritonServer
from server.redis_server import RedisServer

PREFIXES = {"before": "before", "after": "after"}


def inputs(user: int, context: np.ndarray | None, candidates: np.ndarray | None, k: int = 10) -> list:
    import tritonclient.grpc as grpcclient

    def tensor(name: str, value: np.ndarray, dtype: str) -> grpcclient.InferInput:
        t = grpcclient.InferInput(name, list(value.shape), dtype)
        t.set_data_from_numpy(value)
        return t

    out = [tensor("USER_ID", np.array([user], np.int64), "INT64")]
    if candidates is not None:
        out.append(tensor("ITEM_IDS", candidates.astype(np.int64), "INT64"))
    else:
        ctx = np.zeros(0, np.int64) if context is None else context.astype(np.int64)
        out.append(tensor("CONTEXT_ITEM_IDS", ctx, "INT64"))
        out.append(tensor("EXCLUDE_IDS", np.zeros(0, np.int64), "INT64"))
    out.append(tensor("TOP_K", np.array([k], np.int32), "INT32"))
    return out


def measure(urls: dict[str, str], item_ids: np.ndarray, users: dict[str, np.ndarray], n: int, seed: int = 0) -> dict:
    import tritonclient.grpc as grpcclient

    rng = np.random.default_rng(seed)
    clients = {name: grpcclient.InferenceServerClient(url) for name, url in urls.items()}
    cases = [
        ("recommend_catalog, product page", "recommend_catalog", "page", 0, "all"),
        ("recommend_catalog, homepage, a user with a profile", "recommend_catalog", "home", 0, "profile"),
        ("recommend_catalog, homepage, a user without one", "recommend_catalog", "home", 0, "none"),
        ("recommend, 100 candidates", "recommend", "home", 100, "all"),
        ("recommend, 1000 candidates", "recommend", "home", 1000, "all"),
    ]
    out: dict = {}
    for label, model, kind, size, who in cases:
        pool = users[who]

        def make(_: int, kind: str = kind, size: int = size, pool: np.ndarray = pool) -> list:
            user = int(pool[rng.integers(len(pool))])
            context = rng.choice(item_ids, 1) if kind == "page" else None
            cands = rng.choice(item_ids, size, replace=False) if size else None
            return inputs(user, context, cands)

        out[label] = alternate(clients, model, make, n)
    return out


def main(argv: list[str] | None = None) -> int:
    cli_logging.configure()

    p = before_after_parser("python -m benchmarks.recommend_cost", __doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=200, help="known users asked, each with recent clicks")
    args = p.parse_args(argv)
    log = Path("build") / "recommend_cost_before.log"
    log.parent.mkdir(exist_ok=True)
    store = FeatureStore.load(args.after_repo / "recommend_features" / "1", with_tokenizer=False, with_profiles=True)
    tables = store.tables
    rng = np.random.default_rng(1)
    users = rng.choice(tables.user_ids_sorted, args.users, replace=False)
    has_profile = np.array([bool(np.any(store.profiles()[r])) for r in tables.user_rows(users)])
    pools = {"all": users, "profile": users[has_profile], "none": users[~has_profile]}
    item_ids = np.asarray(tables.item_ids_sorted)
    redis = RedisServer(log_file=Path("build") / "recommend_cost_redis.log").start()
    before = after = None
    try:
        for name, repo in (("before", args.before_repo), ("after", args.after_repo)):
            writer = OnlineWriter(connect(OnlineSettings(url=redis.url, timeout_s=5)), prefix=PREFIXES[name])
            writer.seed(repo)
            clicks = [Interaction(int(u), int(i), "click") for u in users for i in rng.choice(item_ids, 5)]
            writer.record(clicks)
        env = {"SHOPRANK_ONLINE_URL": redis.url}
        before, before_url = start_before(
            args.before_code.resolve(), args.before_repo.resolve(), log, {**env, "SHOPRANK_ONLINE_PREFIX": "before"}
        )
        after = TritonServer(
            ServerOptions(
                model_repository=args.after_repo, ready_timeout_s=300, env={**env, "SHOPRANK_ONLINE_PREFIX": "after"}
            )
        )
        after.start()
        wait_ready(before_url)
        result = measure({"before": before_url, "after": after.grpc_url}, item_ids, pools, args.requests)
    finally:
        if after is not None:
            after.stop()
        if before is not None:
            before.terminate()
            before.wait(30)
        redis.stop()
    print_table(result, args.requests, "; one redis-server")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
