"""The DDP measurement's commands and its summary (the target's arithmetic)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tools.scale.ddp import summarise, training_command


def _run(ndcg: float, seconds: list[float], identical: bool = True) -> dict[str, object]:
    return {
        "metrics": {"val_NDCG@10": ndcg},
        "epoch_seconds": seconds,
        "epochs": len(seconds),
        "replicas_identical": identical,
    }


def test_the_ddp_run_goes_through_torchrun_and_both_run_the_fixed_budget() -> None:
    args = argparse.Namespace(dataset="ml-1m", data_dir=Path("/d"), epochs=8)
    single = training_command("single", 1, args, Path("/o/s.pt"))
    ddp = training_command("ddp", 1, args, Path("/o/d.pt"))
    assert "torch.distributed.run" not in single and "--nproc-per-node=2" in ddp
    for command in (single, ddp):
        joined = " ".join(command)
        assert "--epochs 8 --patience 0 --max-minutes 0 --threads 2 --seed 1" in joined
        assert "-m models.train.encoder_cli --dataset ml-1m --data-dir /d --preset quick" in joined


def test_the_target_is_the_mean_within_twice_the_single_spread_or_half_a_point() -> None:
    single = [_run(0.150, [5.0, 7.0]), _run(0.152, [6.0]), _run(0.154, [6.0])]
    close = summarise(single, [_run(0.149, [4.0]), _run(0.150, [4.0]), _run(0.151, [4.0])])
    assert close["single_ndcg10"] == [0.15, 0.152, 0.154] and close["single_epoch_s"] == 6.0
    assert close["mean_difference"] == -0.002 and close["tolerance"] == 0.005 and close["met"]
    assert close["ddp_epoch_s"] == 4.0 and close["replicas_identical"]
    far = summarise(single, [_run(0.140, [4.0]), _run(0.141, [4.0]), _run(0.142, [4.0], identical=False)])
    assert not far["met"] and not far["replicas_identical"]
    spread = [_run(0.10, [1.0]), _run(0.12, [1.0]), _run(0.14, [1.0])]  # stdev 0.02: tolerance 0.04
    wide = summarise(spread, [_run(0.15, [1.0]), _run(0.15, [1.0]), _run(0.16, [1.0])])
    assert wide["tolerance"] == 0.04 and wide["met"]
