"""The ranker behind ``models.inference.CandidateRanker``: checkpoint save/load and one-forward scoring.

Checkpoint = one ``torch.save`` dict: config, feature sizes, funnel, state_dict, the anchor sources serving
needs (co-occurrence table, the latest popular group) and a version string, so it rebuilds itself.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.checkpoints import load_checkpoint
from models.data.schema import Funnel
from models.ranker.anchors import AnchorSources
from models.ranker.compiled import StaticRankerForward
from models.ranker.config import RankerConfig, feature_sizes_from_dict
from models.ranker.features import collate, request_features
from models.ranker.model import OnePieceRanker
from models.ranker.retrieval import CooccurrenceTable
from models.types import RequestContext, UserHistory

CHECKPOINT_FORMAT = 1


class TorchCandidateRanker:
    """Scores the N candidates of a request in one forward pass (context encoded once)."""

    def __init__(
        self,
        model: OnePieceRanker,
        sources: AnchorSources,
        funnel: Funnel,
        version: str,
        backend: str = "eager",
        threads: int = 1,
    ) -> None:
        """backend: ``eager`` (PyTorch modules) or a ``models.ranker.compiled`` backend (``auto``,
        ``onnxruntime``, ``torchscript``) for one-request calls; batches of several requests run eagerly."""
        self.model = model.eval()
        self.static = (
            None if backend == "eager" else StaticRankerForward(self.model, backend, threads=threads)
        )
        # serving has no popularity timeline: the popular group is the one saved at training time
        self.sources = AnchorSources(sources.cooccurrence, sources.popular_latest, None)
        self.funnel = funnel
        self.version = version

    @property
    def candidate_sources(self) -> tuple[str, ...]:
        """The candidate sources whose ranks this ranker reads (() = it reads none)."""
        return self.model.config.candidate_sources

    def score(
        self,
        history: UserHistory,
        context: RequestContext,
        candidates: np.ndarray,
        source_rank: np.ndarray | None = None,
    ) -> np.ndarray:
        """candidates [N] item indices (+ source_rank [N, S] when the ranker reads sources) -> [N] scores."""
        ranks = None if source_rank is None else [source_rank]
        return self.score_batch([history], [context], [candidates], ranks)[0]

    def score_batch(
        self,
        histories: list[UserHistory],
        contexts: list[RequestContext],
        candidates: list[np.ndarray],
        source_ranks: list[np.ndarray] | None = None,
        candidate_features: list[np.ndarray] | None = None,
    ) -> list[np.ndarray]:
        """Per request, [N_i] scores of its candidates (+ their source ranks [N_i, S] and features
        [N_i, F] where the model reads them)."""
        if not (len(histories) == len(contexts) == len(candidates)):
            raise ValueError("histories, contexts and candidates must have the same length")
        if not histories:
            return []
        cleaned = []
        for items in candidates:
            items = np.asarray(items, dtype=np.int64)
            if items.ndim != 1:
                raise ValueError(f"candidates must be 1-d item indices, got shape {items.shape}")
            # unknown/out-of-range indices are scored as the unknown item rather than failing the request
            cleaned.append(np.where((items >= 2) & (items < self.model.sizes.num_items), items, 1))
        if all(len(items) == 0 for items in cleaned):
            return [np.zeros(0, dtype=np.float32) for _ in cleaned]
        config, sizes = self.model.config, self.model.sizes
        features = [
            request_features(config, sizes, self.funnel, self.sources, h, c)
            for h, c in zip(histories, contexts, strict=True)
        ]
        batch = collate(
            config, features, cleaned, source_ranks=source_ranks, candidate_features=candidate_features
        )
        with torch.inference_mode():
            if self.static is not None and len(histories) == 1:
                logits = self.static.task_logits(batch)
            else:
                logits = self.model(batch).task_logits
            scores = self.model.serving_score(logits).numpy()
        return [scores[row, : len(items)].astype(np.float32) for row, items in enumerate(cleaned)]


def checkpoint_dict(
    model: OnePieceRanker, sources: AnchorSources, funnel: Funnel, version: str
) -> dict[str, Any]:
    return {
        "format": CHECKPOINT_FORMAT,
        "kind": "onepiece-ranker",
        "version": version,
        "config": model.config.to_dict(),
        "sizes": asdict(model.sizes),
        "funnel": {
            "names": list(funnel.names),
            "rating_thresholds": list(funnel.rating_thresholds) if funnel.rating_thresholds else None,
            "click_actions": [int(a) for a in funnel.click_actions],
            "pay_actions": [int(a) for a in funnel.pay_actions],
        },
        "state_dict": model.state_dict(),
        "anchors": {
            "neighbours": torch.from_numpy(sources.cooccurrence.neighbours),
            "weights": torch.from_numpy(sources.cooccurrence.weights),
            "popularity": torch.from_numpy(sources.cooccurrence.popularity),
            "popular_latest": torch.from_numpy(np.asarray(sources.popular_latest, dtype=np.int64)),
        },
    }


def save_ranker(
    path: Path | str, model: OnePieceRanker, sources: AnchorSources, funnel: Funnel, version: str = "ranker-0"
) -> Path:
    """Writes the checkpoint atomically (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    torch.save(checkpoint_dict(model, sources, funnel, version), temporary)
    temporary.replace(path)
    return path


def load_ranker(path: Path | str, backend: str = "eager", threads: int = 1) -> TorchCandidateRanker:
    """Rebuilds the model from a checkpoint written by ``save_ranker``; ``backend``/``threads``: how
    one-request calls run (``TorchCandidateRanker``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ranker checkpoint not found: {path}")
    checkpoint = load_checkpoint(path)
    if checkpoint.get("kind") != "onepiece-ranker" or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a ranker checkpoint of format {CHECKPOINT_FORMAT}")
    config = RankerConfig.from_dict(checkpoint["config"])
    sizes = feature_sizes_from_dict(checkpoint["sizes"])
    state = checkpoint["state_dict"]
    model = OnePieceRanker(config, sizes, state["embed.item_category"])
    model.load_state_dict(state)
    funnel_fields = checkpoint["funnel"]
    funnel = Funnel(
        names=tuple(funnel_fields["names"]),
        rating_thresholds=tuple(funnel_fields["rating_thresholds"])
        if funnel_fields["rating_thresholds"]
        else None,
        click_actions=tuple(funnel_fields["click_actions"]),
        pay_actions=tuple(funnel_fields["pay_actions"]),
    )
    anchors = checkpoint["anchors"]
    table = CooccurrenceTable(
        anchors["neighbours"].numpy(), anchors["weights"].numpy(), anchors["popularity"].numpy()
    )
    sources = AnchorSources(table, anchors["popular_latest"].numpy(), None)
    return TorchCandidateRanker(model, sources, funnel, str(checkpoint["version"]), backend, threads)
