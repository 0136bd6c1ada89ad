"""Fitted candidate sources saved as they are and read back without a refit.

``sources/sources.json`` names each source's kind and settings; its arrays are ``sources/<name>.npz``. The
``ann`` source is not saved here: it searches the bundle's index and is rebuilt over it at load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from models.candidates.sources import (
    AnnSource,
    CandidateSource,
    CategorySource,
    CooccurrenceSource,
    ItemSearch,
    PopularSource,
    RecentItemsSource,
)

SOURCES_DIR = "sources"
SOURCES_FILE = "sources.json"


def _describe(name: str, source: CandidateSource) -> tuple[str, dict[str, Any], dict[str, np.ndarray]]:
    """(kind, settings, arrays) of a fitted source."""
    if isinstance(source, CooccurrenceSource):
        settings = {"history_length": source.history_length, "decay": source.decay}
        return (
            "item_to_item",
            settings,
            {"indptr": source.indptr, "indices": source.indices, "data": source.data},
        )
    if isinstance(source, PopularSource):
        return "popular", {}, {"scores": source.scores}
    if isinstance(source, CategorySource):
        settings = {
            "history_length": source.history_length,
            "decay": source.decay,
            "max_categories": source.max_categories,
        }
        return "category", settings, {"category": source.category, "popularity": source.popularity}
    if isinstance(source, RecentItemsSource):
        return "recent", source.to_dict(), {}
    raise TypeError(f"source {name!r} of type {type(source).__name__} cannot be saved")


def save_sources(sources: dict[str, CandidateSource], directory: Path) -> Path:
    """Writes every source but ``ann`` under ``directory/sources``; returns that directory."""
    out = directory / SOURCES_DIR
    out.mkdir(parents=True, exist_ok=True)
    described: dict[str, dict[str, Any]] = {}
    for name, source in sorted(sources.items()):
        if isinstance(source, AnnSource):
            continue
        kind, settings, arrays = _describe(name, source)
        described[name] = {"kind": kind, "settings": settings}
        if arrays:
            stored: dict[str, Any] = dict(arrays)
            np.savez(out / f"{name}.npz", **stored)
    (out / SOURCES_FILE).write_text(json.dumps(described, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out


def _rebuild(
    name: str, kind: str, settings: dict[str, Any], arrays: dict[str, np.ndarray]
) -> CandidateSource:
    if kind == "item_to_item":
        return CooccurrenceSource(
            arrays["indptr"],
            arrays["indices"],
            arrays["data"],
            settings["history_length"],
            settings["decay"],
            name,
        )
    if kind == "popular":
        return PopularSource(arrays["scores"], name)
    if kind == "category":
        return CategorySource(
            arrays["category"],
            arrays["popularity"],
            settings["history_length"],
            settings["decay"],
            settings["max_categories"],
        )
    if kind == "recent":
        return RecentItemsSource.from_dict(settings)
    raise ValueError(f"source {name!r}: unknown kind {kind!r}")


def load_sources(directory: Path, index: ItemSearch | None = None) -> dict[str, CandidateSource]:
    """The sources ``save_sources`` wrote under ``directory/sources`` (plus ``ann`` over ``index``)."""
    folder = directory / SOURCES_DIR
    described = json.loads((folder / SOURCES_FILE).read_text(encoding="utf-8"))
    sources: dict[str, CandidateSource] = {}
    if index is not None:
        sources["ann"] = AnnSource(index)
    for name, entry in described.items():
        file = folder / f"{name}.npz"
        arrays: dict[str, np.ndarray] = dict(np.load(file)) if file.is_file() else {}
        sources[name] = _rebuild(name, entry["kind"], dict(entry["settings"]), arrays)
    return sources
