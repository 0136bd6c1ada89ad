from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models.data.errors import BadRows, DataError
from models.data.loaders.generic import load_event_file, parse_mapping
from models.data.schema import FIRST_REAL_ID, Action

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
