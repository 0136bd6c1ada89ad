"""Service settings: one pydantic-settings class, read from ``TANDEM_*`` environment variables.

Every knob the API, the worker, docker-compose and the docs refer to is a field here; the compose test
checks that each ``TANDEM_*`` variable used in ``docker-compose.yml`` names one of these fields.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _split_keys(value: object) -> object:
    """Accept ``a,b,c`` (environment) as well as a list (code)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """All serving settings. Environment: ``TANDEM_<FIELD>`` (case-insensitive)."""

    model_config = SettingsConfigDict(env_prefix="TANDEM_", extra="ignore")

    # artifacts
    bundle_path: Path | None = Field(
        default=None,
        description="artifact bundle directory; unset = the default bundle under var/ (the baseline one is "
        "built if none is, never trained)",
    )
    data_dir: Path = Field(
        default=Path("../shared/data"), description="shipped datasets (for the default bundle)"
    )
    var_dir: Path = Field(default=Path("var"), description="where default bundles are built and kept")
    bundle_url: str | None = Field(
        default=None,
        description="a packed bundle (tandem bundle pack) to fetch at start, http(s):// or file://, into "
        "var_dir/fetched; needs bundle_sha256 (replicas without a shared disk)",
    )
    bundle_sha256: str | None = Field(default=None, description="the sha256 of the bundle_url archive")
    bundle_upgrade_file: Path | None = Field(
        default=None,
        description="status file of a background bundle build, whose bundle is published through the bundle "
        "registry when ready (set by tandem serve)",
    )

    # user-state store
    redis_url: str | None = Field(
        default=None, description="Redis URL; unset = embedded in-process store + worker"
    )
    redis_socket_timeout_s: float = Field(
        default=0.25, gt=0, description="per-command socket read/write timeout"
    )
    redis_connect_timeout_s: float = Field(default=0.25, gt=0, description="TCP connect timeout")
    redis_retries: int = Field(default=2, ge=0, le=10, description="retries of a failed Redis command")
    redis_max_connections: int = Field(default=64, ge=1, description="connection pool size per process")
    key_prefix: str = Field(default="tandem", description="prefix of every Redis key")
    redis_cluster: bool = Field(
        default=False,
        description="redis_url lists Redis Cluster startup nodes (comma-separated); must match the server's "
        "cluster_enabled",
    )
    stream_shards: int = Field(
        default=8,
        ge=1,
        le=1024,
        description="Redis Cluster only: event stream shards <prefix>:events:{<n>}, a user's entries in one",
    )

    # recommend pipeline
    candidate_count: int = Field(
        default=300, ge=10, le=5000, description="ANN candidates fetched per request"
    )
    k_max: int = Field(default=200, ge=1, le=200, description="largest k a request may ask for")
    history_length: int = Field(default=200, ge=1, le=5000, description="recent events kept per user")
    vector_ttl_s: int = Field(default=86400, ge=1, description="lifetime of a cached user vector")
    anchors_max: int = Field(default=50, ge=0, description="largest number of anchor items per request")
    exclude_max: int = Field(default=1000, ge=0, description="largest exclude list per request")
    context_extra_max: int = Field(default=16, ge=0, description="most free-form keys in a request context")
    torch_threads: int = Field(default=1, ge=1, le=64, description="torch intra-op threads per process")
    warm_vectors: bool = Field(
        default=True,
        description="the worker pre-computes the cached vectors of the bundle's known users "
        "(at start and after every reload)",
    )
    gil_switch_ms: float = Field(
        default=0.5,
        gt=0,
        le=100,
        description="Python's thread switch interval (sys.setswitchinterval; Python's default is 5): how "
        "long the event loop, having released the GIL for a socket call, may wait for a CPU-bound thread "
        "(the worker's encoder) to yield it",
    )
    cpu_workers: int = Field(
        default=2,
        ge=1,
        le=64,
        description="threads per process that run the request's CPU work (encoder, sources, ranker)",
    )
    ranker_backend: Literal["auto", "onnxruntime", "torchscript", "eager"] = Field(
        default="auto",
        description="how one request's model work runs (the ranker's forward, one user's encoder blocks, "
        "a GBDT's trees): exported / compiled copies (auto = onnxruntime when installed, else "
        "torchscript; lleaves for trees) or eager PyTorch and LightGBM",
    )

    index_backend: Literal["faiss", "milvus"] = Field(
        default="faiss",
        description="where the ANN source searches the item vectors: the bundle's faiss index, or a Milvus "
        "collection published from it (needs milvus_uri and the scale extra)",
    )
    milvus_uri: str | None = Field(
        default=None, description="Milvus server URI (http://host:19530) or a milvus-lite .db path"
    )
    milvus_timeout_ms: int = Field(default=200, ge=1, description="deadline of one Milvus search")

    # protection
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="accepted X-API-Key values (comma-separated); empty = open"
    )
    admin_key: str | None = Field(
        default=None, description="X-Admin-Key for /v1/admin/*; unset = admin disabled"
    )
    max_body_bytes: int = Field(default=1_000_000, ge=1024, description="largest accepted request body")
    max_in_flight: int | None = Field(
        default=None,
        ge=1,
        description="concurrent /v1 requests per process before 429; unset = capacity_rps x latency budget",
    )
    capacity_rps: float = Field(
        default=200.0,
        gt=0,
        description="requests/s one process sustains (measured; sizes the in-flight limit)",
    )
    latency_budget_ms: float = Field(
        default=250.0,
        gt=0,
        description="longest a request may wait in this process (sizes the in-flight limit)",
    )
    bundle_sync_interval_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="how often each process checks for a reload and reports its bundle",
    )
    reload_wait_s: float = Field(
        default=15.0, ge=0, le=300, description="how long a reload answer waits for every process to follow"
    )
    drain_seconds: float = Field(
        default=5.0, ge=0, description="readyz answers 503 this long before shutdown"
    )

    # events
    event_max_future_s: int = Field(
        default=86400, ge=0, description="events timestamped further ahead of the server clock get 422"
    )
    event_dedupe_ttl_s: int = Field(
        default=86400, ge=1, description="how long an event's idempotency key is remembered (retries dedupe)"
    )

    # near-line worker
    stream_maxlen: int = Field(
        default=1_000_000,
        ge=1000,
        description="most unprocessed stream entries; beyond it events get 503 backlog_full (none dropped)",
    )
    worker_batch_size: int = Field(default=256, ge=1, description="stream entries read per worker step")
    worker_block_ms: int = Field(
        default=500, ge=1, description="how long a worker read waits for new entries"
    )
    worker_process: bool = Field(
        default=True,
        description="embedded mode (no Redis): the worker's encoder forwards run in a child process (the "
        "bundle loaded there too, ~+0.5 GB), so they neither hold the API's GIL nor share its core",
    )
    worker_coalesce_ms: int = Field(
        default=50,
        ge=0,
        le=5000,
        description="after a read finds entries, wait this long for more before recomputing, so a burst of "
        "one user's events costs one forward (requests stay fresh: a stale vector is recomputed online)",
    )
    worker_claim_idle_ms: int = Field(default=30_000, ge=0, description="pending this long = re-claimed")
    worker_consumer: str | None = Field(default=None, description="consumer name; unset = host-pid")
    worker_consumer_idle_ms: int = Field(
        default=3_600_000, ge=1000, description="consumers idle this long with nothing pending are removed"
    )

    log_level: str = Field(default="INFO", description="log level of the JSON logs")

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_keys(cls, value: object) -> object:
        return _split_keys(value)

    @field_validator("redis_url", "admin_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.candidate_count < self.k_max:
            raise ValueError(f"candidate_count ({self.candidate_count}) must be >= k_max ({self.k_max})")
        if self.redis_cluster and self.redis_url is None:
            raise ValueError("redis_cluster needs redis_url (the cluster's startup nodes)")
        if self.index_backend == "milvus" and not self.milvus_uri:
            raise ValueError("index_backend milvus needs milvus_uri")
        if self.index_backend == "milvus" and not re.fullmatch(
            r"[A-Za-z_][A-Za-z0-9_]{0,200}", self.key_prefix
        ):
            raise ValueError(
                f"key_prefix {self.key_prefix!r} cannot start a Milvus collection name (<prefix>_items_...): "
                "letters, digits and _ only, not starting with a digit"
            )
        if (self.bundle_url is None) != (self.bundle_sha256 is None):
            raise ValueError("bundle_url and bundle_sha256 go together (tandem bundle pack prints both)")
        return self

    @property
    def bundle_source(self) -> tuple[str, str] | None:
        """(url, sha256) of the packed bundle to start from, when one is configured."""
        if self.bundle_url is None or self.bundle_sha256 is None:
            return None
        return self.bundle_url, self.bundle_sha256

    @property
    def fetch_dir(self) -> Path:
        """Where this process fetches bundles named by URL."""
        return Path(self.var_dir) / "fetched"

    @property
    def in_flight_limit(self) -> int:
        """``max_in_flight``, else Little's law: a process that completes ``capacity_rps`` requests/s with
        N in flight makes the last one wait about N / capacity_rps, so N = capacity x budget keeps an
        admitted request within the budget and everything beyond it gets a fast 429."""
        if self.max_in_flight is not None:
            return self.max_in_flight
        return max(1, math.ceil(self.capacity_rps * self.latency_budget_ms / 1000))

    @property
    def embedded(self) -> bool:
        """True when no Redis is configured: in-process store and worker."""
        return self.redis_url is None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment, read once per process."""
    return Settings()
