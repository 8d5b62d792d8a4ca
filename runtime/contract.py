"""The serving contract: model names, tensor names, dtypes, shapes and limits.

One place that the Triton configs (``builders/repository/model_specs.py``), the Python-backend logic, the
in-process pipeline and the tests all read, so a rename cannot drift between them.
"""

from __future__ import annotations

# Ensembles (what clients call)
SEARCH_ENSEMBLE = "search"
RECOMMEND_ENSEMBLE = "recommend"
# Ensembles that retrieve from the whole catalogue (no candidate list; runtime/retrieval.py)
SEARCH_CATALOG = "search_catalog"
RECOMMEND_CATALOG = "recommend_catalog"
CALLS = (SEARCH_ENSEMBLE, RECOMMEND_ENSEMBLE, SEARCH_CATALOG, RECOMMEND_CATALOG)  # every public call
# Composing models
SEARCH_FEATURES = "search_features"
RECOMMEND_FEATURES = "recommend_features"
TEXT_ENCODER = "text_encoder"
RANKER = "ranker"
TOPK = "topk"
QUERY_TOKENIZER = "query_tokens"  # QUERY -> the encoder's tokens (the first step of search and search_catalog)
RETRIEVE_SEARCH = "retrieve_search"
RETRIEVE_RECOMMEND = "retrieve_recommend"
# Exact retrieval as one matrix product over the item table (builders/repository/item_scan.py): the gpu target's
# retrieval models call it through BLS (runtime/scan.py) instead of searching the FAISS index
ITEM_SCAN = "item_scan"
SCAN_PARAMETER = "item_scan"  # a retrieval model's config parameter: the scan model it calls ("" = FAISS)
# a fused model's config parameter (runtime/fused.py): the composing models whose files it reads, comma-separated
PARTS_PARAMETER = "shoprank_parts"
# An online test (server/experiment.py): a public ensemble's config parameter with the running test (JSON, read
# by the SDK, which splits the users), and the treatment arm's ensemble's, naming the public ensemble it copies
EXPERIMENT_PARAMETER = "shoprank_experiment"
ARM_PARAMETER = "shoprank_arm_of"
ARM_SUFFIX = "__treatment"  # an online test's treatment ensemble of a public call: "<call>__treatment"
# at the repository's root, never served (Triton loads only folders): the build's requests and answers
GOLDEN_FILE = "golden.json"
# A release's golden set while another release serves, in the live repository (hidden: not checksummed)
RELEASE_GOLDEN = ".golden.{}.json"

# Request tensors (ensemble inputs)
USER_ID = "USER_ID"  # INT64 [1]
QUERY = "QUERY"  # BYTES [1], UTF-8
ITEM_IDS = "ITEM_IDS"  # INT64 [-1], the candidate list
TOP_K = "TOP_K"  # INT32 [1]
EXCLUDE_IDS = "EXCLUDE_IDS"  # INT64 [-1], may be empty: items the caller does not want (catalogue ensembles)
CONTEXT_ITEM_IDS = "CONTEXT_ITEM_IDS"  # INT64 [-1], may be empty: what the user is viewing (recommend_catalog)
# Response tensors (ensemble outputs)
TOP_ITEM_IDS = "TOP_ITEM_IDS"  # INT64 [-1], best first
TOP_SCORES = "TOP_SCORES"  # FP32 [-1], the ranker's logit, best first
# BYTES [-1], beside TOP_ITEM_IDS: the shop's own id of each, as UTF-8 (a string SKU, or an integer id in
# decimal); an item the build does not know (added online) has its INT64 id in decimal
TOP_ITEM_KEYS = "TOP_ITEM_KEYS"
# BYTES [-1], beside TOP_ITEM_IDS: the variant group each result represents (the shop's item_group_id; an item
# without one is its own group: its key)
TOP_GROUP_KEYS = "TOP_GROUP_KEYS"
TOP_GROUP_MATCHES = "TOP_GROUP_MATCHES"  # INT32 [-1]: how many of that group's variants are in the relevant set
# BYTES [1]: a JSON object: matches (results there are to page through), offset, sort, per_group, facets
# (runtime/listing.py)
RESULT_INFO = "RESULT_INFO"

