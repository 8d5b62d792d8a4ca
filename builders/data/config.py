"""``shoprank.yaml``: the one build config of a shop, validated before anything runs.

Every field has a default except ``data.folder``; unknown keys are refused (a typo must not be
ignored silently). Errors name the file and the field path::

    shoprank.yaml: ranker.epochs: Input should be greater than 0 (got 0)

Relative paths (``data.folder``, ``encoder.path``) are relative to the config file's folder.
``docs/data.md`` documents every field; ``examples/shoprank.yaml`` is a complete example.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from builders.data.contract import CONTRACT_COLUMNS, TableName
from runtime.errors import ShoprankError


class ConfigError(ShoprankError, ValueError):
    """The build config is wrong; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Ga4Config(_Strict):
    """How GA4's BigQuery export becomes ranked lists (``builders/data/ga4.py``; docs/data.md)."""

    # item_list_name or item_list_id values of the lists a search results page shows: their query is the
    # session's latest search_term (a view_search_results event's own items always are a search list)
    search_lists: tuple[str, ...] = ("search_results", "search results", "Search Results")
    # item_list_name or item_list_id values of the lists shown on a product page ("related_products"): their
    # context item is the session's latest view_item
    product_page_lists: tuple[str, ...] = ()
    # user_id: signed-in shoppers only, the rest anonymous; user_pseudo_id: every device is a user
    user: Literal["user_id", "user_pseudo_id"] = "user_id"


class DataConfig(_Strict):
    folder: Path = Field(description="folder of the shop's exported files")
    format: Literal["auto", "parquet", "csv"] = "auto"
    # contract: the contract's events file; ga4: GA4's BigQuery export, the events_* tables (data.events is
    # then the tables' name prefix, "events" by default)
    events_format: Literal["contract", "ga4"] = "contract"
    # contract: the contract's items file; merchant_center: a Merchant Center product feed, TSV or XML (data.items
    # is then the feed's file name, with or without its suffix)
    items_format: Literal["contract", "merchant_center"] = "contract"
    ga4: Ga4Config = Ga4Config()
    items: str = "items"  # file name, or stem: items.parquet / items.csv
    users: str | None = "users"  # optional: a shop may have anonymous traffic only
    events: str = "events"
    # contract column -> the column's name in your files, per file
    columns: dict[TableName, dict[str, str]] = Field(default_factory=dict)
    # "auto": integer columns are INT64 ids, text columns are hashed (shoprank_client.ids);
    # "string": always text (use it for CSV ids like "00012", which would otherwise parse as 12)
    id_type: Literal["auto", "int64", "string"] = "auto"
    unknown_items: Literal["drop", "cold"] = "cold"
    # what the events' position counts from: 0 = the top is 0 (the contract), 1 = the top is 1 (GA4's item
    # index and many exports); auto: 1 where no known position is 0, else 0 (the data step says which it chose)
    position_base: Literal["auto", 0, 1] = "auto"

    @model_validator(mode="after")
    def _mapped_only_in_contract_files(self) -> DataConfig:
        for table, fmt in (("events", self.events_format), ("items", self.items_format)):
            if fmt != "contract" and self.columns.get(table):  # type: ignore[call-overload]
                raise ValueError(
                    f"columns.{table} maps the contract's own files; data.{table}_format: {fmt} reads its format's "
                    f"own columns (docs/data.md)"
                )
        return self

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, value: dict) -> dict:
        for table, mapping in value.items():
            known = CONTRACT_COLUMNS[table]
            for name in mapping:
                if name not in known:
                    raise ValueError(f"{table}: {name!r} is not a contract column (have {sorted(known)})")
        return value


class EncoderConfig(_Strict):
    # None: the bundled all-MiniLM-L6-v2. Otherwise a local Hugging Face / sentence-transformers folder.
    path: Path | None = None
    title_tokens: int = Field(32, ge=4, le=512)
    # auto: fine-tune the encoder on the training window's query -> clicked-title pairs and serve it only
    # where it beats the encoder it started from on the validation window, in retrieval recall@300 and
    # NDCG@10 by cosine both (builders/learning/fine_tune.py; docs/quality.md); off: never
    fine_tune: Literal["auto", "off"] = "auto"
    fine_tune_pairs: int = Field(20_000, ge=100, description="the most (query, clicked title) pairs trained on")
    fine_tune_epochs: int = Field(1, ge=1, le=10)


class GBDTConfig(_Strict):
    """The gradient-boosted ranker (``builders/learning/gbdt.py``: LightGBM's lambdarank)."""

    learning_rate: float = Field(0.05, gt=0, le=1)
    num_leaves: int = Field(31, ge=2, le=4096)
    min_data_in_leaf: int = Field(50, ge=1)
    feature_fraction: float = Field(0.9, gt=0, le=1)
    rounds: int = Field(400, ge=1, le=10_000, description="the most trees; early stopping on the validation window")
    early_stopping: int = Field(40, ge=1)
    # the similarity term's weight (one per model): each is tried, the validation window keeps one
    sim_weights: tuple[float, ...] = Field((0.0, 0.5, 1.0), min_length=1)
    sim_tie: float = Field(
        0.001,
        ge=0,
        description="validation NDCG@10 differences below this are ties, won by the larger similarity weight: "
        "a new item has no other signal than its title, and the validation window holds few new items",
    )
    position_regularization: float = Field(0.0, ge=0, description="LightGBM's lambdarank_position_bias_regularization")
    seed: int = 0


