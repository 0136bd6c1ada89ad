"""Prepared datasets on disk: events/items/users Parquet plus manifest.json, written byte-identically."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from models.data.errors import DataError
from models.data.schema import (
    COMMERCE_FUNNEL,
    EVENT_COLUMNS,
    RATING_FUNNEL,
    Catalogue,
    Dataset,
    EventTable,
    Funnel,
)

FORMAT_VERSION = 1
SPLIT_COLUMN = "split"  # optional events.parquet column: the split the user supplied (int8 codes)


def funnel_by_name(name: str) -> Funnel:
    funnels = {"rating": RATING_FUNNEL, "commerce": COMMERCE_FUNNEL}
    if name not in funnels:
        raise ValueError(f"unknown funnel '{name}', expected one of {sorted(funnels)}")
    return funnels[name]


def sha256_file(path: Path, block_bytes: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(block_bytes):
            digest.update(block)
    return digest.hexdigest()


def _write_table(columns: dict[str, Any], path: Path) -> None:
    # No pandas metadata, fixed compression and no statistics timestamps: same input -> same bytes.
    table = pa.table(columns)
    pq.write_table(table, path, compression="zstd", use_dictionary=False, write_statistics=True)


def save_dataset(dataset: Dataset, out_dir: Path) -> dict[str, Any]:
    """Writes the four files into ``out_dir`` and returns the manifest that was written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    event_columns = {name: getattr(dataset.events, name) for name in EVENT_COLUMNS}
    if dataset.event_split is not None:
        event_columns[SPLIT_COLUMN] = dataset.event_split.astype(np.int8)
    _write_table(event_columns, out_dir / "events.parquet")
    _write_table(catalogue_columns(dataset.catalogue), out_dir / "items.parquet")
    user_columns: dict[str, Any] = {
        "user": np.arange(dataset.num_users, dtype=np.int32),
        "raw_id": pa.array(dataset.user_raw_id, pa.string()),
    }
    for feature, column in sorted(dataset.user_features.items()):
        user_columns[feature] = column.astype(np.int32)
    _write_table(user_columns, out_dir / "users.parquet")
    manifest = dict(dataset.manifest)
    manifest["format_version"] = FORMAT_VERSION
    manifest["num_scenes"] = dataset.num_scenes
    manifest["num_devices"] = dataset.num_devices
    manifest["num_categories"] = dataset.num_categories
    manifest["files"] = {
        name: sha256_file(out_dir / name) for name in ("events.parquet", "items.parquet", "users.parquet")
    }
    text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    (out_dir / "manifest.json").write_text(text, encoding="utf-8")
    dataset.manifest = manifest
    return manifest


def read_manifest(directory: Path) -> dict[str, Any] | None:
    path = directory / "manifest.json"
    if not path.is_file():
        return None
    try:
        manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(path, f"not valid JSON ({error.msg})", line=error.lineno) from error
    return manifest


def load_prepared(directory: Path, verify: bool = True) -> Dataset:
    """Reads a directory written by ``save_dataset``. With ``verify`` the files' sha256 must match."""
    manifest = read_manifest(directory)
    if manifest is None:
        raise DataError(directory / "manifest.json", "file not found (run `tandem data prepare` first)")
    if verify:
        for name, expected in manifest.get("files", {}).items():
            if sha256_file(directory / name) != expected:
                raise DataError(directory / name, "sha256 differs from manifest.json (file changed)")
    events_table = pq.read_table(directory / "events.parquet")
    missing = [name for name in EVENT_COLUMNS if name not in events_table.column_names]
    if missing:
        raise DataError(directory / "events.parquet", f"missing columns {missing}")
    events = EventTable(
        **{
            name: events_table.column(name).to_numpy().astype(dtype, copy=False)
            for name, dtype in EVENT_COLUMNS.items()
        }
    )
    event_split = None
    if SPLIT_COLUMN in events_table.column_names:
        event_split = events_table.column(SPLIT_COLUMN).to_numpy().astype(np.int8)
    catalogue = read_catalogue(directory / "items.parquet")
    users = pq.read_table(directory / "users.parquet")
    features = {
        name: users.column(name).to_numpy().astype(np.int32)
        for name in users.column_names
        if name not in ("user", "raw_id")
    }
    return Dataset(
        name=manifest["dataset"],
        events=events,
        catalogue=catalogue,
        user_raw_id=users.column("raw_id").to_pylist(),
        user_features=features,
        funnel=funnel_by_name(manifest["funnel"]),
        manifest=manifest,
        num_scenes=int(manifest["num_scenes"]),
        num_devices=int(manifest["num_devices"]),
        num_categories=int(manifest["num_categories"]),
        event_split=event_split,
    )


def catalogue_columns(cat: Catalogue) -> dict[str, Any]:
    """Catalogue -> the columns of items.parquet (the inverse of ``read_catalogue``)."""
    year = cat.year if cat.year is not None else np.zeros(cat.num_items, dtype=np.int16)
    genres = cat.genres if cat.genres else [""] * cat.num_items
    return {
        "item": np.arange(cat.num_items, dtype=np.int32),
        "raw_id": pa.array(cat.raw_id, pa.string()),
        "title": pa.array(cat.title, pa.string()),
        "category": cat.category.astype(np.int32),
        "genres": pa.array(genres, pa.string()),
        "year": year.astype(np.int16),
    }


def read_catalogue(path: Path) -> Catalogue:
    """An items/catalogue Parquet file (columns raw_id, title, category, genres, year) -> Catalogue."""
    items = pq.read_table(path).to_pydict()
    return Catalogue(
        raw_id=items["raw_id"],
        title=items["title"],
        category=np.asarray(items["category"], dtype=np.int32),
        genres=items["genres"],
        year=np.asarray(items["year"], dtype=np.int16),
    )
