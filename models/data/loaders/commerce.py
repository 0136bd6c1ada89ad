"""Shop logs: Taobao UserBehavior (Tianchi 649), RetailRocket (Kaggle "retailrocket/ecommerce-dataset")."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from models.data.builder import RawEvents, RawItems, SessionConfig, build_dataset
from models.data.errors import BadRows, DataError
from models.data.loaders.text_table import Column, read_delimited
from models.data.schema import COMMERCE_FUNNEL, Action, Dataset

logger = logging.getLogger(__name__)

# The data set's documented window, 2017-11-25 .. 2017-12-03 in China time (UTC+8), as unix seconds
# [start, end). A few rows lie weeks outside it; kept, they stretch a global time split so far that the
# training period holds only them (the next-session protocol then had no training users).
TAOBAO_WINDOW = (1_511_539_200, 1_512_316_800)
TAOBAO_BEHAVIOURS = {"pv": Action.VIEW, "fav": Action.FAV, "cart": Action.CART, "buy": Action.PURCHASE}
RETAILROCKET_EVENTS = {"view": Action.VIEW, "addtocart": Action.CART, "transaction": Action.PURCHASE}
RETAILROCKET_HEADER = ["timestamp", "visitorid", "event", "itemid", "transactionid"]
RETAILROCKET_PROPERTIES_HEADER = ["timestamp", "itemid", "property", "value"]


def find_taobao_file(directory: Path) -> Path:
    """UserBehavior.csv, else the single UserBehavior*.csv in ``directory`` (e.g. the shipped slice)."""
    if (directory / "UserBehavior.csv").is_file():
        return directory / "UserBehavior.csv"
    found = sorted(directory.glob("UserBehavior*.csv"))
    if not found:
        raise DataError(directory / "UserBehavior.csv", "file not found (nor any UserBehavior*.csv)")
    return found[0]


def _first_category_per_item(item: np.ndarray, category: np.ndarray) -> RawItems:
    """One category per item: the one of its first row (the Taobao slice has one item with two)."""
    unique_items, first_row = np.unique(item, return_index=True)
    return RawItems(raw_id=unique_items, category=category[first_row])


def load_taobao(
    path: Path, bad_rows: BadRows, sessions: SessionConfig | None = None, progress: bool = False
) -> Dataset:
    """user,item,category,behavior,timestamp without header; pv/fav/cart/buy -> VIEW/FAV/CART/PURCHASE.
    Events outside ``TAOBAO_WINDOW`` are dropped (logged)."""
    columns = [
        Column("user", "int"),
        Column("item", "int"),
        Column("category", "int"),
        Column("behavior", "str", {k: int(v) for k, v in TAOBAO_BEHAVIOURS.items()}),
        Column("timestamp", "int"),
    ]
    rows = read_delimited(path, columns, ",", bad_rows, progress=progress)
    inside = (rows["timestamp"] >= TAOBAO_WINDOW[0]) & (rows["timestamp"] < TAOBAO_WINDOW[1])
    if not inside.all():
        logger.info("taobao: %d events outside the documented window dropped", int((~inside).sum()))
        rows = {name: values[inside] for name, values in rows.items()}
    events = RawEvents(
        user=rows["user"],
        item=rows["item"],
        timestamp=rows["timestamp"],
        action=rows["behavior"].astype(np.int8),
        order=rows["line"],
    )
    items = _first_category_per_item(rows["item"], rows["category"])
    return build_dataset("taobao", events, COMMERCE_FUNNEL, "commerce", items, None, sessions)


def _retailrocket_categories(paths: list[Path], bad_rows: BadRows, progress: bool) -> RawItems | None:
    """Latest ``categoryid`` property per item over the item_properties_part*.csv files."""
    parts = []
    for path in paths:
        parts.append(
            read_delimited(
                path,
                [
                    Column("timestamp", "int"),
                    Column("item", "int"),
                    Column("property"),
                    Column("value", "int"),
                ],
                ",",
                bad_rows,
                header=RETAILROCKET_PROPERTIES_HEADER,
                progress=progress,
                keep_line=lambda line: ",categoryid," in line,
            )
        )
    if not parts:
        return None
    item = np.concatenate([p["item"] for p in parts])
    value = np.concatenate([p["value"] for p in parts])
    timestamp = np.concatenate([p["timestamp"] for p in parts])
    latest_first = np.lexsort((-timestamp, item))
    item, value = item[latest_first], value[latest_first]
    unique_items, first_row = np.unique(item, return_index=True)
    return RawItems(raw_id=unique_items, category=value[first_row])


def load_retailrocket(
    directory: Path,
    bad_rows: BadRows,
    sessions: SessionConfig | None = None,
    events_path: Path | None = None,
    progress: bool = False,
) -> Dataset:
    """events.csv (timestamp in ms) plus, when present, item_properties_part*.csv for the category."""
    events_path = events_path or directory / "events.csv"
    columns = [
        Column("timestamp", "int"),
        Column("visitor", "int"),
        Column("event", "str", {k: int(v) for k, v in RETAILROCKET_EVENTS.items()}),
        Column("item", "int"),
        Column("transaction", "str"),
    ]
    rows = read_delimited(events_path, columns, ",", bad_rows, header=RETAILROCKET_HEADER, progress=progress)
    is_purchase = rows["event"] == Action.PURCHASE
    missing_transaction = is_purchase & (rows["transaction"] == "")
    for i in np.flatnonzero(missing_transaction):
        bad_rows.report(
            events_path, int(rows["line"][i]), "transactionid", "transaction without transactionid"
        )
    keep = ~missing_transaction
    events = RawEvents(
        user=rows["visitor"][keep],
        item=rows["item"][keep],
        timestamp=rows["timestamp"][keep] // 1000,
        action=rows["event"][keep].astype(np.int8),
        order=rows["line"][keep],
    )
    property_files = sorted(events_path.parent.glob("item_properties_part*.csv"))
    items = _retailrocket_categories(property_files, bad_rows, progress)
    return build_dataset("retailrocket", events, COMMERCE_FUNNEL, "commerce", items, None, sessions)
