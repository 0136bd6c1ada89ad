"""Data-parallel encoder training: two ranks under torchrun (gloo, CPU) end with identical weights, rank 0
alone writes a checkpoint that serving loads; the batch split gives every rank the same step count."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.data.loaders.synthetic import SyntheticConfig, generate_synthetic
from models.data.storage import save_dataset
from models.encoder.serving import load_user_encoder
from models.train.distributed import DistContext, rank_batches


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_every_rank_gets_an_equal_share_of_each_global_batch() -> None:
    class Store:
        def __len__(self) -> int:
            return 23

        def batch(self, rows: np.ndarray) -> np.ndarray:
            return rows

    shares = [list(rank_batches(Store(), 8, 0, 1, DistContext(rank, 3))) for rank in range(3)]  # type: ignore[arg-type]
    assert [len(s) for s in shares] == [3, 3, 3]  # 8 + 8 + 7 rows: three global batches for every rank
    for step in range(3):
        rows = np.concatenate([shares[rank][step] for rank in range(3)])
        assert len(set(rows.tolist())) == len(rows)  # no row twice in one global batch
    every = np.sort(np.concatenate([np.concatenate(s) for s in shares]))
    np.testing.assert_array_equal(every, np.arange(23))  # every row once per epoch
    assert [len(b) for b in shares[0]] == [3, 3, 3] and [len(b) for b in shares[2]] == [2, 2, 2]


@pytest.mark.scale  # two processes for a minute: make scale
def test_two_ranks_train_one_model_and_rank_zero_saves_it(tmp_path: Path) -> None:
    dataset = generate_synthetic(SyntheticConfig(num_users=80, num_items=120, num_events=3000, seed=2))
    dataset.name = "tiny"
    save_dataset(dataset, tmp_path / "cache" / "tiny")
    out = tmp_path / "encoder.pt"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
        "-m", "models.train.encoder_cli", "--dataset", "tiny", "--cache-dir", str(tmp_path / "cache"),
        "--preset", "tiny", "--epochs", "2", "--batch-size", "16", "--threads", "2", "--out", str(out),
    ]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(out.with_name(out.name + ".json").read_text())
    assert summary["world"] == 2 and summary["replicas_identical"] is True
    assert summary["epochs"] == 2 and summary["stopped_by"] in ("epochs", "patience")
    assert "NDCG@10" in json.dumps(summary["metrics"])  # validated on rank 0, recorded for every rank
    encoder = load_user_encoder(out)
    assert encoder.item_vectors().shape[0] == dataset.num_items
    assert not list(tmp_path.glob("*.resume.pt"))  # only what rank 0 was asked to write
