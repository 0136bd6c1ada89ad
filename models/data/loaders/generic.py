"""Any CSV or Parquet event file, with a column mapping from the command line (``user=uid,item=sku,...``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from models.data.builder import RawEvents, RawItems, SessionConfig, build_dataset
from models.data.errors import BadRows, DataError
from models.data.loaders.text_table import Column, open_text, read_delimited
from models.data.loaders.timestamps import UNIT_DIVISORS, whole_seconds
from models.data.schema import COMMERCE_FUNNEL, RATING_FUNNEL, Action, Dataset
from models.data.splits import SPLIT_LABELS, split_codes

REQUIRED_FIELDS = ("user", "item", "timestamp")
OPTIONAL_FIELDS = ("action", "value", "scene", "device", "category", "title", "split")
ACTION_NAMES: dict[str, int] = {
    **{name: Action.VIEW for name in ("view", "pv", "impression", "exposure")},
    "click": Action.CLICK,
    **{name: Action.FAV for name in ("fav", "favorite", "favourite", "like")},
    **{name: Action.CART for name in ("cart", "addtocart", "add_to_cart")},
    **{name: Action.PURCHASE for name in ("buy", "purchase", "transaction", "order")},
    **{name: Action.RATE for name in ("rate", "rating")},
    **{str(int(a)): int(a) for a in Action if a != Action.PAD},
}


def parse_mapping(text: str) -> dict[str, str]:
    """ "user=uid,item=sku" -> {"user": "uid", "item": "sku"}; the three required fields default to
    themselves. Unknown field names raise ValueError."""
    mapping = {name: name for name in REQUIRED_FIELDS}
    for part in filter(None, (p.strip() for p in text.split(","))):
        field_name, sep, column = part.partition("=")
        if not sep or not column:
            raise ValueError(f"mapping entry '{part}' is not field=column")
        if field_name not in REQUIRED_FIELDS + OPTIONAL_FIELDS:
            raise ValueError(
                f"unknown field '{field_name}' in mapping, expected {REQUIRED_FIELDS + OPTIONAL_FIELDS}"
            )
        mapping[field_name] = column
    return mapping


def _check_columns(path: Path, mapping: dict[str, str], available: list[str]) -> None:
    for field_name, column in mapping.items():
        if column not in available:
            raise DataError(
                path, f"column '{column}' not found; the file has {available}", line=1, field=field_name
            )


def _read_csv(path: Path, mapping: dict[str, str], sep: str, bad_rows: BadRows) -> dict[str, np.ndarray]:
    with open_text(path) as handle:
        header = handle.readline().rstrip("\r\n").split(sep)
    _check_columns(path, mapping, header)
    kinds = {"timestamp": "float", "value": "float"}  # timestamps may carry a fraction of a second
    source_field = {column: field_name for field_name, column in mapping.items()}
    columns = []
    for column in header:
        field_name = source_field.get(column)
        kind = kinds.get(field_name or "", "str")
        choices = {k: int(v) for k, v in ACTION_NAMES.items()} if field_name == "action" else None
        columns.append(Column(column, kind, choices))  # type: ignore[arg-type]
    rows = read_delimited(path, columns, sep, bad_rows, header=header, progress=True)
    out = {field_name: rows[column] for field_name, column in mapping.items()}
    out["line"] = rows["line"]
    return out


def _read_parquet(
    path: Path, mapping: dict[str, str], bad_rows: BadRows, timestamp_unit: str
) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataError(path, "file not found")
    table = pq.read_table(path, columns=sorted(set(mapping.values())))
    _check_columns(path, mapping, table.column_names)
    n = table.num_rows
    keep = np.ones(n, dtype=bool)
    out: dict[str, np.ndarray] = {"line": np.arange(1, n + 1)}  # row numbers, 1-based
    for field_name, column_name in mapping.items():
        column = table.column(column_name)
        for i in np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False) & keep):
            bad_rows.report(path, int(i) + 1, field_name, "missing value")
            keep[i] = False
        if field_name == "timestamp":
            if pa.types.is_timestamp(column.type):
                # a timestamp type knows its unit: microseconds, expressed in ``timestamp_unit``
                micros = pc.cast(pc.cast(column, pa.timestamp("us")), pa.int64()).fill_null(0).to_numpy()
                out[field_name] = micros / (1_000_000 // UNIT_DIVISORS[timestamp_unit])
            elif pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
                values = column.fill_null(0).to_numpy()
                out[field_name] = values if values.dtype.kind == "i" else values.astype(np.float64)
            else:
                raise DataError(
                    path, f"expected a numeric or timestamp column, found {column.type}", field=field_name
                )
            for i in np.flatnonzero(~np.isfinite(out[field_name]) & keep):
                bad_rows.report(path, int(i) + 1, field_name, "expected a finite number")
                keep[i] = False
        elif field_name == "value":
            if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
                raise DataError(path, f"expected a numeric column, found {column.type}", field=field_name)
            out[field_name] = column.fill_null(0).to_numpy().astype(np.float64)
        elif field_name == "action":
            names = [str(v).lower() for v in column.to_pylist()]
            codes = np.array([ACTION_NAMES.get(v, -1) for v in names], dtype=np.int64)
            for i in np.flatnonzero((codes < 0) & keep):
                bad_rows.report(
                    path, int(i) + 1, field_name, f"expected one of {sorted(ACTION_NAMES)}", names[i]
                )
                keep[i] = False
            out[field_name] = codes
        else:
            out[field_name] = np.array([str(v) for v in column.to_pylist()], dtype=object)
    return {k: v[keep] for k, v in out.items()}


def _drop_unknown_splits(path: Path, rows: dict[str, np.ndarray], bad_rows: BadRows) -> dict[str, np.ndarray]:
    """Replaces the "split" column's labels by codes (models.data.splits); rows with another label are bad
    rows (raised, or counted and dropped)."""
    codes = split_codes(rows["split"])
    for i in np.flatnonzero(codes < 0):
        expected = "a split label: " + ", ".join(sorted(SPLIT_LABELS))
        bad_rows.report(path, int(rows["line"][i]), "split", f"expected {expected}", str(rows["split"][i]))
    keep = codes >= 0
    return {**{k: v[keep] for k, v in rows.items()}, "split": codes[keep]}


def load_event_file(
    path: Path,
    mapping: dict[str, str],
    bad_rows: BadRows,
    sessions: SessionConfig | None = None,
    sep: str = ",",
    timestamp_unit: str = "s",
    name: str = "csv",
) -> Dataset:
    """Reads a .csv (header line, no quoting) or .parquet events file. Without an ``action`` column every
    event is a RATE when ``value`` is mapped, else a VIEW. Timestamps are numbers in ``timestamp_unit``;
    a fraction of a second is floored (the table stores whole seconds) and said so in the manifest's
    ``notes``. A mapped ``split`` column (train/valid/test) is kept as ``Dataset.event_split``."""
    if timestamp_unit not in UNIT_DIVISORS:
        raise ValueError(f"timestamp unit must be one of {sorted(UNIT_DIVISORS)}, got '{timestamp_unit}'")
    is_parquet = path.suffix == ".parquet"
    if is_parquet:
        rows = _read_parquet(path, mapping, bad_rows, timestamp_unit)
    else:
        rows = _read_csv(path, mapping, sep, bad_rows)
    if "split" in rows:
        rows = _drop_unknown_splits(path, rows, bad_rows)
    n = len(rows["line"])
    default_action = Action.RATE if "value" in rows else Action.VIEW
    action = rows["action"].astype(np.int8) if "action" in rows else np.full(n, default_action, np.int8)
    value = rows["value"].astype(np.float32) if "value" in rows else None
    times = whole_seconds(rows["timestamp"], timestamp_unit, rows["line"])
    events = RawEvents(
        user=rows["user"],
        item=rows["item"],
        timestamp=times.seconds,
        action=action,
        value=value,
        scene=rows.get("scene"),
        device=rows.get("device"),
        order=times.order,
        split=rows.get("split"),
    )
    items = None
    if "category" in rows or "title" in rows:
        unique_items, first_row = np.unique(rows["item"], return_index=True)
        items = RawItems(
            raw_id=unique_items,
            title=rows["title"][first_row] if "title" in rows else None,
            category=rows["category"][first_row] if "category" in rows else None,
        )
    all_rated = bool(np.all(action == Action.RATE))
    funnel, funnel_name = (RATING_FUNNEL, "rating") if all_rated else (COMMERCE_FUNNEL, "commerce")
    dataset = build_dataset(name, events, funnel, funnel_name, items, None, sessions)
    if times.note is not None:
        dataset.manifest["notes"] = [times.note]
    return dataset