class RankerConfig(_Strict):
    # auto: train the DCN-v2 and the gradient-boosted LambdaMART ranker on the same rows and serve the one with
    # the better debiased (IPS) NDCG@10 on the validation window; dcn or gbdt: only that one
    kind: Literal["auto", "dcn", "gbdt"] = "auto"
    gbdt: GBDTConfig = GBDTConfig()
    epochs: int = Field(4, gt=0, le=100)
    batch_size: int = Field(2048, gt=0)
    learning_rate: float = Field(2e-3, gt=0, lt=1)
    embedding_dim: int = Field(16, gt=0, le=256)
    cross_layers: int = Field(2, ge=0, le=8)
    hidden: tuple[int, ...] = (128, 64)
    seed: int = 0
    # pal: position-debiased training. The DCN models clicks as P(seen | position) x P(click | seen), the first
    # learned in training only (PAL, builders/learning/dcn.fit); the GBDT learns a factor per position in
    # LightGBM's unbiased lambdarank. none: plain clicks, which also teaches the logged order
    position_bias: Literal["pal", "none"] = "pal"
    # this share of the training lists is ranked as for a visitor the build does not know (no user id, no
    # affinities, no profile), so the unknown user's row is learned: a shop without anonymous traffic (the
    # demo) never trains it otherwise, and a cold session's recent clicks then met an untrained row
    cold_share: float = Field(0.1, ge=0, lt=1)


class SplitConfig(_Strict):
    """Cut points as fractions of the events' time span: statistics | train | validation | test."""

    stats: float = Field(0.5, gt=0, lt=1)
    train: float = Field(0.8, gt=0, lt=1)
    validation: float = Field(0.9, gt=0, lt=1)

    @model_validator(mode="after")
    def _ordered(self) -> SplitConfig:
        if not self.stats < self.train < self.validation:
            raise ValueError(
                f"cut points must increase: stats {self.stats} < train {self.train} < validation {self.validation}"
            )
        return self


class QueryStatsConfig(_Strict):
    """The query behaviour statistics (``builders/learning/query_stats.py``; docs/quality.md measures them)."""

    enabled: bool = Field(True, description="false: no query is known; the ranker sees only the lexicon and encoder")
    min_lists: int = Field(2, ge=1, description="a query needs this many ranked lists in the statistics window")
    max_queries: int = Field(1_000_000, ge=1, description="the most frequent queries kept")
    top_items: int = Field(200, ge=1, le=10_000, description="items kept per query (most clicked, then shown)")
    top_categories: int = Field(16, ge=1, le=1_000)
    top_brands: int = Field(16, ge=1, le=1_000)
    # a query not in the tables borrows from its nearest head queries by the encoder's cosine
    borrow_neighbours: int = Field(3, ge=0, le=16, description="head queries a query borrows from; 0: none")
    # 0.5: the best validation NDCG@10 of tail and unseen queries on both generated shops (docs/quality.md)
    borrow_min_similarity: float = Field(0.5, ge=-1, le=1, description="the cosine a borrowed query needs")
    borrow_queries: int = Field(20_000, ge=0, description="the most frequent queries that can be borrowed")
    # the ranker trains on the statistics window's tables; the served ones can count a window as long that
    # ends where the held-out days begin, so a query that rose since is known (docs/quality.md measures it)
    window: Literal["stats", "newest"] = Field(
        "newest",
        description="the served tables' window: stats (as trained) or newest (as long, ending at the held-out days)",
    )


class CovisitConfig(_Strict):
    """The co-visitation tables (``builders/learning/covisit.py``; docs/retrieval.md measures them)."""

    enabled: bool = Field(True, description="false: no pair is known; recommendations follow the embeddings only")
    top: int = Field(50, ge=1, le=1_000, description="co-visited items kept per item (by weight)")
    max_lag: int = Field(20, ge=1, le=200, description="a pair is two interactions at most this many apart")
    decay_s: float = Field(3_600.0, gt=0, description="a pair's weight is exp(-seconds between them / this)")
    smoothing: float = Field(5.0, ge=0, description="pseudo-interactions added to each item's own weight")


class FeaturesConfig(_Strict):
    user_segment: str | None = None  # a users column used as the categorical user segment feature
    query_stats: QueryStatsConfig = QueryStatsConfig()
    covisit: CovisitConfig = CovisitConfig()


