"""A bundle's ranker on disk, either kind: the GBDT (``ranker/gbdt/``: LightGBM's model text, the feature
state it reads, its depth) or the OnePiece transformer (``ranker/ranker.pt``, weights only; when it reads
the per-candidate features, ``ranker/onepiece/``: its weights, the feature state, its depth). Nothing is
pickled; the bundle's file hashes cover every file (``models.bundle.format``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

GBDT_DIR = "ranker/gbdt"
GBDT_MODEL = "model.txt"
GBDT_SETTINGS = "settings.json"
ONEPIECE_FILE = "ranker/ranker.pt"
FEATURED_DIR = "ranker/onepiece"  # the transformer that reads the per-candidate features
FEATURED_WEIGHTS = "ranker.pt"


def save_any_ranker(ranker: Any, directory: Path) -> str:
    """Writes ``ranker`` into the bundle ``directory``; returns its bundle-relative path."""
    from models.candidates.feature_state_io import save_feature_state
    from models.ranker.featured import FeaturedOnePiece
    from models.ranker.gbdt_serving import MergedReranker
    from models.ranker.serving import TorchCandidateRanker, save_ranker

    if isinstance(ranker, MergedReranker):
        target = directory / GBDT_DIR
        target.mkdir(parents=True, exist_ok=True)
        ranker.ranker.save(target / GBDT_MODEL)
        save_feature_state(ranker.state, target)
        settings: dict[str, Any] = {"kind": "gbdt", "depth": ranker.depth, "sha256": ranker.ranker.sha256}
        if ranker.columns is not None:  # a feature set without some groups: the columns it reads
            settings["columns"] = ranker.columns.tolist()
        (target / GBDT_SETTINGS).write_text(json.dumps(settings) + "\n", encoding="utf-8")
        return GBDT_DIR
    if isinstance(ranker, FeaturedOnePiece):
        target = directory / FEATURED_DIR
        inner = ranker.ranker
        save_ranker(target / FEATURED_WEIGHTS, inner.model, inner.sources, inner.funnel, inner.version)
        save_feature_state(ranker.state, target)
        settings = {"kind": "onepiece", "depth": ranker.depth}
        (target / GBDT_SETTINGS).write_text(json.dumps(settings) + "\n", encoding="utf-8")
        return FEATURED_DIR
    if not isinstance(ranker, TorchCandidateRanker):
        raise TypeError(f"cannot save a ranker of type {type(ranker).__name__}")
    save_ranker(directory / ONEPIECE_FILE, ranker.model, ranker.sources, ranker.funnel, ranker.version)
    return ONEPIECE_FILE


def load_any_ranker(path: Path, backend: str = "eager", threads: int = 1) -> Any:
    """The ranker ``save_any_ranker`` wrote at ``path`` (a GBDT directory or a OnePiece file);
    backend/threads: how a OnePiece ranker scores (``models.ranker.serving.load_ranker``); a GBDT scores
    with its trees compiled unless ``backend`` is ``eager`` (``models.ranker.gbdt_compiled``: LightGBM's
    predictor where compiling is not possible)."""
    from models.ranker.serving import load_ranker

    if not path.is_dir():
        return load_ranker(path, backend=backend, threads=threads)
    from models.candidates.feature_state_io import load_feature_state
    from models.ranker.featured import FeaturedOnePiece
    from models.ranker.gbdt import GbdtRanker
    from models.ranker.gbdt_serving import MergedReranker

    settings = json.loads((path / GBDT_SETTINGS).read_text(encoding="utf-8"))
    depth = int(settings["depth"])
    if settings.get("kind", "gbdt") == "onepiece":
        inner = load_ranker(path / FEATURED_WEIGHTS, backend=backend, threads=threads)
        return FeaturedOnePiece(inner, load_feature_state(path), depth)
    model = GbdtRanker.load(path / GBDT_MODEL, settings["sha256"])
    if backend != "eager":
        model.compile()
    columns = settings.get("columns")
    if columns is not None:
        columns = np.asarray(columns, dtype=np.int64)
    return MergedReranker(model, load_feature_state(path), depth, columns)
