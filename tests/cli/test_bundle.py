"""A user's own click log through every command: prepare -> eval (retrieval, pipeline) -> bundle -> the
served answer, under a dataset name of the user's choice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import models.bundle.default as default
from cli.main import main
from models.bundle.default import latest_bundle
from models.bundle.load import Bundle
from models.candidates.sources import CandidateRequest
from models.recipe.settings import RecipeSettings
from models.types import RequestContext
from tests.models.user_log import CLICK_LOG_MAP, write_click_log

TINY_PIPELINE = RecipeSettings.quick(
    encoder_preset="tiny",
    ranker_preset="tiny",
    encoder_epochs=2,
    ranker_epochs=1,
    ranker_min_steps=0,
    threads=1,
    progress=False,
    total=40,
)


def test_a_click_log_goes_from_prepare_to_a_served_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    log = write_click_log(tmp_path / "clicks.csv", sessions=200, valid_share=0.1)
    cache, results = tmp_path / "data", tmp_path / "results"
    prepare = ["data", "prepare", "--dataset", "csv", "--name", "myshop", "--input", str(log)]
    assert main([*prepare, "--map", CLICK_LOG_MAP, "--cache-dir", str(cache)]) == 0
    assert "split     train" in capsys.readouterr().out

    common = ["--dataset", "myshop", "--cache-dir", str(cache)]
    retrieval = ["eval", *common, "--model", "popularity", "--model", "cooccurrence"]
    assert main([*retrieval, "--out", str(results / "retrieval-myshop")]) == 0
    report = json.loads((results / "retrieval-myshop.json").read_text())
    assert report["dataset"] == "myshop" and report["protocol"] == "leave-last-out"
    assert report["defaults"]["exclude_seen"]["value"] is False

    tiny = ["--encoder-preset", "tiny", "--encoder-epochs", "2", "--ranker-epochs", "1"]
    assert (
        main(["eval", "--stage", "pipeline", *common, *tiny, "--out", str(results / "pipeline-myshop")]) == 0
    )
    printed = capsys.readouterr()
    assert "myshop: data shape: 200 users" in printed.out and "items per request: 1" in printed.out
    report = json.loads((results / "pipeline-myshop.json").read_text())
    assert report["protocol"] == "leave-last-out" and report["rows"]["pipeline"]["kind"] == "pipeline"
    assert report["users"] == report["protocol_periods"]["test_requests"] < 50  # the test-labelled sessions
    assert "warning: myshop: only" in printed.err and "test requests" in printed.err

    # the ranker's own stage needs users active before and after a time cut: anonymous sessions have none
    assert main(["eval", "--stage", "ranker", *common, "--out", str(results)]) == 2
    assert "error: myshop: the ranker stage has no test request" in capsys.readouterr().err

    monkeypatch.setattr(default, "default_settings", lambda progress=True: TINY_PIPELINE)
    root = tmp_path / "var"
    assert main(["bundle", "build", "--train", *common, "--root", str(root)]) == 0
    built = latest_bundle(root, "myshop")
    assert built is not None and built.name.startswith("myshop-")
    assert f"tandem serve --bundle {built}" in capsys.readouterr().out
    assert latest_bundle(root, "another") is None

    bundle = Bundle.load(built)
    serving = bundle.manifest.serving
    assert serving.protocol == "leave-last-out" and serving.merge["allow_seen"]
    served = bundle.served_pipeline(20)
    user, history = next(bundle.recent_histories())
    assert user.startswith("v-")  # the user's own string ids
    context = RequestContext(timestamp=int(history.timestamp[-1]) + 1)
    vector = bundle.encoder.encode([history], [context])[0] if bundle.encoder is not None else None
    answer = served.recommend(CandidateRequest(history, context, vector))
    assert len(answer.candidates) == 20 and np.all(answer.candidates.items >= 2)


def test_commands_name_an_unprepared_dataset_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = ["--cache-dir", str(tmp_path)]
    for argv in (
        ["eval", "--dataset", "nowhere", "--model", "popularity", *cache],
        ["eval", "--stage", "pipeline", "--dataset", "nowhere", *cache],
        ["train", "ranker", "--dataset", "nowhere", "--cache-dir", str(tmp_path)],
        ["train", "encoder", "--dataset", "nowhere", "--cache-dir", str(tmp_path)],
        ["bundle", "build", "--train", "--dataset", "nowhere", *cache],
    ):
        assert main(argv) == 2, argv
        assert "no prepared dataset 'nowhere' here. Prepare it first" in capsys.readouterr().err


def test_a_log_of_single_events_is_refused_clearly_and_gets_a_baseline_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "once.csv"
    log.write_text("user,item,timestamp\n" + "".join(f"u{i},i{i % 7},{1000 + i}.5\n" for i in range(40)))
    cache = ["--cache-dir", str(tmp_path / "data")]
    assert main(["data", "prepare", "--dataset", "csv", "--name", "once", "--input", str(log), *cache]) == 0
    assert "exclude seen items: yes" in capsys.readouterr().out  # nothing is ever re-visited
    train = ["bundle", "build", "--train", "--dataset", "once", *cache, "--root", str(tmp_path / "var")]
    assert main(train) == 2
    assert (
        "once: no test requests under leave-last-out (users need two or more events)"
        in capsys.readouterr().err
    )
    baseline = ["bundle", "build", "--dataset", "once", *cache, "--out", str(tmp_path / "bundle")]
    assert main(baseline) == 0 and Bundle.load(tmp_path / "bundle").manifest.dataset == "once"
