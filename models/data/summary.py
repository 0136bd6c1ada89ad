"""Human-readable summary of a prepared dataset (the output of ``tandem data prepare``)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from models.data.builder import count_sessions
from models.data.schema import Action, Dataset


def _utc(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%d %H:%M")


def summarise(dataset: Dataset) -> dict[str, object]:
    events = dataset.events
    counts = np.bincount(events.action, minlength=len(Action))
    return {
        "dataset": dataset.name,
        "users": len(np.unique(events.user)),
        "items": dataset.num_items - 2,
        "items_with_events": len(np.unique(events.item)),
        "events": len(events),
        "sessions": count_sessions(events),
        "actions": {a.name.lower(): int(counts[a]) for a in Action if counts[a]},
        "time_range": [int(events.timestamp.min()), int(events.timestamp.max())] if len(events) else [],
    }


def format_summary(dataset: Dataset) -> str:
    s = summarise(dataset)
    total = max(int(s["events"]), 1)  # type: ignore[call-overload]
    actions = s["actions"]
    assert isinstance(actions, dict)
    mix = ", ".join(f"{name} {count:,} ({100 * count / total:.1f}%)" for name, count in actions.items())
    time_range = s["time_range"]
    assert isinstance(time_range, list)
    lo, hi = time_range
    lines = [
        f"dataset   {s['dataset']}",
        f"users     {s['users']:,}",
        f"items     {s['items']:,} ({s['items_with_events']:,} with events)",
        f"events    {s['events']:,}",
        f"sessions  {s['sessions']:,}",
        f"actions   {mix}",
        f"time      {_utc(lo)} .. {_utc(hi)} UTC",
    ]
    split = dataset.manifest.get("counts", {}).get("split")
    if split:
        lines.append("split     " + ", ".join(f"{part} {count:,}" for part, count in split.items()))
    lines += [f"note      {note}" for note in dataset.manifest.get("notes", [])]
    skipped = dataset.manifest.get("skipped_rows") or {}
    if skipped:
        lines.append("skipped rows (--skip-bad-rows):")
        lines += [
            f"  {info['count']:>8,}  {reason} (first at {info['first']})" for reason, info in skipped.items()
        ]
    return "\n".join(lines)
