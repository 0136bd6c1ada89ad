"""``tandem data prepare``: the summary it prints, bad rows, named datasets with their own cache."""

import argparse
from pathlib import Path

import pytest

from cli import data
from models.data.datasets import open_dataset
from models.data.errors import DataError
from tests.models.user_log import CLICK_LOG_MAP, write_click_log


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    data.add_arguments(parser)
    return data.run(parser.parse_args(argv))


def test_cli_prints_summary_and_skips_bad_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "log.csv"
    events.write_text(
        "uid,sku,ts,kind\na,1,100,view\na,2,160,cart\nb,1,oops,view\nb,3,200,purchase\n", "utf-8"
    )
    base = ["--dataset", "csv", "--input", str(events), "--map", "user=uid,item=sku,timestamp=ts,action=kind"]
    assert run_cli([*base, "--out", str(tmp_path / "strict")]) == 2
    assert "log.csv:4: field 'ts'" in capsys.readouterr().err
    assert run_cli([*base, "--out", str(tmp_path / "lenient"), "--skip-bad-rows"]) == 0
    out = capsys.readouterr().out
    assert "events    3" in out and "users     2" in out and "sessions  2" in out
    assert "cart 1 (33.3%)" in out and "ts: expected a number (first at log.csv:4)" in out


def test_cli_synthetic_sizes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--dataset", "synthetic", "--users", "30", "--items", "80", "--events", "900", "--clusters", "4"]
    assert run_cli([*argv, "--out", str(tmp_path)]) == 0
    assert "users     30" in capsys.readouterr().out
    assert run_cli([*argv, "--out", str(tmp_path)]) == 0
    assert "reused" in capsys.readouterr().out


def test_two_named_csv_datasets_keep_their_own_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    shop = write_click_log(tmp_path / "shop.csv", sessions=60, seed=1)
    blog = write_click_log(tmp_path / "blog.csv", sessions=30, seed=2)
    for name, path in (("shop", shop), ("blog", blog)):
        argv = ["--dataset", "csv", "--name", name, "--input", str(path), "--map", CLICK_LOG_MAP]
        assert run_cli([*argv, "--cache-dir", str(cache)]) == 0
        printed = capsys.readouterr().out
        assert f"dataset   {name}" in printed and f"output    {cache / name}" in printed
        assert "note      timestamp:" in printed and "floored to whole seconds" in printed
        assert "protocol: leave-last-out (the data's shape:" in printed
    opened = {name: open_dataset(name, None, cache) for name in ("shop", "blog")}
    assert opened["shop"].name == "shop" and opened["blog"].name == "blog"
    assert opened["shop"].manifest["source"] == "csv"
    assert len(opened["shop"].events) != len(opened["blog"].events)
    assert opened["shop"].event_split is not None and set(opened["shop"].event_split.tolist()) == {0, 2}
    # preparing the first again reuses its own cache; the second was not overwritten by it
    argv = ["--dataset", "csv", "--name", "shop", "--input", str(shop), "--map", CLICK_LOG_MAP]
    assert run_cli([*argv, "--cache-dir", str(cache)]) == 0
    assert "reused" in capsys.readouterr().out
    assert len(open_dataset("blog", None, cache).events) == len(opened["blog"].events)


def test_dataset_names_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = write_click_log(tmp_path / "log.csv", sessions=10)
    base = ["--dataset", "csv", "--input", str(log), "--map", CLICK_LOG_MAP, "--cache-dir", str(tmp_path)]
    assert run_cli([*base, "--name", "ml-1m"]) == 2
    assert "is the name of the ml-1m dataset" in capsys.readouterr().err
    assert run_cli([*base, "--name", "../elsewhere"]) == 2
    assert "use up to 64 letters" in capsys.readouterr().err
    with pytest.raises(DataError, match=r"no prepared dataset 'myshop' here\. Prepare it first"):
        open_dataset("myshop", None, tmp_path)