class EvaluationConfig(_Strict):
    # An events column with a graded true relevance per impression. Only a generated shop has one
    # (the demo writes ``relevance``); real logs do not, and the report then says so.
    true_relevance: str | None = None


class RetrievalConfig(_Strict):
    """Retrieval from the whole catalogue (the search_catalog / recommend_catalog ensembles)."""

    candidates: int = Field(300, ge=1, le=1000, description="N: items retrieved, filtered and ranked per request")
    index: Literal["auto", "flat", "ivf"] = "auto"  # auto: exact below 20,000 items, IVF above
    nlist: int | None = Field(None, ge=1, description="ivf lists; default about 2*sqrt(items), at most 4096")
    recall_target: float = Field(0.95, gt=0, le=1, description="ivf: recall@N vs exact that picks nprobe")
    popular_share: float = Field(0.5, ge=0, le=1, description="recommendations: share of N from the most clicked")
    covisit_share: float = Field(
        0.5, ge=0, le=1, description="recommendations: share of N at most from the items co-visited with the context"
    )
    viewed_popular_share: float = Field(
        0.0, ge=0, le=1, description="recommendations beside viewed items: share of the rest from the most clicked"
    )
    behaviour_share: float = Field(
        0.3, ge=0, le=1, description="search: share of N at most from the items clicked after the query"
    )
    category_boost: float = Field(
        0.3, ge=0, description="search: the nearest items re-ordered by cosine + this x the query's category share"
    )
    embedding_dtype: Literal["float16", "float32"] = Field(
        "float16", description="the served item embedding table (topk, re-scoring); float16 halves its memory"
    )
    engine: Literal["auto", "faiss", "scan"] = Field(
        "auto",
        description="nearest neighbours by the FAISS index, or by scan: the item_scan model, an exact matrix "
        "product over the item table (builders/repository/item_scan.py); auto: scan on the gpu target (on the GPU), "
        "faiss on the cpu target",
    )

    def uses_scan(self, target: str) -> bool:
        """Whether the ``target``'s retrieval models call the ``item_scan`` model."""
        return self.engine == "scan" or (self.engine == "auto" and target == "gpu")


class RetrainConfig(_Strict):
    """The nightly retrain's gate and watch (``python -m retrain``; docs/retrain.md)."""

    margin: float = Field(0.01, ge=0, lt=1, description="the NDCG@10 a candidate may lose (relative) and be promoted")
    latency_margin: float = Field(0.25, ge=0, description="the p50 a candidate may add (relative) and be promoted")
    max_lists: int = Field(1500, ge=10, description="held-out lists both releases rank, newest first")
    watch_s: float = Field(60.0, ge=0, description="how long a promoted release is watched before it is kept")
    error_margin: float = Field(0.01, ge=0, lt=1, description="the served error rate it may add (absolute)")
    watch_latency_margin: float = Field(0.5, ge=0, description="the mean served request time it may add (relative)")
    keep_refused: int = Field(
        3, ge=0, description="refused candidates kept aside, newest first (each a whole repository); 0 keeps none"
    )


class ShopConfig(_Strict):
    name: str = Field(description="names the build's cache folder build/<name>/")
    data: DataConfig
    encoder: EncoderConfig = EncoderConfig()
    ranker: RankerConfig = RankerConfig()
    split: SplitConfig = SplitConfig()
    features: FeaturesConfig = FeaturesConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    quality_margin: float = Field(0.01, ge=0, lt=1)
    retrain: RetrainConfig = RetrainConfig()

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", value):
            raise ValueError("use letters, digits, '.', '_' and '-' (it names a folder)")
        return value

    def resolved(self, base: Path) -> ShopConfig:
        """Relative paths made absolute against ``base`` (the config file's folder)."""
        data = self.data.model_copy(update={"folder": (base / self.data.folder).resolve()})
        enc = self.encoder
        if enc.path is not None:
            enc = enc.model_copy(update={"path": (base / enc.path).resolve()})
        return self.model_copy(update={"data": data, "encoder": enc})


def _format(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        got = (
            f" (got {e['input']!r})"
            if e["type"] not in ("missing", "extra_forbidden") and "input" in e and not isinstance(e["input"], dict)
            else ""
        )
        msg = "unknown field: check the spelling" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"{source}: {where}: {msg}{got}")
    return "\n".join(lines)


def parse(raw: dict, source: str = "config", base: Path = Path(".")) -> ShopConfig:
    try:
        return ShopConfig.model_validate(raw).resolved(base)
    except ValidationError as err:
        raise ConfigError(_format(err, source)) from None


def load(path: str | Path) -> ShopConfig:
    """Read and validate ``path``; raises ConfigError naming the file and every wrong field."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path.name}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path.name}: expected a mapping of fields at the top level, got {type(raw).__name__}")
    return parse(raw, path.name, path.parent)


def cache_key(cfg: ShopConfig) -> dict:
    """The config as plain JSON (paths as text), for the build steps' cache keys."""
    return cfg.model_dump(mode="json")
