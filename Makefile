# shoprank: every target, one line each (`make help`).
PY      := .venv/bin/python
PROFILE ?= default
REPO    ?= model_repository
WORK    ?= build/$(PROFILE)
EXPLORE_PORT ?= 8050
GRPC_PORT ?= 8001
HTTP_PORT ?= 8000
METRICS_PORT ?= 8002
export HF_HUB_OFFLINE := 1
export PYTHONPATH := $(CURDIR)

.PHONY: help setup build build-gpu serve up redis seed lint format test test-unit test-triton configs validate check-data demo-data variants \
	bench bench-client bench-peer bench-code-ab bench-first-request bench-fp16-decode bench-encoder-length bench-encode-order gpu-truth gpu-truth-report bench-ids bench-retrieval bench-lexical bench-search bench-ranker bench-fresh-tables bench-sim-tie bench-search-cost bench-recommend \
	bench-recommend-cost bench-scale bench-scan bench-online bench-retrain bench-gate-noise bench-online-cluster redis-cluster \
	bench-variants bench-tuning loadtest capacity verify explore screenshots publish rollback retrain ab-start ab-stop clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

setup: ## create .venv and install the pinned dependencies
	@bash scripts/setup.sh

SHOP := $(if $(CONFIG),--config $(CONFIG),--profile $(PROFILE))

build: setup ## build the model repository for the CPU target: your shop (CONFIG=shoprank.yaml) or the demo (PROFILE=default|small)
	$(PY) -m builders build --target cpu $(SHOP) --out $(REPO)

build-gpu: setup ## the gpu target: tensorrt_plan configs, ONNX sources, INT8 calibration caches (PRECISION=fp16|int8)
	$(PY) -m builders build --target gpu $(SHOP) --precision $(or $(PRECISION),fp16)

check-data: setup ## validate your shop's files against the data contract, build nothing (CONFIG=shoprank.yaml)
	$(PY) -m builders check-data --config $(CONFIG)

demo-data: setup ## write the demo shop in the data contract's format (PROFILE=..., OUT=folder)
	$(PY) -m builders demo-data --profile $(PROFILE) --out $(or $(OUT),build/demo-data-$(PROFILE))

variants: setup ## build and measure the compressed variants (INT8, fusion, pruning, low-rank, distilled)
	$(PY) -m builders build --target cpu --profile $(PROFILE) --out build/$(PROFILE)/bench_repo --no-progress
	$(PY) -m builders variants --profile $(PROFILE)

serve: ## serve the built repository on the bundled tritonserver (ports 8000/8001/8002)
	$(PY) -m server.launcher --model-repository $(REPO) --grpc-port $(GRPC_PORT) --http-port $(HTTP_PORT) --metrics-port $(METRICS_PORT)

up: build serve ## setup + build + serve: the README's first command

serve-live: ## serve with explicit model control, so releases can be published while serving (make publish)
	$(PY) -m server.launcher --model-repository $(REPO) --grpc-port $(GRPC_PORT) --http-port $(HTTP_PORT) --metrics-port $(METRICS_PORT) --model-control explicit

publish: ## publish a new build (FROM=its repository) into the served REPO as the next release, no request failed
	$(PY) -m server.publish publish --repo $(REPO) --url 127.0.0.1:$(GRPC_PORT) --from $(FROM)

rollback: ## switch the served REPO back to the previous release on disk
	$(PY) -m server.publish rollback --repo $(REPO) --url 127.0.0.1:$(GRPC_PORT)

retrain: ## nightly retrain against the served REPO: build a candidate from the newest logs, gate, publish or keep aside, watch (docs/retrain.md)
	$(PY) -m retrain --profile $(PROFILE) --repo $(REPO) --url 127.0.0.1:$(GRPC_PORT) --metrics-url http://127.0.0.1:$(METRICS_PORT)/metrics

SHARE ?= 0.1
ab-start: ## online test: load a candidate (FROM=its repository, or RELEASE=N on disk), verify it against its own golden set, then serve it to SHARE of users (docs/serving.md)
	$(PY) -m server.experiment start --hold --repo $(REPO) --url 127.0.0.1:$(GRPC_PORT) --share $(SHARE) \
		$(if $(FROM),--from $(FROM)) $(if $(RELEASE),--release $(RELEASE)) $(if $(NAME),--name $(NAME))
	$(PY) -m rollout verify --golden $(REPO) --arm treatment --url 127.0.0.1:$(HTTP_PORT) || { \
		$(PY) -m server.experiment stop --keep control --repo $(REPO) --url 127.0.0.1:$(GRPC_PORT); \
		echo "ab-start: the treatment does not answer as its build did: test ended, no user was sent to it" >&2; \
		exit 1; }
	$(PY) -m server.experiment open --repo $(REPO) --url 127.0.0.1:$(GRPC_PORT)

