"""Request and response bodies of the public API (pydantic). Ids are the catalogue's raw ids."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    StringConstraints,
    model_validator,
)

from app.services.events import ACTION_NAMES


def _as_text(value: str | int) -> str:
    text = str(value)
    if not text or len(text) > 256:
        raise ValueError("ids are 1..256 characters")
    return text


RawId = Annotated[StrictStr | StrictInt, AfterValidator(_as_text)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=128)]
UnixSeconds = Annotated[int, Field(ge=0, le=2**40, description="unix seconds")]
ActionName = Literal[tuple(ACTION_NAMES)]  # type: ignore[valid-type]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RequestContextBody(BaseModel):
    """Where and when the request happens; extra free-form keys are allowed (bounded by a setting)."""

    model_config = ConfigDict(extra="allow")
    scene: Name | None = Field(default=None, description="surface, e.g. home, detail, search")
    device: Name | None = Field(default=None, description="e.g. ios, android, web")
    timestamp: UnixSeconds | None = Field(default=None, description="request time; default now")


class Filters(_Strict):
    category_in: list[Name] | None = Field(default=None, max_length=200, description="keep only these")
    category_not_in: list[Name] = Field(default_factory=list, max_length=200, description="drop these")


class Options(_Strict):
    explain: bool = Field(default=False, description="add per-stage timings to meta")
    diversity: float = Field(default=0.0, ge=0.0, le=1.0, description="MMR trade-off; 0 = off")
    exclude_seen: bool | None = Field(
        default=None,
        description="drop items in the user's recent history; default: the bundle's choice (it allows "
        "re-recommending seen items only where its data has re-visits)",
    )


class RecommendRequest(_Strict):
    user_id: RawId
    k: int = Field(default=10, ge=1, le=200)
    session_id: Name | None = None
    context: RequestContextBody | None = None
    anchors: list[RawId] = Field(default_factory=list, description="items to recommend around")
    exclude: list[RawId] = Field(default_factory=list, description="items never to return")
    filters: Filters = Field(default_factory=Filters)
    options: Options = Field(default_factory=Options)


class Item(BaseModel):
    item_id: str
    rank: int
    score: float
    source: str = Field(description="ranker | ann | cooccurrence | popular")
    title: str | None = Field(default=None, description="catalogue title, when the dataset has one")
    category: str | None = Field(default=None, description="catalogue category (first genre for films)")


class Meta(BaseModel):
    request_id: str | None
    model_version: str
    index_version: str
    served_by: str = Field(
        description="cache | online | cold_start | popular (recommend); similar items: ann"
    )
    timings_ms: dict[str, float] | None = None


class RecommendResponse(BaseModel):
    items: list[Item]
    meta: Meta
    warnings: list[str] = Field(default_factory=list)


class EventBody(_Strict):
    event_id: Name | None = Field(
        default=None,
        description="idempotency key, unique per user (e.g. a UUID); default: a hash of the event's fields",
    )
    user_id: RawId
    item_id: RawId
    action: ActionName  # type: ignore[valid-type]
    timestamp: UnixSeconds
    value: float = Field(default=1.0, ge=-1e6, le=1e6, description="rating for 'rate', else 1")
    session_id: Name | None = None
    context: RequestContextBody | None = None


class EventsRequest(_Strict):
    events: list[EventBody] = Field(min_length=1, max_length=1000)


class EventsResponse(BaseModel):
    accepted: int = Field(description="events now stored (each exactly once)")
    duplicates: int = Field(
        default=0, description="of those, events whose idempotency key was already stored (a retry)"
    )


class ReloadRequest(_Strict):
    bundle_path: str | None = Field(default=None, description="default: the configured/current bundle")
    bundle_url: str | None = Field(
        default=None,
        description="a packed bundle (tandem bundle pack), http(s):// or file://: every process fetches it "
        "into its own var dir; needs sha256, excludes bundle_path",
    )
    sha256: str | None = Field(
        default=None, pattern="^[0-9a-f]{64}$", description="the sha256 of the bundle_url archive"
    )

    @model_validator(mode="after")
    def _one_source(self) -> ReloadRequest:
        if (self.bundle_url is None) != (self.sha256 is None):
            raise ValueError("bundle_url and sha256 go together")
        if self.bundle_url is not None and self.bundle_path is not None:
            raise ValueError("name either bundle_path or bundle_url, not both")
        return self


class ReloadResponse(BaseModel):
    model_version: str
    index_version: str
    serving_path: str
    bundle_path: str
    process: str = Field(description="the process that answered: role:host:pid")
    processes: dict[str, str] = Field(
        default_factory=dict, description="every live process -> the model version it serves"
    )
    converged: bool = Field(description="every live process serves this model version")


class BundleResponse(BaseModel):
    """The live bundle and the served pipeline it runs, plus ``upgrade`` (none | building | ready | live |
    failed) and its ``upgrade_*`` details when a better bundle is built in the background."""

    model_config = ConfigDict(extra="allow")

    bundle_path: str | None
    model_version: str
    index_version: str
    serving_path: str
    candidate_sources: list[str] = Field(description="the sources merged into the candidate list, in order")
    merge_weights: list[float]
    ranker_served: bool = Field(description="false: the merged order is served (the ranker did not beat it)")
    ranker_kind: str | None = Field(
        default=None,
        description="the ranker the gate kept: gbdt (LambdaMART on all features), gbdt_<feature set> (on a "
        "subset, e.g. gbdt_no_side) or onepiece (transformer)",
    )
    ranker_gain: float | None = Field(
        default=None,
        description="the gate's cross-fitted NDCG@10 of the kept ranker over the merged order (1.0 = equal)",
    )
    allow_seen: bool
    offline: dict[str, Any] = Field(
        default_factory=dict, description="the bundle's offline replay metrics (test and validation periods)"
    )


class HealthResponse(BaseModel):
    status: str
    detail: dict[str, Any] = Field(default_factory=dict)
