"""Configuration of the retrieval encoder (session encoder, causal HSTU, SASRec baseline).

One dataclass rebuilds a model: checkpoints store ``asdict(config)`` next to the ``state_dict``.
Defaults follow models.md 1.11 / 2.8 (CPU sizes for MovieLens-1M).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from models.data.schema import Funnel

EncoderKind = Literal["session_encoder", "hstu", "sasrec"]
ENCODER_KINDS: tuple[str, ...] = ("session_encoder", "hstu", "sasrec")

NUM_TIME_BUCKETS = 129  # HSTU rab_t: 128 log buckets + 1 (models.md 2.2)
NUM_GAP_BUCKETS = 16  # context token: bucket of the gap since the previous session (models.md 1.2)


@dataclass
class EncoderConfig:
    """Everything needed to rebuild an encoder.

    ``kind``: ``session_encoder`` (TBGRecall layout, session-wise mask, next-session objective),
    ``hstu`` (causal next-item HSTU), ``sasrec`` (causal softmax Transformer baseline).
    Vocabulary sizes include the pad (0) and unknown (1) rows.
    """

    kind: str = "session_encoder"
    num_items: int = 2
    num_actions: int = 7
    num_categories: int = 2
    num_scenes: int = 2
    num_devices: int = 2
    user_feature_sizes: dict[str, int] = field(default_factory=dict)  # name -> vocabulary size

    dim: int = 64
    num_blocks: int = 2
    num_heads: int = 2
    head_dim: int = 32  # d_qk = d_v
    dropout: float = 0.2
    max_tokens: int = 256  # attention length; oldest sessions/items dropped beyond it

    # session layout (models.md 1.7): the same rules at training and serving time
    session_gap_s: int = 1800
    # items per request: longer sessions are cut into chunks; 0 (presets only) = chosen per dataset by
    # models.train.data.encoder_config_for (1 for rating-only logs, 20 otherwise)
    max_items_per_session: int = 20
    # session_encoder with one item per request: one token per rating instead of two (``folded``): token j
    # carries the item of request j - 1 and the context of request j, so its output is request j's query
    # and the layout is causal (models.encoder.layout.folded_layout). No effect with more items per
    # request. False (the default, and what checkpoints saved without this field get) = the
    # [c1, i1, c2, i2, ...] layout with a context token per request.
    fold_context: bool = False

    # positional signals
    use_rab_t: bool = True
    use_rab_p: bool | None = None  # None: on for hstu, off for session_encoder (models.md 1.5)
    use_rope: bool | None = None  # session-wise RoPE; None: on for session_encoder only
    token_specific: bool = True  # TSN (models.md 1.3), session_encoder only
    # HSTU attention divisor: "max_tokens" (the reference's fixed N) or "keys" (visible keys per query)
    attention_norm: str = "max_tokens"

    # session_encoder: add the mean item-table row of the previous session to each context token's input
    context_pool: bool = False
    # session_encoder start-up: item rows enter the token sum scaled by sqrt(d) (as causal HSTU does), and
    # the TSN projections and MSP heads start as identities without bias, so the first epochs do not have
    # to learn their way out of random projections (measured: docs/retrieval.md, "Start-up")
    identity_start: bool = False
    # session_encoder: item vector = normalize(E_item[i] + E_category[category(i)]) instead of E_item[i]
    # alone, so rarely seen items borrow their category's direction (the category table is the input one)
    item_side_info: bool = False

    # optional mixture-of-experts feed-forward after each HSTU block (models.md 1.6)
    moe_experts: int = 0  # 0 = off
    moe_aux_weight: float = 0.01

    # objective
    temperature: float = 0.05
    msp_horizon: int = 2  # 1 = no multi-session prediction head
    msp_weight: float = 0.5
    # session_encoder: weight of a dense auxiliary L_nce where every item token of session k predicts the
    # items of session k+1 with head g_0 (0 = off)
    item_query_weight: float = 0.0
    click_weight: float = 0.5
    pay_weight: float = 0.5
    # funnel of the dataset (models.data.schema.Funnel fields), used for the level embedding and labels
    funnel_rating_thresholds: tuple[float, float] | None = (4.0, 5.0)
    funnel_click_actions: tuple[int, ...] = (2, 3, 4)
    funnel_pay_actions: tuple[int, ...] = (5,)

    def __post_init__(self) -> None:
        if self.kind not in ENCODER_KINDS:
            raise ValueError(f"EncoderConfig.kind must be one of {ENCODER_KINDS}, got {self.kind!r}")
        if self.use_rab_p is None:
            self.use_rab_p = self.kind == "hstu"
        if self.use_rope is None:
            self.use_rope = self.kind == "session_encoder"
        if self.use_rope and self.head_dim % 2:
            raise ValueError(f"RoPE needs an even head_dim, got {self.head_dim}")
        if self.kind != "session_encoder":
            self.fold_context = False
            self.token_specific = False
            self.item_side_info = False
            self.msp_horizon = 1

    def funnel(self) -> Funnel:
        return Funnel(
            names=("level1", "level2", "level3"),
            rating_thresholds=self.funnel_rating_thresholds,
            click_actions=tuple(self.funnel_click_actions),
            pay_actions=tuple(self.funnel_pay_actions),
        )

    def set_funnel(self, funnel: Funnel) -> None:
        self.funnel_rating_thresholds = funnel.rating_thresholds
        self.funnel_click_actions = tuple(int(a) for a in funnel.click_actions)
        self.funnel_pay_actions = tuple(int(a) for a in funnel.pay_actions)

    @property
    def is_session(self) -> bool:
        return self.kind == "session_encoder"

    @property
    def folded(self) -> bool:
        """One token per request: ``fold_context`` on a session encoder with one item per request."""
        return self.is_session and self.fold_context and self.max_items_per_session == 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(values: dict[str, Any]) -> EncoderConfig:
        known = {f.name for f in fields(EncoderConfig)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown EncoderConfig fields: {sorted(unknown)}")
        values = dict(values)
        for name in ("funnel_rating_thresholds", "funnel_click_actions", "funnel_pay_actions"):
            if isinstance(values.get(name), list):
                values[name] = tuple(values[name])
        return EncoderConfig(**values)