# Intermediate tensors
INPUT_IDS = "input_ids"  # INT64 [B, L], L <= QUERY_TOKENS: a multiple of QUERY_PAD_MULTIPLE where Triton batches
ATTENTION_MASK = "attention_mask"  # INT64 [B, L]
SENTENCE_EMBEDDING = "sentence_embedding"  # FP32 [B, EMBED_DIM], L2-normalised
CAT_FEATURES = "cat_features"  # INT64 [N, N_CAT]
DENSE_FEATURES = "dense_features"  # FP32 [N, N_DENSE]
ITEM_ROWS = "ITEM_ROWS"  # INT64 [N], row in the item tables, -1 = unknown item, -2-j = NEW_EMBEDDINGS[j + 1]
# FP32 [1+M, EMBED_DIM]: row 0 zeros, then the title embeddings of the M new candidates (online store)
NEW_EMBEDDINGS = "NEW_EMBEDDINGS"
# BOOL [N], False = not returned: sold out (online store, SHOPRANK_SOLD_OUT=filter) or failing the request's filter
AVAILABLE = "AVAILABLE"
# BYTES [1], JSON: what the feature or retrieval step made of the request, for topk's answer: the query's
# understood chips (runtime/understand.py) and the merchandising rules that applied (runtime/rules.py)
NOTES = "NOTES"
BOOSTS = "BOOSTS"  # FP32 [N]: the merchandising rules' score offset of each candidate (boost > 0, bury < 0)
PINS = "PINS"  # INT32 [N]: the position a rule pins the candidate at (1 = first), -1 none
PRICES = "PRICES"  # FP32 [N]: each candidate's current price (the online store's, else the build's; NaN unknown)
CONTEXT_EMBEDDING = "CONTEXT_EMBEDDING"  # FP32 [1, EMBED_DIM]: query (search) or the recommendation vector
LOGIT = "logit"  # FP32 [N, 1]
SIM_WEIGHT = "sim_weight"  # FP32 [N, 1]
SCAN_VECTOR = "VECTOR"  # FP32 [B, EMBED_DIM]: item_scan's query or user vectors
SCAN_DEPTH = "DEPTH"  # INT64 [B, 1]: rows wanted per vector; a batch answers as deep as its deepest request
SCAN_ROWS = "ROWS"  # INT64 [B, K]: item rows, best first
SCAN_SCORES = "SCORES"  # FP32 [B, K]: their inner products

# Request parameter (KServe v2 "parameters"; an ensemble passes its request's parameters to every step):
# true = the feature models rank this request with the build's values, without the online store. The
# golden set's checks send it (`python -m rollout verify`), so a pod's answers compare with the build's
# while live prices and stock move.
BUILD_VALUES = "shoprank_build_values"

# Shapes and limits
EMBED_DIM = 384  # the bundled MiniLM's; a shop's own encoder sets its own (the build's manifest)
QUERY_TOKENS = 32  # queries are truncated to this many tokens
QUERY_PAD_MULTIPLE = 4  # and padded to a multiple of 4: same-bucket queries batch, short ones stay cheap
ONE_QUERY_PAD_MULTIPLE = 1  # a query encoded alone (fused layout, in process) is not padded: the same embedding
MAX_CANDIDATES = 1000  # more candidates than this per request is INVALID_ARGUMENT
MAX_QUERY_BYTES = 1024  # longer QUERY is INVALID_ARGUMENT (it would be truncated to 32 tokens anyway)
RANKER_MAX_BATCH = 4096  # candidate rows the ranker may take in one batch (>= MAX_CANDIDATES)

# What shoppers did after the query (runtime/query_stats.py): the match weight (1 the query itself, the
# cosine of a borrowed head query, 0 none), its frequency, the candidate's category share of its clicks,
# P(click | query, category), the brand share, the query-item CTR
QUERY_DENSE_COLUMNS = (
    "query_known",
    "query_log_lists",
    "query_category_share",
    "query_category_ctr",
    "query_brand_share",
    "query_item_ctr",
)
# What the shopper is viewing and did last (runtime/covisit.py): the candidate's co-visitation weight with
# the context items (log 1 + sum, log 1 + max), its best title cosine with them, whether an item is being
# viewed (a product page), and for the viewed items and the recent ones apart: the share of them in the
# candidate's category, its category's best co-visitation with theirs
COVISIT_DENSE_COLUMNS = (
    "context_covisit_sum",
    "context_covisit_max",
    "context_similarity",
    "viewing_item",
    "viewed_same_category",
    "viewed_category_covisit",
    "recent_same_category",
    "recent_category_covisit",
)
CAT_COLUMNS = ("user", "item", "category", "brand", "price_bucket", "segment", "query_category")
DENSE_COLUMNS = (
    "has_query",
    "query_category_match",
    "query_brand_match",
    "query_attr_match",
    "user_category_affinity",
    "user_brand_affinity",
    "item_log_clicks",
    "item_ctr",
    "item_in_stock",
    "price_vs_user",
    "user_known",
    "item_known",
    *QUERY_DENSE_COLUMNS,
    *COVISIT_DENSE_COLUMNS,
)
N_CAT = len(CAT_COLUMNS)
N_DENSE = len(DENSE_COLUMNS)
N_PRICE_BUCKETS = 12
