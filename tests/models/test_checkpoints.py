"""Weights-only checkpoint loading: tensors and plain numpy load, code-running pickles are refused."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoints import load_checkpoint


class _RunsCode:
    """Unpickling this would create a file (a stand-in for arbitrary code)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def test_tensors_and_plain_numpy_load(tmp_path: Path) -> None:
    payload = {
        "state_dict": {"w": torch.arange(3.0)},
        "item_category": np.arange(4, dtype=np.int64),
        "metrics": {"ndcg": np.float64(0.25), "users": np.int64(7)},
        "version": "v",
    }
    torch.save(payload, tmp_path / "ok.pt")
    loaded = load_checkpoint(tmp_path / "ok.pt")
    assert torch.equal(loaded["state_dict"]["w"], payload["state_dict"]["w"])
    np.testing.assert_array_equal(loaded["item_category"], payload["item_category"])
    assert loaded["metrics"] == {"ndcg": 0.25, "users": 7}


def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    torch.save({"state_dict": {}, "payload": _RunsCode(marker)}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match=r"evil\.pt: refused"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


def test_a_truncated_checkpoint_is_a_value_error_naming_the_file(tmp_path: Path) -> None:
    torch.save({"state_dict": {"w": torch.zeros(100)}}, tmp_path / "whole.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "whole.pt").read_bytes()[:200])
    with pytest.raises(ValueError, match=r"cut\.pt: not a loadable checkpoint"):
        load_checkpoint(tmp_path / "cut.pt")
