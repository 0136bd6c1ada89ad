"""A ``FeatureState`` on disk: its arrays in one ``.npz`` (read with ``allow_pickle=False``) and its scalars
and funnel in a JSON file beside it; nothing is pickled. A bundle keeps the state its GBDT ranker reads
(``models.bundle``), hashed with the bundle's other files."""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np

from models.candidates.feature_state import FeatureState, PairTable, StaticInfo
from models.data.schema import Funnel

ARRAYS = "feature_state.npz"
META = "feature_state.json"
_PAIRS = ("next_counts", "share", "cooccurrence")
_STATE_ARRAYS = ("next_out", "timeline_key", "timeline_value_sum", "item_start", "all_times")
_STATIC_ARRAYS = ("item_category_indptr", "item_category", "item_year")


def save_feature_state(state: FeatureState, directory: Path) -> list[str]:
    """Writes ``state`` into ``directory`` (created); returns the file names written."""
    directory.mkdir(parents=True, exist_ok=True)
    static = state.static
    arrays: dict[str, np.ndarray] = {name: getattr(state, name) for name in _STATE_ARRAYS}
    for name in _PAIRS:
        table: PairTable = getattr(state, name)
        arrays[f"{name}.keys"], arrays[f"{name}.values"] = table.keys, table.values
    arrays.update({f"static.{name}": getattr(static, name) for name in _STATIC_ARRAYS})
    arrays.update({f"user.{name}": values for name, values in static.user_features.items()})
    if state.item_vectors is not None:
        arrays["item_vectors"] = state.item_vectors
    with open(directory / ARRAYS, "wb") as handle:
        np.savez(handle, allow_pickle=False, **arrays)
    meta: dict[str, Any] = {
        "num_items": static.num_items,
        "num_categories": static.num_categories,
        "multi_category": static.multi_category,
        "funnel": asdict(static.funnel),
        "user_features": list(static.user_features),
        "cut_time": state.cut_time,
        "has_values": state.has_values,
    }
    (directory / META).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return [ARRAYS, META]


def load_feature_state(directory: Path) -> FeatureState:
    """Reads what ``save_feature_state`` wrote."""
    meta = json.loads((directory / META).read_text(encoding="utf-8"))
    with np.load(directory / ARRAYS, allow_pickle=False) as stored:
        arrays = {name: stored[name] for name in stored.files}
    funnel_fields = {f.name for f in fields(Funnel)}
    funnel = Funnel(
        **{
            key: tuple(value) if isinstance(value, list) else value
            for key, value in meta["funnel"].items()
            if key in funnel_fields
        }
    )
    static = StaticInfo(
        num_items=int(meta["num_items"]),
        num_categories=int(meta["num_categories"]),
        funnel=funnel,
        user_features={name: arrays[f"user.{name}"] for name in meta["user_features"]},
        multi_category=bool(meta["multi_category"]),
        **{name: arrays[f"static.{name}"] for name in _STATIC_ARRAYS},
    )
    pairs = {name: PairTable(arrays[f"{name}.keys"], arrays[f"{name}.values"]) for name in _PAIRS}
    return FeatureState(
        static=static,
        cut_time=meta["cut_time"],
        next_counts=pairs["next_counts"],
        next_out=arrays["next_out"],
        share=pairs["share"],
        cooccurrence=pairs["cooccurrence"],
        timeline_key=arrays["timeline_key"],
        timeline_value_sum=arrays["timeline_value_sum"],
        item_start=arrays["item_start"],
        all_times=arrays["all_times"],
        has_values=bool(meta["has_values"]),
        item_vectors=arrays.get("item_vectors"),
    )
