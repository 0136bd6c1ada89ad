"""The recipe's settings: one typed record per knob, with the ``quick`` preset (the first-run default
bundle, a few minutes on 2 cores) and the ``full`` one (the reference replays of docs/results).

A change to what the recipe builds bumps ``RECIPE`` (bundles record it; an older default bundle of the same
data is rebuilt). Their history: docs/pipeline.md, "Recipe versions".
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

RECIPE = "served-pipeline-15"

WEIGHT_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
SCORE_WEIGHT_GRID = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0)  # weights of standardised scores (score fusion)
# the merge's and the ranker's order of the candidate sources
SOURCE_ORDER = ("ann", "cooccurrence", "transitions", "category", "recent", "popular")

RANKERS = ("gbdt", "onepiece")  # the second stage's candidates (models.recipe.gbdt_stage, ranker_stage)

# the recent-items scorings the ranker period chooses from (RecentItemsSource arguments): action weights
# (a cart or favourite counts more) helped Taobao and hurt synthetic; decay 0.98 per event is a slow
# fade, 0.9 nearly newest-first (docs/pipeline.md, "Re-visits by decayed frequency")
RECENT_CHOICES: tuple[dict[str, Any], ...] = (
    {"decay": 0.98},
    {"decay": 0.98, "action_weights": {}},
    {"decay": 0.9, "action_weights": {}},
)


@dataclass(frozen=True)
class RecipeSettings:
    """What the recipe trains and how long: encoder/ranker presets and budgets, list sizes.

    Budgets are epochs (and steps): the same settings build the same model on a busy machine. The
    ``*_max_minutes`` caps are a safety net only, reported when they fire (0 = none)."""

    encoder_preset: str = "quick"
    # epochs per encoder variant (0 = no encoder, no ANN source); the quick preset's patience may stop
    # earlier. 24 epochs is what the 3-minute wall-clock budget of earlier replays reached on ML-1M idle
    encoder_epochs: int = 24
    encoder_max_minutes: float = 30.0  # safety cap per variant, not a budget: a build it stops says so
    encoder_overrides: dict[str, Any] = field(default_factory=dict)
    # settings tried besides the preset (each over ``encoder_overrides``, each with the full budget): the
    # one whose best epoch scores highest on the ranker-period targets is kept. τ 0.1 won ML-1M's test by
    # 9% at this budget and lost on the other three datasets (docs/pipeline.md): let validation decide
    encoder_variants: tuple[dict[str, Any], ...] = ({"temperature": 0.1},)
    # the encoder's epoch is picked on this many ranker-period targets, with this patience: at 1,000 and the
    # preset's 4 the score moved by about +-0.01 between epochs and stopped ML-1M's encoder on noise after
    # ~100 s of its 180 (seed 0: ANN 0.1385 -> 0.1415, served 0.1469 -> 0.1590 with 5,000 and 8)
    # processes that train the variants side by side (1 = one after the other in this process); the models
    # are the same either way (each variant seeds its own generators)
    variant_processes: int = 1
    encoder_valid_users: int = 5000
    encoder_patience: int = 8
    ranker_preset: str = "quick"
    ranker_epochs: int = 4
    ranker_min_steps: int = 300  # small ranker periods (Taobao) get more epochs: at least this many updates
    ranker_max_requests: int = (
        0  # 0 = every ranker-period request with a found positive; else a random subset
    )
    ranker_train_candidates: int = 32
    # RankerConfig.contrastive_scope: "group" (the paper's) or "request" (listwise over every candidate)
    ranker_contrastive_scope: str = "group"
    ranker_negative_depth: int = 200  # training negatives come from the merged list's top-N
    ranker_learning_rate: float = 3e-4  # 1e-3 peaked after 1-2 epochs and fell (ML-100K, Taobao, synthetic)
    ranker_weight_decay: float = 0.0  # AdamW's decoupled weight decay on the ranker
    # the residual ranker starts as the merged order and its first epochs often leave the validation
    # score flat: early stopping waits longer than the encoder's before it may fire
    ranker_patience: int = 5
    ranker_min_epochs: int = 6
    # the gate (``ranker_gate``): the validation users fall into this many folds (by user); each fold
    # judges, against the merged order, the epoch that the other folds would have picked, so every
    # validation request judges and none judges an epoch it picked (1 = the same users pick and judge).
    # Served when the cross-fitted mean NDCG@10 is higher by the margin below and, with a level > 0, the
    # paired bootstrap interval of ranker / merged at that two-sided level lies above 1 as well. Level 0.9:
    # Taobao's ranker passed a point-only gate at +0.8% on 339 validation requests and lost 1.2% on the
    # test (the served pipeline 0.4% under its merged order); on a few hundred requests such a gain is
    # noise, and the cheaper merged order is served (docs/pipeline.md, "The gate asks for a sure gain")
    ranker_gate_folds: int = 5
    ranker_gate_level: float = 0.9
    # ... and by at least this share: the ranker costs a forward pass per request, and every ranker the
    # replays served on a cross-fitted gain under 0.5% (ML-1M 1.003, 1.004, 1.003, 1.0025; ML-100K
    # 1.003, 1.0006) was at or below the merged order on the test (docs/pipeline.md)
    ranker_gate_margin: float = 0.005
    # the rankers trained and offered to the gate: "gbdt" (LightGBM LambdaMART over per-candidate
    # features, models.recipe.gbdt_stage) and "onepiece" (the transformer, models.recipe.ranker_stage)
    rankers: tuple[str, ...] = ("gbdt", "onepiece")
    gbdt_depth: int = 100  # the GBDT reorders (and trains on) the merged top this-many
    gbdt_learning_rate: float = 0.05
    gbdt_max_rounds: int = 1500
    gbdt_patience: int = 100  # rounds without a better validation NDCG@10 before LightGBM stops
    gbdt_checkpoint_rounds: int = 25  # the gate judges the model cut every this-many rounds
    # the GBDT's feature sets offered to the gate (names of models.candidates.features.ABLATIONS), one model
    # each on the same requests, the gate keeping the best cross-fitted one. Without side information
    # ML-100K's GBDT beat all features on the test in two replays (1.067 vs 1.035, 1.106 vs 1.080 of the
    # merged order, seed 0) and ML-1M's lost (1.071 vs 1.121): validation decides per log
    gbdt_feature_sets: tuple[str, ...] = ("all", "no_side")
    # feature ablations trained beside the GBDT (names of models.candidates.features.ABLATIONS) for the
    # reports, in the first this-many seeds; the bundle never serves them
    gbdt_ablations: tuple[str, ...] = ("no_context", "no_side", "sources_only")
    gbdt_ablation_seeds: int = 1
    # the transformer's candidate tokens read the GBDT's per-candidate features (of the merged top
    # gbdt_depth, which it then reorders); off: it reads its own context, ranks and match features only
    ranker_candidate_features: bool = False
    ranker_rank_prior: float = 1.0  # RankerConfig.rank_prior: residual on the merged order (0 = off)
    ranker_match_features: bool = True  # RankerConfig.match_features: candidate-vs-history match features
    ranker_item_id_dropout: float = 0.0  # RankerConfig.item_id_dropout
    # "auto": tune rank and score fusion on validation, keep the better; "rrf" / "score": only that one
    merge_fusion: str = "auto"
    # the requests the merge weights are tuned on: "all" ranker-period requests (the ranker's training
    # users and its validation users) or only the "valid" ones; at most ``merge_tuning_requests`` of them,
    # drawn at random. Six weights tuned on <= 1,500 validation requests took different values per seed
    # and lost on ML-100K's test what they gained on validation (docs/pipeline.md)
    merge_tuning: str = "all"
    merge_tuning_requests: int = 4000
    # the candidate sources the merge may use (names of SOURCE_ORDER); empty = every one the data feeds
    sources: tuple[str, ...] = ()
    total: int = 200
    quotas: dict[str, int] = field(
        default_factory=lambda: {
            "ann": 200,
            "cooccurrence": 200,
            "transitions": 200,
            "category": 200,
            "recent": 50,
            "popular": 100,
        }
    )
    valid_share: float = 0.2
    # before the test, refit the sources on fit + ranker periods and continue the encoder this many
    # epochs on them (what was chosen on the ranker period stays); False: test on the fit period's fit
    refit_before_test: bool = True
    continue_epochs: int = 1
    threads: int = 1
    # ranker-period targets per user (models.recipe.periods.pipeline_periods); None: the protocol's own
    # (leave-last-out 20, more on a log under 1,000 users: leave_last_out_positions; next-session 4)
    ranker_events: int | None = None
    # next-session: windows of the validation period's length before it that give ranker requests too,
    # each served from a fit on the events before it (models.recipe.periods.next_session_periods); None:
    # the protocol's own (NEXT_SESSION_WINDOWS). The encoder's data ends where the oldest window starts
    ranker_windows: int | None = None
    progress: bool = True
    # keep every source's score of every candidate (validation and test requests) in the outcome, for
    # the fusion bound (models.evaluate.fusion_bound); off: it holds [candidates, sources] per request
    keep_candidates: bool = False

    def __post_init__(self) -> None:
        unknown = sorted(set(self.rankers) - set(RANKERS))
        if unknown:
            raise ValueError(f"unknown ranker(s) {unknown}; expected some of {list(RANKERS)}")
        from models.candidates.features import ABLATIONS

        unknown = sorted((set(self.gbdt_feature_sets) | set(self.gbdt_ablations)) - set(ABLATIONS))
        if unknown:
            raise ValueError(f"unknown GBDT feature set(s) {unknown}; expected some of {list(ABLATIONS)}")

    @classmethod
    def full(cls, **changes: Any) -> RecipeSettings:
        """The reference replays' settings (``tandem eval --stage pipeline``; docs/results/pipeline-*)."""
        return replace(cls(), **changes)

    @classmethod
    def quick(cls, **changes: Any) -> RecipeSettings:
        """The first-run default bundle's settings: fewer encoder epochs, fewer ranker requests and epochs,
        one thread, four ranker-period targets per user."""
        values: dict[str, Any] = {
            "encoder_epochs": 16,
            "ranker_epochs": 2,
            "ranker_max_requests": 4000,
            # one intra-op thread: with two, a build sharing the machine with one busy process spent
            # minutes per encoder epoch (each parallel region waits for the thread behind the other
            # process; 3 s per batch against ~0.06 s), with one it slows by about the share it loses
            "threads": 1,
            "variant_processes": 2,
            "ranker_events": 4,
            "gbdt_learning_rate": 0.1,
            "gbdt_max_rounds": 600,
            "gbdt_patience": 50,
            "gbdt_ablations": (),
        }
        return replace(cls(), **{**values, **changes})


PRESETS = ("quick", "full")


def recipe_settings(preset: str, **changes: Any) -> RecipeSettings:
    """The named preset (``quick`` or ``full``) with ``changes`` applied."""
    if preset not in PRESETS:
        raise ValueError(f"unknown recipe preset {preset!r}; expected one of {PRESETS}")
    return RecipeSettings.quick(**changes) if preset == "quick" else RecipeSettings.full(**changes)
