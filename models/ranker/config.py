"""Configuration of the OnePiece-style ranker (models.md 3.2-3.9) as plain dataclasses.

``RankerConfig`` fixes the network (widths, context lengths, group size C, reasoning steps K, tasks);
``FeatureSizes`` fixes the vocabulary sizes read from a dataset. Both are stored in every checkpoint so a
checkpoint rebuilds its own model. Presets: ``tiny`` (tests), ``quick`` (first ``make serve``, < 2 min),
``default`` (models.md 3.9).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

# Anchor group types (models.md 3.2, ours for data without a search query). Order = order in the sequence.
ANCHOR_STRONG = 0  # the user's own strongest-feedback items (rated >= 4 / carted / bought), most recent first
ANCHOR_REQUEST = 1  # the request's anchor items (RequestContext.anchors)
ANCHOR_NEIGHBOURS = 2  # co-occurrence neighbours of the user's last items
ANCHOR_POPULAR = 3  # most popular items of the days before the request
ANCHOR_TYPE_NAMES = ("strong", "request", "neighbours", "popular")
NUM_ANCHOR_TYPES = len(ANCHOR_TYPE_NAMES)
CONTRASTIVE_SCOPES = ("group", "request")


@dataclass(frozen=True)
class FeatureSizes:
    """Vocabulary sizes of one dataset (each includes rows 0 = pad and 1 = unknown)."""

    num_items: int
    num_categories: int = 2
    num_scenes: int = 2
    num_devices: int = 2
    user_feature_sizes: tuple[tuple[str, int], ...] = ()  # (field name, vocabulary size), sorted by name


@dataclass(frozen=True)
class RankerConfig:
    d_model: int = 64
    num_layers: int = 2
    num_heads: int = 4
    ffn_dim: int = 256
    dropout: float = 0.1
    history_len: int = 50  # interaction-history tokens (most recent items)
    anchor_len: int = 10  # items per anchor group (plus BOS and EOS)
    anchor_types: tuple[int, ...] = (ANCHOR_STRONG, ANCHOR_REQUEST, ANCHOR_NEIGHBOURS, ANCHOR_POPULAR)
    group_size: int = 12  # C: candidates that see each other; 1 = every candidate scored alone
    reasoning_steps: int = 3  # K: block-wise latent reasoning steps, 0 = off
    tasks: tuple[int, ...] = (1, 2, 3)  # funnel levels supervised (models.data.schema.Funnel.levels)
    serving_weights: tuple[float, ...] = (1.0, 0.5, 0.5)  # weight of log sigmoid(task head) per task
    contrastive_weight: float = 1.0
    contrastive_temperature: float = 1.0  # eta (models.md 3.5: 1 on the MLP logits)
    # the contrastive softmax spans each candidate "group" (models.md 3.5, the paper's) or the whole
    # "request" (every candidate of the training request: a listwise loss, what LambdaMART's lists see)
    contrastive_scope: str = "group"
    serving_grouping: str = "item_hash"  # "item_hash" (permutation invariant) or "retrieval_order"
    # training samples (models.md 3.6)
    train_candidates: int = 24  # candidates per training request (split into random groups of C)
    train_max_positives: int = 6
    train_uniform_negatives: int = 3
    retrieval_depth: int = 100  # hard negatives come from the retriever's top-N
    # True: positives only where the retriever found them (as at serving); False: every session item
    train_positives_in_retrieved: bool = False
    # a candidate token also carries its log2-bucketed retrieval rank (cascade feature; breaks the
    # independence of a candidate's score from the list order, so off by default)
    use_retrieval_rank: bool = False
    # > 0: the ranker is a residual on the order it reorders. Every task logit gets
    # prior_scale * -log(1 + merged position), prior_scale a learned scalar starting here, and the heads'
    # last layers start at zero: before training the ranker returns exactly the merged order, and
    # training moves a candidate only where the data says so. 0 = off (older checkpoints).
    rank_prior: float = 0.0
    # names of the candidate sources (models.candidates) whose per-candidate rank is an input feature;
    # () = none. Each candidate token adds one embedding per source: its log2 rank bucket, or "not found".
    candidate_sources: tuple[str, ...] = ()
    # target-aware match features (models.ranker.match: is the candidate, or its category, in the history,
    # how often, how recently) enter every candidate token and, through a zero-initialised linear term,
    # every task logit. False = off (older checkpoints)
    match_features: bool = False
    # > 0: each candidate token also reads this many per-candidate features (the GBDT's
    # models.candidates.features vector: sources' scores and ranks, context, side information), standardised
    # with the training rows' mean and spread, through a projection into the token and a zero-initialised
    # linear term on every task logit. 0 = off (older checkpoints)
    candidate_features: int = 0
    # training only: this share of item ids (history, anchors, candidates) read the unknown row, their
    # category kept; a regulariser for small ranker periods (0 = off)
    item_id_dropout: float = 0.0
    popular_days: int = 7

    def __post_init__(self) -> None:
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by num_heads {self.num_heads}")
        if self.group_size < 1 or self.reasoning_steps < 0:
            raise ValueError("group_size must be >= 1 and reasoning_steps >= 0")
        if not self.tasks or any(level not in (1, 2, 3) for level in self.tasks):
            raise ValueError(f"tasks must be funnel levels in 1..3, got {self.tasks}")
        if len(self.serving_weights) != len(self.tasks):
            raise ValueError("serving_weights needs one weight per task")
        if self.serving_grouping not in ("item_hash", "retrieval_order"):
            raise ValueError(f"unknown serving_grouping '{self.serving_grouping}'")
        if self.contrastive_scope not in CONTRASTIVE_SCOPES:
            raise ValueError(
                f"contrastive_scope must be one of {CONTRASTIVE_SCOPES}, got '{self.contrastive_scope}'"
            )

    @property
    def num_anchor_groups(self) -> int:
        return len(self.anchor_types)

    @property
    def context_len(self) -> int:
        """Tokens before the candidates: IH + anchor groups with BOS/EOS + user + situation token."""
        return self.history_len + self.num_anchor_groups * (self.anchor_len + 2) + 2

    def stage_of_task(self, task_index: int) -> int:
        """Which reasoning output supervises task ``task_index`` (0 = the backbone output R_0).

        Progressive (models.md 3.5): step k carries task k; with fewer steps than tasks the last step carries
        the remaining tasks; with K = 0 every task reads R_0.
        """
        if self.reasoning_steps == 0:
            return 0
        return min(task_index + 1, self.reasoning_steps)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(values: dict[str, Any]) -> RankerConfig:
        fixed: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return RankerConfig(**fixed)


def feature_sizes_from_dict(values: dict[str, Any]) -> FeatureSizes:
    pairs = tuple((str(name), int(size)) for name, size in values.get("user_feature_sizes", ()))
    return FeatureSizes(**{**values, "user_feature_sizes": pairs})


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 5
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    max_requests_per_user: int = 8  # training target sessions per user (most recent first)
    max_train_requests: int = 0  # 0 = no cap
    threads: int = 2
    # early stopping, with a validation (models.train.loop): epochs without a better score before stopping
    # (0 = never), never before min_epochs; max_minutes: wall-clock budget of the loop (0 = none)
    patience: int = 3
    min_epochs: int = 3
    max_minutes: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


PRESETS: dict[str, tuple[RankerConfig, TrainConfig]] = {
    "tiny": (
        RankerConfig(
            d_model=16,
            num_layers=1,
            num_heads=2,
            ffn_dim=32,
            dropout=0.0,
            history_len=8,
            anchor_len=3,
            group_size=4,
            reasoning_steps=2,
            train_candidates=8,
            train_max_positives=3,
            train_uniform_negatives=2,
            retrieval_depth=20,
        ),
        TrainConfig(epochs=2, batch_size=16, max_requests_per_user=4, threads=1),
    ),
    "quick": (
        RankerConfig(
            d_model=32,
            num_layers=1,
            num_heads=2,
            ffn_dim=64,
            history_len=30,
            anchor_len=6,
            reasoning_steps=2,
            train_candidates=24,
            retrieval_depth=50,
        ),
        TrainConfig(epochs=2, batch_size=64, max_requests_per_user=4, max_train_requests=12000),
    ),
    "default": (RankerConfig(), TrainConfig()),
}


def preset(name: str, **overrides: Any) -> tuple[RankerConfig, TrainConfig]:
    """A named preset with RankerConfig fields overridden (unknown names raise)."""
    if name not in PRESETS:
        raise ValueError(f"unknown ranker preset '{name}', expected one of {sorted(PRESETS)}")
    model_config, train_config = PRESETS[name]
    return replace(model_config, **overrides), train_config
