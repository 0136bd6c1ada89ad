"""The fault suite's oracle on its own (part of ``make test``: no processes, no Redis): it tells an event
trimmed from the history from a lost one, and counts copies as duplicates."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.app.conftest import make_settings, running_app
from tests.app.fake_bundle import FakeBundle
from tests.faults.oracle import Ledger, StoredView, count_stored, idempotency_key


def ledger_of(sent: dict[tuple[str, int], str], accepted: set[tuple[str, int]]) -> Ledger:
    ledger = Ledger()
    ledger.sent, ledger.accepted, ledger.keys = set(sent), accepted, dict(sent)
    return ledger


def test_events_trimmed_from_the_history_count_as_stored_and_missing_keys_as_lost() -> None:
    # u stored 5 events, the history keeps the newest 2; event 6 was accepted but is nowhere
    sent = {("u", ts): f"id:u-{ts}" for ts in range(1, 7)}
    ledger = ledger_of(sent, set(sent))
    view = StoredView(
        keys={"u": {f"id:u-{ts}" for ts in range(1, 6)}},
        sequences={"u": 5},
        history=Counter({("u", 4): 1, ("u", 5): 1}),
    )
    counted = count_stored(ledger, view)
    assert counted == {
        "events_stored": 5,
        "events_lost": 1,
        "events_duplicated": 0,
        "events_trimmed_from_history": 3,
    }


def test_copies_are_duplicates_and_an_unacknowledged_stored_event_is_not() -> None:
    sent = {("u", 1): "id:u-1", ("u", 2): "h:abc", ("u", 3): "id:u-3"}
    ledger = ledger_of(sent, {("u", 1), ("u", 2)})  # 3 was in flight when the traffic stopped
    stored_once = StoredView(
        keys={"u": {"id:u-1", "h:abc", "id:u-3"}},
        sequences={"u": 3},
        history=Counter({("u", 1): 1, ("u", 2): 1, ("u", 3): 1}),
    )
    assert count_stored(ledger, stored_once)["events_duplicated"] == 0
    assert count_stored(ledger, stored_once)["events_stored"] == 2
    # a second copy under a key no sent event has (a retry hashed differently): one sequence number more
    rehashed = StoredView(
        keys={"u": {"id:u-1", "h:abc", "h:other", "id:u-3"}},
        sequences={"u": 4},
        history=Counter({("u", 1): 1, ("u", 2): 2, ("u", 3): 1}),
    )
    assert count_stored(ledger, rehashed)["events_duplicated"] == 1
    # a copy visible in the history although the counter did not move
    repeated = StoredView(stored_once.keys, {"u": 3}, Counter({("u", 1): 2, ("u", 2): 1, ("u", 3): 1}))
    assert count_stored(ledger, repeated)["events_duplicated"] == 1


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_ledger_derives_the_keys_the_api_stores(tmp_path: Path) -> None:
    events = [
        {"user_id": "k", "item_id": "i1", "action": "click", "timestamp": 1_750_000_000},
        {"user_id": "k", "item_id": "i1", "action": "click", "timestamp": 1_750_000_001, "event_id": "e-1"},
        {"user_id": "k", "item_id": "i2", "action": "purchase", "timestamp": 1_750_000_002, "value": 3.0},
    ]
    async with running_app(make_settings(FakeBundle.write(tmp_path / "bundle", "v1"))) as (app, client):
        assert (await client.post("/v1/events", json={"events": events})).status_code == 202
        remembered = set(app.state.services.stores.events._seen["k"])
    assert {idempotency_key(event) for event in events} == remembered
