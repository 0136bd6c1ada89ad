from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models.data.errors import BadRows, DataError
from models.data.loaders.generic import load_event_file, parse_mapping
from models.data.schema import FIRST_REAL_ID, Action
from models.data.splits import TEST, TRAIN, VALID

CSV = """uid,sku,ts,type,surface
u1,A,1000,view,home
u1,B,1100,cart,home
u2,A,5000,buy,search
"""


def test_parse_mapping() -> None:
    mapping = parse_mapping("user=uid, item=sku,timestamp=ts,action=type")
    assert mapping == {"user": "uid", "item": "sku", "timestamp": "ts", "action": "type"}
    assert parse_mapping("") == {"user": "user", "item": "item", "timestamp": "timestamp"}
    with pytest.raises(ValueError, match="unknown field 'colour'"):
        parse_mapping("colour=c")
    with pytest.raises(ValueError, match="not field=column"):
        parse_mapping("user")


def test_csv_with_mapping(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(CSV, encoding="utf-8")
    mapping = parse_mapping("user=uid,item=sku,timestamp=ts,action=type,scene=surface")
    dataset = load_event_file(path, mapping, BadRows())
    events = dataset.events
    assert events.action.tolist() == [Action.VIEW, Action.CART, Action.PURCHASE]
    assert dataset.manifest["vocabularies"]["scene"] == ["home", "search"]
    assert events.scene.tolist() == [FIRST_REAL_ID, FIRST_REAL_ID, FIRST_REAL_ID + 1]
    assert dataset.user_raw_id[FIRST_REAL_ID:] == ["u1", "u2"]


def test_csv_unknown_column_and_bad_value(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(CSV, encoding="utf-8")
    with pytest.raises(DataError) as caught:
        load_event_file(path, parse_mapping("user=user_id,item=sku,timestamp=ts"), BadRows())
    assert (
        "events.csv:1" in str(caught.value)
        and "'user'" in str(caught.value)
        and "user_id" in str(caught.value)
    )
    path.write_text(CSV + "u3,C,late,view,home\n", encoding="utf-8")
    mapping = parse_mapping("user=uid,item=sku,timestamp=ts,action=type")
    with pytest.raises(DataError, match=r"events.csv:5: field 'ts'"):
        load_event_file(path, mapping, BadRows())
    bad = BadRows(skip=True)
    assert len(load_event_file(path, mapping, bad).events) == 3 and bad.total == 1


def test_parquet_with_timestamps_and_ratings(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    table = pa.table(
        {
            "user": [7, 7, 8],
            "movie": [1, 2, 1],
            "when": pa.array([2_000_000, 1_000_000, 3_000_000], pa.timestamp("ms")),
            "stars": [4.0, 5.0, 3.0],
        }
    )
    pq.write_table(table, path)
    dataset = load_event_file(path, parse_mapping("item=movie,timestamp=when,value=stars"), BadRows())
    events = dataset.events
    assert events.timestamp.tolist() == [1000, 2000, 3000]  # sorted per user, ms timestamps -> seconds
    assert events.value.tolist() == [5.0, 4.0, 3.0]
    assert np.all(events.action == Action.RATE)
    assert dataset.manifest["funnel"] == "rating"


def test_csv_with_decimal_timestamps_and_a_split_column(tmp_path: Path) -> None:
    path = tmp_path / "clicks.csv"
    path.write_text(
        "sid,sku,ts,fold\n"
        "s1,A,1600000000.9,Train\n"
        "s1,B,1600000000.2,train\n"  # earlier inside the same second: must come first
        "s2,A,1600000100.5,validation\n"
        "s2,C,1600000160,TEST\n",
        "utf-8",
    )
    dataset = load_event_file(path, parse_mapping("user=sid,item=sku,timestamp=ts,split=fold"), BadRows())
    events = dataset.events
    assert events.timestamp.tolist() == [1_600_000_000, 1_600_000_000, 1_600_000_100, 1_600_000_160]
    assert [dataset.catalogue.raw_id[i] for i in events.item] == ["B", "A", "A", "C"]
    assert dataset.event_split is not None and dataset.event_split.tolist() == [TRAIN, TRAIN, VALID, TEST]
    assert dataset.manifest["counts"]["split"] == {"train": 2, "valid": 1, "test": 1}
    assert "3 of 4 values" in dataset.manifest["notes"][0]


def test_unknown_split_label_is_a_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "clicks.csv"
    path.write_text("user,item,timestamp,fold\nu,A,10,train\nu,B,20,later\nu,C,30,test\n", "utf-8")
    mapping = parse_mapping("split=fold")
    with pytest.raises(DataError, match=r"clicks.csv:3: field 'split': expected a split label.*'later'"):
        load_event_file(path, mapping, BadRows())
    bad = BadRows(skip=True)
    dataset = load_event_file(path, mapping, bad)
    assert len(dataset.events) == 2 and bad.total == 1
    assert dataset.event_split is not None and dataset.event_split.tolist() == [TRAIN, TEST]


def test_parquet_decimal_seconds(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    pq.write_table(
        pa.table({"user": ["a", "a"], "item": ["x", "y"], "timestamp": [10.5, float("nan")]}), path
    )
    with pytest.raises(DataError, match=r"events\.parquet:2: field 'timestamp': expected a finite number"):
        load_event_file(path, parse_mapping(""), BadRows())
    dataset = load_event_file(path, parse_mapping(""), BadRows(skip=True))
    assert dataset.events.timestamp.tolist() == [10] and dataset.manifest["notes"]
