import itertools
from pathlib import Path

import numpy as np
import pytest

from models.data.errors import BadRows, DataError
from models.data.loaders.commerce import load_retailrocket, load_taobao
from models.data.schema import COMMERCE_FUNNEL, FIRST_REAL_ID, Action

RETAILROCKET_EVENTS = """timestamp,visitorid,event,itemid,transactionid
1433221332117,257597,view,355908,
1433224214164,992329,view,248676,
1433221999827,257597,addtocart,355908,
1433222100000,257597,transaction,355908,4000
1433223203944,111016,view,318965,
"""
RETAILROCKET_PROPERTIES = """timestamp,itemid,property,value
1435460400000,355908,categoryid,1173
1435460400000,355908,888,1116713 960601 n277.200
1431226800000,248676,categoryid,1231
1441508400000,355908,categoryid,1500
"""


def test_taobao_sample(shared_data_dir: Path, tmp_path: Path) -> None:
    source = shared_data_dir / "taobao-userbehavior" / "UserBehavior-first814users.csv"
    with open(source, encoding="ascii") as handle:
        text = "".join(itertools.islice(handle, 2000))
    path = tmp_path / "UserBehavior.csv"
    path.write_text(text, encoding="ascii")
    dataset = load_taobao(path, BadRows())
    events = dataset.events
    assert len(events) == 2000
    assert set(np.unique(events.action).tolist()) <= {Action.VIEW, Action.FAV, Action.CART, Action.PURCHASE}
    assert np.count_nonzero(events.action == Action.VIEW) > np.count_nonzero(events.action == Action.PURCHASE)
    assert dataset.funnel == COMMERCE_FUNNEL
    assert np.all(dataset.catalogue.category[FIRST_REAL_ID:] >= FIRST_REAL_ID)
    first = text.splitlines()[0].split(",")  # 1,2268318,2520377,pv,1511544070
    item = dataset.catalogue.raw_id.index(first[1])
    category = dataset.manifest["vocabularies"]["category"][dataset.catalogue.category[item] - FIRST_REAL_ID]
    assert category == first[2]


def test_taobao_keeps_only_the_documented_window(tmp_path: Path) -> None:
    path = tmp_path / "UserBehavior.csv"
    rows = [
        "1,10,100,pv,1505117799",
        "1,11,100,pv,1511544070",
        "1,12,100,buy,1512316763",
        "2,10,100,pv,1512400000",
    ]
    path.write_text("\n".join(rows) + "\n", encoding="ascii")
    events = load_taobao(path, BadRows()).events
    assert sorted(events.timestamp.tolist()) == [1511544070, 1512316763]


def test_taobao_unknown_behaviour(tmp_path: Path) -> None:
    path = tmp_path / "UserBehavior.csv"
    path.write_text("1,10,100,pv,1511544070\n1,11,100,like,1511544071\n", encoding="ascii")
    with pytest.raises(DataError) as caught:
        load_taobao(path, BadRows())
    assert "UserBehavior.csv:2" in str(caught.value) and "'behavior'" in str(caught.value)


def test_retailrocket_events_and_categories(tmp_path: Path) -> None:
    (tmp_path / "events.csv").write_text(RETAILROCKET_EVENTS, encoding="ascii")
    (tmp_path / "item_properties_part1.csv").write_text(RETAILROCKET_PROPERTIES, encoding="ascii")
    dataset = load_retailrocket(tmp_path, BadRows())
    events = dataset.events
    assert len(events) == 5
    visitor = dataset.user_raw_id.index("257597")
    rows = events.user == visitor
    assert events.action[rows].tolist() == [Action.VIEW, Action.CART, Action.PURCHASE]
    assert events.timestamp[rows].tolist() == [1433221332, 1433221999, 1433222100]  # ms -> s
    categories = dataset.manifest["vocabularies"]["category"]
    item = dataset.catalogue.raw_id.index("355908")
    assert categories[dataset.catalogue.category[item] - FIRST_REAL_ID] == "1500"  # the latest value wins


def test_retailrocket_bad_rows(tmp_path: Path) -> None:
    text = RETAILROCKET_EVENTS + "1433223203944,111016,transaction,318965,\n1433223203944,111016,click,1,\n"
    (tmp_path / "events.csv").write_text(text, encoding="ascii")
    with pytest.raises(DataError) as caught:
        load_retailrocket(tmp_path, BadRows())
    assert "events.csv:8" in str(caught.value) and "'event'" in str(caught.value)
    bad = BadRows(skip=True)
    assert len(load_retailrocket(tmp_path, bad).events) == 5
    assert bad.as_dict()["transactionid: transaction without transactionid"]["first"] == "events.csv:7"
    assert bad.total == 2
    with pytest.raises(DataError, match=r"events\.csv: file not found"):
        load_retailrocket(tmp_path / "nowhere", BadRows())
