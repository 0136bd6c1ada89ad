"""Strict reading of delimited text files (plain or gzipped) into numpy columns.

Every row is checked: field count, integer/float syntax, allowed values. A bad row raises ``DataError``
naming file, line and field, or is counted in ``BadRows`` when the user chose to skip bad rows. Conversion
is vectorised per chunk; the per-value Python check only runs on a chunk that failed the fast path.
"""

from __future__ import annotations

import gzip
import io
import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm import tqdm

from models.data.errors import BadRows, DataError

CHUNK_LINES = 500_000


@dataclass(frozen=True)
class Column:
    """One field of a delimited row. ``choices`` maps allowed raw strings to codes (kind "str" only)."""

    name: str
    kind: Literal["int", "float", "str"] = "str"
    choices: Mapping[str, int] | None = None


def open_text(path: Path, encoding: str = "utf-8") -> io.TextIOBase:
    """Opens a text file, gunzipping when the name ends in .gz. Missing file -> DataError."""
    if not path.is_file():
        raise DataError(path, "file not found")
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding=encoding, newline="")
    return open(path, encoding=encoding, newline="")


def _converted(values: list[str], column: Column) -> tuple[np.ndarray, np.ndarray]:
    """values [n] -> (converted [n], ok [n] bool). Fast vectorised path, per-value fallback on failure."""
    n = len(values)
    ok = np.ones(n, dtype=bool)
    if column.kind == "str":
        if column.choices is None:
            return np.array(values, dtype=object), ok
        codes = np.fromiter((column.choices.get(v, -1) for v in values), dtype=np.int64, count=n)
        return codes, codes >= 0
    dtype = np.int64 if column.kind == "int" else np.float64
    try:
        out = np.array(values).astype(dtype)
    except (ValueError, OverflowError):
        out = np.zeros(n, dtype=dtype)
        for i, v in enumerate(values):
            try:
                out[i] = int(v) if column.kind == "int" else float(v)
            except (ValueError, OverflowError):
                ok[i] = False
    if column.kind == "float":
        ok &= np.isfinite(out)  # "nan" and "inf" parse but are not data
    return out, ok


def _chunks(lines: Iterator[str], size: int) -> Iterator[list[str]]:
    while chunk := list(itertools.islice(lines, size)):
        yield chunk


def read_delimited(
    path: Path,
    columns: list[Column],
    sep: str,
    bad_rows: BadRows,
    encoding: str = "utf-8",
    header: list[str] | None = None,
    progress: bool = False,
    keep_line: Callable[[str], bool] | None = None,
) -> dict[str, np.ndarray]:
    """Reads every row of ``path``. Returns name -> [R] array for each column, plus "line" (1-based line
    numbers of the kept rows, i.e. the original order). ``keep_line`` pre-filters raw lines that are of no
    interest (they are not checked). ``header``: the expected first line's fields
    (compared exactly, else DataError), or None for files without a header line.
    """
    parts: dict[str, list[np.ndarray]] = {c.name: [] for c in columns}
    parts["line"] = []
    with open_text(path, encoding) as handle:
        lines = (line.rstrip("\r\n") for line in handle)
        first_line = 1
        if header is not None:
            found = next(lines, "").split(sep)
            if found != header:
                raise DataError(path, f"header {found} differs from the expected {header}", line=1)
            first_line = 2
        pending_blank: list[int] = []
        bar = tqdm(desc=f"read {path.name}", unit=" rows", disable=not progress, leave=False)
        for chunk in _chunks(lines, CHUNK_LINES):
            line_numbers = np.arange(first_line, first_line + len(chunk), dtype=np.int64)
            first_line += len(chunk)
            if keep_line is not None:
                wanted = np.fromiter((keep_line(row) for row in chunk), dtype=bool, count=len(chunk))
                chunk = [row for row, w in zip(chunk, wanted, strict=True) if w]
                line_numbers = line_numbers[wanted]
            blank = np.fromiter((row == "" for row in chunk), dtype=bool, count=len(chunk))
            # Blank lines at the very end of a file are tolerated; anywhere else they are bad rows.
            last_content = int(np.flatnonzero(~blank)[-1]) if not blank.all() else -1
            if last_content >= 0:
                for line in pending_blank:
                    bad_rows.report(path, line, None, "empty line")
                pending_blank = []
            for i in np.flatnonzero(blank):
                if i < last_content:
                    bad_rows.report(path, int(line_numbers[i]), None, "empty line")
                else:
                    pending_blank.append(int(line_numbers[i]))
            fields = [row.split(sep) for row in chunk]
            keep = np.fromiter((len(f) == len(columns) for f in fields), dtype=bool, count=len(fields))
            for i in np.flatnonzero(~keep & ~blank):
                reason = f"expected {len(columns)} fields, found {len(fields[i])}"
                bad_rows.report(path, int(line_numbers[i]), None, reason, chunk[i])
            keep &= ~blank
            fields = [f for f, k in zip(fields, keep, strict=True) if k]
            line_numbers = line_numbers[keep]
            converted: dict[str, np.ndarray] = {}
            ok_all = np.ones(len(fields), dtype=bool)
            for j, column in enumerate(columns):
                values, ok = _converted([f[j] for f in fields], column)
                for i in np.flatnonzero(~ok & ok_all):
                    expected = {"int": "an integer", "float": "a number"}.get(column.kind, "one of ")
                    if column.kind == "str" and column.choices is not None:
                        expected += ", ".join(sorted(column.choices))
                    bad_rows.report(
                        path, int(line_numbers[i]), column.name, f"expected {expected}", fields[i][j]
                    )
                ok_all &= ok
                converted[column.name] = values
            for name, values in converted.items():
                parts[name].append(values[ok_all])
            parts["line"].append(line_numbers[ok_all])
            bar.update(len(chunk))
        bar.close()
    out: dict[str, np.ndarray] = {}
    for name, pieces in parts.items():
        out[name] = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
    return out
