"""A small click log as a new user brings it: anonymous sessions with string ids, timestamps in seconds
with a fraction, re-visits inside a session, and a split column (the latest sessions are the test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

HEADER = "visitor,product,ts,fold"


def click_log_rows(sessions: int = 240, seed: int = 0, valid_share: float = 0.0) -> list[str]:
    """CSV rows (no header): ``sessions`` anonymous visitors of 1-6 clicks on 60 products in 6 groups;
    each click follows the previous one in its group or re-visits it. The last 20% of sessions by start
    time are labelled test, the ``valid_share`` before them valid, the rest train."""
    rng = np.random.default_rng(seed)
    starts = np.sort(rng.uniform(0, 20 * 86_400, sessions))
    test_from = np.quantile(starts, 0.8)
    valid_from = np.quantile(starts, 0.8 - valid_share) if valid_share else test_from
    rows = []
    for number, start in enumerate(starts.tolist()):
        group = int(rng.integers(6))
        position = int(rng.integers(10))
        fold = "test" if start >= test_from else "valid" if start >= valid_from else "train"
        clicks = 1 if number % 40 == 0 else int(rng.integers(2, 7))  # a few single-event visitors
        seen: list[int] = []
        moment = 1_600_000_000 + start
        for _ in range(clicks):
            if seen and rng.random() < 0.25:
                product = seen[int(rng.integers(len(seen)))]
            else:
                position = (position + int(rng.integers(1, 3))) % 10
                product = group * 10 + position
            seen.append(product)
            rows.append(f"v-{number:04d},sku-{product:03d},{moment:.3f},{fold}")
            moment += float(rng.uniform(3.0, 90.0))
    return rows


def write_click_log(path: Path, sessions: int = 240, seed: int = 0, valid_share: float = 0.0) -> Path:
    path.write_text("\n".join([HEADER, *click_log_rows(sessions, seed, valid_share)]) + "\n", "utf-8")
    return path


CLICK_LOG_MAP = "user=visitor,item=product,timestamp=ts,split=fold"
