import gzip
from pathlib import Path

import numpy as np
import pytest

from models.data.errors import BadRows, DataError
from models.data.loaders.text_table import Column, read_delimited

COLUMNS = [Column("user", "int"), Column("score", "float"), Column("kind", "str", {"a": 1, "b": 2})]


def write(tmp_path: Path, text: str, name: str = "rows.txt") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_typed_columns_with_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, "1;0.5;a\n2;1.5;b\n")
    rows = read_delimited(path, COLUMNS, ";", BadRows())
    assert rows["user"].tolist() == [1, 2]
    assert rows["score"].tolist() == [0.5, 1.5]
    assert rows["kind"].tolist() == [1, 2]
    assert rows["line"].tolist() == [1, 2]


def test_reads_gzip(tmp_path: Path) -> None:
    path = tmp_path / "rows.txt.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("3;2.0;a\n")
    assert read_delimited(path, COLUMNS, ";", BadRows())["user"].tolist() == [3]


@pytest.mark.parametrize(
    ("text", "line", "field", "words"),
    [
        ("1;0.5;a\n2;x;a\n", 2, "score", "a number"),
        ("1;0.5;a\n2;1.0;a\nseven;1.0;b\n", 3, "user", "an integer"),
        ("1;0.5;c\n", 1, "kind", "one of a, b"),
        ("1;0.5;a\n1;0.5\n", 2, None, "expected 3 fields, found 2"),
        ("1;0.5;a\n\n2;0.5;a\n", 2, None, "empty line"),
    ],
)
def test_bad_row_names_file_line_and_field(
    tmp_path: Path, text: str, line: int, field: str, words: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(DataError) as caught:
        read_delimited(path, COLUMNS, ";", BadRows())
    assert caught.value.line == line
    assert caught.value.field == field
    message = str(caught.value)
    assert f"rows.txt:{line}" in message and words in message
    if field:
        assert f"'{field}'" in message


def test_skip_mode_counts_each_reason(tmp_path: Path) -> None:
    path = write(tmp_path, "1;0.5;a\nx;0.5;a\n2;0.5;c\n3;0.5\n4;nan;b\n5;2;b\n\n\n")
    bad = BadRows(skip=True)
    rows = read_delimited(path, COLUMNS, ";", bad)
    assert rows["user"].tolist() == [1, 5]
    assert rows["line"].tolist() == [1, 6]
    assert bad.total == 4  # trailing blank lines are not rows
    summary = bad.as_dict()
    assert summary["user: expected an integer"] == {"count": 1, "first": "rows.txt:2"}
    assert summary["score: expected a number"]["count"] == 1
    assert summary["expected 3 fields, found 2"]["count"] == 1


def test_missing_file_and_wrong_header(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        read_delimited(tmp_path / "absent.csv", COLUMNS, ";", BadRows())
    path = write(tmp_path, "u;s;k\n1;0.5;a\n")
    with pytest.raises(DataError, match=r"rows.txt:1: header"):
        read_delimited(path, COLUMNS, ";", BadRows(), header=["user", "score", "kind"])
    rows = read_delimited(path, COLUMNS, ";", BadRows(), header=["u", "s", "k"])
    assert rows["line"].tolist() == [2]
    np.testing.assert_array_equal(rows["kind"], [1])
