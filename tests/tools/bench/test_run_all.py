import json
from pathlib import Path

import numpy as np

from models.reporting.files import DEFAULT_RESULTS_DIR
from tools.bench import index_sweep, run_all
from tools.bench.index_sweep import main as sweep_main


def test_time_calls_counts_every_repeat() -> None:
    calls: list[int] = []
    timings = run_all.time_calls(lambda: calls.append(1), repeats=7, warmup=2)
    assert timings.shape == (7,) and len(calls) == 9 and (timings >= 0).all()
    result = run_all.summary(np.array([1.0, 2.0, 3.0, 4.0]))
    assert result["status"] == "ok" and result["p50_ms"] == 2.5 and len(result["timings_ms"]) == 4


def test_ann_stage_reports_each_index_kind() -> None:
    results = run_all.bench_ann(2_000, repeats=5, kinds=("flat", "ivf"), k=20)
    assert set(results) == {"flat", "ivf"}
    assert all(r["status"] == "ok" and r["repeats"] == 5 for r in results.values())
    assert results["flat"]["knob"]["recall@20"] == 1.0  # exact search is its own ground truth


def test_missing_model_package_is_reported_not_faked() -> None:
    result = run_all.not_available(ImportError("No module named 'models.ranker.serving'"))
    assert result == {
        "status": "not available",
        "reason": "ImportError: No module named 'models.ranker.serving'",
    }


def test_index_sweep_writes_all_three_reports(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    args = ["--items", "3000", "--dim", "8", "--clusters", "10", "--queries", "20", "--k", "20"]
    assert sweep_main([*args, "--ivf-nlist", "32", "--hnsw", "8:20", "--out", str(out)]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert [r["kind"] for r in report["results"]] == ["flat", "ivf", "hnsw"]
    assert report["results"][0]["holdout_at_tuned"]["recall_at_k"] == 1.0
    assert out.with_suffix(".png").stat().st_size > 0 and "IVF nlist=32" in out.with_suffix(".md").read_text()


def test_the_index_sweep_writes_under_var_results_by_default() -> None:
    assert index_sweep.parse_args([]).out == DEFAULT_RESULTS_DIR / "index-synthetic-1m"