ab-stop: ## end the online test, serving KEEP=control or KEEP=treatment alone
	$(PY) -m server.experiment stop --repo $(REPO) --url 127.0.0.1:$(GRPC_PORT) --keep $(KEEP)

redis: setup ## a local redis-server for the online feature store (REDIS_PORT, default 6379); docs/online.md
	$(PY) -m server.redis_server --port $(or $(REDIS_PORT),6379)

seed: ## load the build's price and stock into the online store (SHOPRANK_ONLINE_URL=redis://...)
	$(PY) -m online seed --repo $(REPO)

configs: setup ## regenerate model_repository/*/config.pbtxt from builders/repository/model_specs.py
	$(PY) -m builders configs

validate: ## check a built repository against its configs (REPO=...)
	$(PY) -m builders validate $(REPO)

lint: setup ## ruff (lint + format check) and mypy (strict on client/, runtime/ and the model.py files)
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	@for f in model_repository/*/1/model.py; do .venv/bin/mypy --strict --no-error-summary $$f || exit 1; done
	@echo "lint: ruff and mypy clean"

format: setup ## apply ruff's formatter and its safe fixes (then `make lint`)
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

test: setup lint ## lint, then the whole test suite (unit, build, real tritonserver)
	$(PY) -m pytest -q

test-unit: setup ## only the fast unit tests
	$(PY) -m pytest -q -m unit

test-triton: setup ## only the tests that start a real tritonserver
	$(PY) -m pytest -q -m triton

bench: setup ## served vs in-process latency/throughput on the same requests (PROFILE=default|small)
	$(PY) -m builders build --target cpu --profile $(PROFILE) --out build/$(PROFILE)/bench_repo --no-progress
	$(PY) -m benchmarks.pipeline --repo build/$(PROFILE)/bench_repo --out docs/benchmarks.md

bench-peer: setup ## ours (fused and ensemble layouts) vs the FastAPI + ONNX Runtime service a team would write, same requests, 3 calls (PROFILE=default|small; FUSED_SIZES=1: the fused models' instances x threads instead; ALONE_ROUNDS=N: the encoder widening when alone or never, N rounds; INTERLEAVED=1: ours, its fused step alone and the peer at concurrency 1, blocks taken in turn; FLOORS=1: each stack's fixed cost (an echo model, the peer's /ready); PEER_ROUNDS=N: N passes, default 2) -> docs/benchmarks.md
	$(PY) -m pip install -q -r requirements-bench.txt -c constraints.txt
	$(PY) -m benchmarks.peer --profile $(PROFILE) --requests 400 --out docs/benchmarks.md $(if $(FUSED_SIZES),--sizes,) $(if $(ALONE_ROUNDS),--alone-rounds $(ALONE_ROUNDS),) $(if $(INTERLEAVED),--interleaved,) $(if $(FLOORS),--floors,) $(if $(PEER_ROUNDS),--rounds $(PEER_ROUNDS),)

bench-client: setup ## SDK overhead per call vs raw tritonclient, same requests (PROFILE=default|small)
	$(PY) -m builders build --target cpu --profile $(PROFILE) --out build/$(PROFILE)/bench_repo --no-progress
	$(PY) -m benchmarks.client_overhead --repo build/$(PROFILE)/bench_repo --requests 800 --out docs/benchmarks.md

bench-fp16-decode: setup ## float16 item rows decoded by numpy, FAISS's fp16 codec or ONNX Runtime's Cast (served): the decode and retrieval's exact re-scoring, same rows and searches
	$(PY) -m builders build --target cpu --profile default --out build/default/bench_repo --no-progress
	$(PY) -m benchmarks.fp16_decode --repo build/default/bench_repo

bench-encode-order: setup ## a build's title encoding in catalogue order against sorted by token length (default shop's titles) -> docs/benchmarks.md
	$(PY) -m builders build --target cpu --profile default --out build/default/bench_repo --no-progress
	$(PY) -m benchmarks.encode_order --doc docs/benchmarks.md

bench-encoder-length: setup ## the text encoder's cost per query against its padded length, and the benchmark queries padded or not -> docs/benchmarks.md
	$(PY) -m builders build --target cpu --profile $(PROFILE) --out build/$(PROFILE)/bench_repo --no-progress
	$(PY) -m benchmarks.encoder_length --repo build/$(PROFILE)/bench_repo

gpu-truth: setup ## prepare the GPU measurement (build/gpu_truth/, <= 64 MiB) and print the one device call that runs it (docs/gpu.md)
	$(PY) -m builders build --target cpu --profile small --out build/small/bench_repo --no-progress
	$(PY) -m benchmarks.gpu_truth prepare --work build/small

gpu-truth-report: setup ## the device call's results (RESULTS=folder holding gpu_truth.json) into docs/gpu.md's tables
	$(PY) -m benchmarks.gpu_truth report --results $(RESULTS)

bench-ids: setup ## what string ids (SKUs) cost per request: INT64 hash vs BYTES ids -> docs/data.md
	$(PY) -m benchmarks.string_ids --out docs/data.md

bench-retrieval: setup ## quality of retrieval from the whole catalogue vs re-ranking on the test days (table in docs/retrieval.md)
	$(PY) -m builders build --target cpu --profile $(PROFILE) --out build/$(PROFILE)/bench_repo --no-progress
	$(PY) -m benchmarks.retrieval --repo build/$(PROFILE)/bench_repo --data build/$(PROFILE)/data --compare-table build/$(PROFILE)/embeddings/items.npy

bench-lexical: setup ## would BM25 help search retrieval? semantic vs BM25 vs both (RRF) per query class on the test days (docs/retrieval.md)
	$(PY) -m builders build --target cpu --profile $(PROFILE) --out build/$(PROFILE)/bench_repo --no-progress
	$(PY) -m benchmarks.lexical --repo build/$(PROFILE)/bench_repo --data build/$(PROFILE)/data

bench-search: setup ## search vs the click prior and popularity per query class, demo and market shop; search_catalog's retrieval (docs/quality.md)
	$(PY) -m builders build --target cpu --profile default --out build/default_repo --no-progress
	$(PY) -m builders build --target cpu --profile market --out build/market_repo --no-progress
	$(PY) -m benchmarks.search_quality --work build/default build/market --markdown
	$(PY) -m benchmarks.search_quality --work build/default build/market --catalogue

bench-ranker: setup ## the ranker kinds (DCN-v2, LambdaMART) x debiased or not vs the baselines, three views, propensity plot, step cost (docs/quality.md)
	$(PY) -m builders build --target cpu --profile default --out build/default_repo --no-progress
	$(PY) -m builders build --target cpu --profile market --out build/market_repo --no-progress
	$(PY) -m benchmarks.ranker_kinds --work build/default build/market --plot docs/propensity.png --cost --json build/ranker_kinds.json

SHOPS_FULL := default market fashion
bench-fresh-tables: setup ## the served tables' window (statistics, newest, all) on three shops, with and without a query trend (docs/quality.md)
	for shop in $(SHOPS_FULL); do $(PY) -m builders build --target cpu --profile $$shop --out build/$${shop}_repo --no-progress || exit 1; done
	$(PY) -m benchmarks.fresh_tables --work $(addprefix build/,$(SHOPS_FULL)) --json build/fresh_tables.json
	$(PY) -m benchmarks.fresh_tables --work $(addprefix build/,$(SHOPS_FULL)) --trend 5 --json build/fresh_tables_trend.json

bench-sim-tie: setup ## LambdaMART's similarity weights on the held-out days, and the one kept with sim_tie 0 and the default, on three shops (docs/quality.md)
	for shop in $(SHOPS_FULL); do $(PY) -m builders build --target cpu --profile $$shop --out build/$${shop}_repo --no-progress || exit 1; done
	$(PY) -m benchmarks.sim_tie --work $(addprefix build/,$(SHOPS_FULL)) --json build/sim_tie.json

BEFORE ?= 2ec0533
bench-search-cost: setup ## served search / search_catalog p50 and p99 before (BEFORE=commit) and after, same requests, one run (docs/quality.md)
	test -d build/before-src || git worktree add --detach build/before-src $(BEFORE)
	cd build/before-src && PYTHONPATH=$(CURDIR)/build/before-src $(CURDIR)/$(PY) -m builders build --profile default \
		--work $(CURDIR)/build/before-default --out $(CURDIR)/build/before-default/repo --no-progress
	$(PY) -m builders build --target cpu --profile default --out build/default_repo --no-progress
	$(PY) -m benchmarks.search_cost --before-code build/before-src --before-repo build/before-default/repo \
		--after-repo build/default_repo --data build/default/data

bench-recommend: setup ## recommendations on held-out sessions: served vs popular, today's, co-visitation, embedding neighbours, demo and market (docs/retrieval.md)
	$(PY) -m builders build --target cpu --profile default --out build/default_repo --no-progress
	$(PY) -m builders build --target cpu --profile market --out build/market_repo --no-progress
	$(PY) -m benchmarks.next_item --shop build/default build/default_repo --shop build/market build/market_repo --markdown --sweep

BEFORE ?= 3b3117a
bench-code-ab: setup ## this tree's serving code against BEFORE's (a commit) on the same repository: search and the catalogue calls, concurrency 1 in turn and 8 in flight -> docs/benchmarks.md
	$(PY) -m builders build --target cpu --profile $(PROFILE) --out build/$(PROFILE)/bench_repo --no-progress
	test -d build/code-ab-before || git worktree add --detach build/code-ab-before $(BEFORE)
	git -C build/code-ab-before checkout -q --detach $(BEFORE)
	$(PY) -m benchmarks.code_ab --before-code build/code-ab-before --before-label $(BEFORE) \
		--repo build/$(PROFILE)/bench_repo --out docs/benchmarks.md

bench-first-request: setup ## a new fused instance's first requests with and without its warm-up request: at a start and after a publish -> docs/benchmarks.md
	$(PY) -m builders build --target cpu --profile $(PROFILE) --out build/$(PROFILE)/bench_repo --no-progress
	$(PY) -m benchmarks.first_request --repo build/$(PROFILE)/bench_repo --out docs/benchmarks.md

BEFORE_RECOMMEND ?= 39a2620
bench-recommend-cost: setup ## served recommend_catalog / recommend p50 and p99 before (BEFORE_RECOMMEND=commit) and after, one run, real Redis (docs/retrieval.md)
	test -d build/before25-src || git worktree add --detach build/before25-src $(BEFORE_RECOMMEND)
	cd build/before25-src && PYTHONPATH=$(CURDIR)/build/before25-src $(CURDIR)/$(PY) -m builders build --profile default \
		--work $(CURDIR)/build/before25-default --out $(CURDIR)/build/before25-default/repo --no-progress
	$(PY) -m builders build --target cpu --profile default --out build/default_repo --no-progress
	$(PY) -m benchmarks.recommend_cost --before-code build/before25-src --before-repo build/before25-default/repo \
		--after-repo build/default_repo

SIZES ?= 50000,1000000,10000000
SIZES_LISTING ?= 50000 1000000
SIZES_SCAN ?= 50000,1000000
bench-listing: setup ## search_catalog's top 10 on samples of the fashion shop, before and after groups and understanding; other shops' NDCG (docs/quality.md)
	$(PY) -m builders build --target cpu --profile small --out build/small_repo --no-progress
	$(PY) -m builders build --target cpu --profile market-small --out build/market-small_repo --no-progress
	$(PY) -m benchmarks.listing_quality --seeds 20261204 11 12 13 14 15 --queries 200 --other build/small:build/small_repo \
		--other build/market-small:build/market-small_repo --json build/listing_quality.json --markdown
	$(PY) -m benchmarks.listing_quality --profile fashion --seeds 20261204 11 12 --queries 200 \
		--root build/listing_quality_large --json build/listing_quality_large.json --markdown

bench-listing-cost: setup ## search_catalog / recommend_catalog p50 and p99 with no, a broad and a selective filter at SIZES_LISTING items (docs/serving.md)
	$(PY) -m builders build --target cpu --profile small --out build/small/bench_repo --no-progress
	$(PY) -m benchmarks.listing_cost --sizes $(SIZES_LISTING) --requests 300

bench-scale: setup ## the whole server at generated catalogues of SIZES items: memory, build, p50/p99, recall -> docs/scale.md (10M: ~20 min, 25 GB disk)
	$(PY) -m builders build --target cpu --profile small --out build/small/bench_repo --no-progress
	$(PY) -m benchmarks.server_scale --sizes $(SIZES) --small build/small --small-repo build/small/bench_repo --plot docs/scale.png
	$(PY) -m benchmarks.index_scale --sizes 50000,1000000

bench-scan: setup ## retrieval by the item_scan model (exact matrix product) beside FAISS at SIZES_SCAN items; GPU rows need onnxruntime-gpu and a GPU -> docs/scale.md
	$(PY) -m benchmarks.scan_retrieval --sizes $(SIZES_SCAN) --small build/small

bench-retrain: setup ## a nightly retrain's build (one new day of logs, from the cache) against a full build -> docs/retrain.md
	$(PY) -m benchmarks.retrain_cost --profile $(PROFILE) --out docs/retrain.md

bench-gate-noise: setup ## the retrain gate's latency verdict on a release against itself under SDK load: one after the other vs in turns -> docs/retrain.md
	$(PY) -m benchmarks.gate_noise --rounds 6 --out docs/retrain.md

bench-online: setup ## what the online store's read adds to the feature model per request -> docs/online.md
	$(PY) -m benchmarks.online_read --out docs/online.md

bench-online-cluster: setup ## one Redis vs a 3-master Redis Cluster: served read cost, read capacity, failover time, writes during a reshard -> docs/online.md
	$(PY) -m builders build --target cpu --profile small --out build/small/bench_repo --no-progress
	$(PY) -m benchmarks.online_cluster --repo build/small/bench_repo

redis-cluster: setup ## a local Redis Cluster: 3 masters with a replica each on free ports (docs/online.md)
	$(PY) -m server.redis_cluster --masters 3 --replicas 1

bench-online-served: setup ## served search with vs without the store, update-to-visible, Locust with vs without 1,000 writes/s -> docs/online.md
	$(PY) -m benchmarks.online_served --out docs/online.md

bench-variants: variants ## every variant served side by side -> docs/compression.md + Pareto plot
	$(PY) -m benchmarks.variants --profile $(PROFILE) --out docs/compression.md

bench-tuning: setup ## the ensemble layout's dynamic batching / instances sweep and the encoder response cache -> docs/tuning.md
	$(PY) -m builders build --target cpu --profile $(PROFILE) --layout ensemble --out build/$(PROFILE)/bench_repo_ensemble --no-progress
	$(PY) -m benchmarks.tuning --profile $(PROFILE) --out docs/tuning.md

loadtest: setup ## short headless Locust run against a local server on the small shop (reports in build/loadtest/)
	$(PY) -m builders build --target cpu --profile small --out build/small/repo --no-progress
	$(PY) -m loadtest.run --repo build/small/repo --shop build/small/data --shape soak --soak-users 4 --soak-s 20 --catalog-share 0.3 \
		--slo-p99-ms 500 --max-fail-ratio 0.001 --out build/loadtest/soak

capacity: setup ## step ramp against one replica -> replicas and HPA targets (PEAK_RPS=..., PROFILE=..., CATALOG_SHARE=0..1: share of search/product-page calls)
	$(PY) -m builders build --target cpu --profile $(PROFILE) --out build/$(PROFILE)/bench_repo --no-progress
	$(PY) -m loadtest.capacity --repo build/$(PROFILE)/bench_repo --shop build/$(PROFILE)/data \
		--peak-rps $(or $(PEAK_RPS),300) --slo-p99-ms 150 --step-users 8 --step-s 12 --max-users 96 \
		--catalog-share $(or $(CATALOG_SHARE),0) --out build/capacity$(if $(CATALOG_SHARE),-$(CATALOG_SHARE))

verify: ## the built REPO's golden set against the local server (HTTP_PORT): same answers as the build? (python -m rollout)
	$(PY) -m rollout verify --golden $(REPO) --url 127.0.0.1:$(HTTP_PORT)

explore: ## the ranking explorer on http://127.0.0.1:8050 (EXPLORE_PORT): REPO (and WORK, its build), COMPARE=another repo, SERVER=host:port
	$(PY) -m explorer --work $(WORK) --repo $(REPO) --port $(EXPLORE_PORT) $(if $(COMPARE),--compare $(COMPARE)) $(if $(SERVER),--server $(SERVER))

screenshots: setup ## the report page and the explorer in headless Chromium, screenshots to docs/screenshots/
	SHOPRANK_SCREENSHOTS=docs/screenshots $(PY) -m pytest -q tests/test_pages_browser.py

clean: ## remove build outputs (data, weights, embeddings, logs); keeps .venv
	rm -rf build
	find model_repository -mindepth 3 -type f ! -name model.py ! -name .gitkeep -delete
