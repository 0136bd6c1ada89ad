import argparse
import itertools
from pathlib import Path

import numpy as np
import pytest

from models.data import cli
from models.data.datasets import PrepareOptions, default_dataset, load_dataset, open_dataset, prepare_dataset
from models.data.errors import DataError
from models.data.loaders.synthetic import SyntheticConfig
from models.data.schema import EVENT_COLUMNS
from models.data.storage import load_prepared
from tests.models.user_log import CLICK_LOG_MAP, write_click_log

SMALL = SyntheticConfig(num_users=40, num_items=100, num_events=1500, num_clusters=5, seed=1)
FILES = ("events.parquet", "items.parquet", "users.parquet", "manifest.json")


@pytest.fixture
def taobao_sample(shared_data_dir: Path, tmp_path: Path) -> Path:
    source = shared_data_dir / "taobao-userbehavior" / "UserBehavior-first814users.csv"
    with open(source, encoding="ascii") as handle:
        text = "".join(itertools.islice(handle, 1500))
    path = tmp_path / "raw" / "UserBehavior.csv"
    path.parent.mkdir()
    path.write_text(text, encoding="ascii")
    return path


def test_prepare_twice_gives_identical_bytes(taobao_sample: Path, tmp_path: Path) -> None:
    options = PrepareOptions(input_path=taobao_sample)
    prepare_dataset("taobao", None, tmp_path / "a", options)
    prepare_dataset("taobao", None, tmp_path / "b", options)
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_cache_is_reused_until_inputs_change(taobao_sample: Path, tmp_path: Path) -> None:
    options = PrepareOptions(input_path=taobao_sample)
    first, reused = prepare_dataset("taobao", None, tmp_path / "out", options)
    assert not reused
    again, reused = prepare_dataset("taobao", None, tmp_path / "out", options)
    assert reused and len(again.events) == len(first.events)
    for name in EVENT_COLUMNS:
        np.testing.assert_array_equal(getattr(again.events, name), getattr(first.events, name))
    assert again.catalogue.raw_id == first.catalogue.raw_id
    with open(taobao_sample, "a", encoding="ascii") as handle:
        handle.write("999999,1,2,pv,1511544070\n")
    changed, reused = prepare_dataset("taobao", None, tmp_path / "out", options)
    assert not reused and len(changed.events) == len(first.events) + 1
    other_gap = PrepareOptions(input_path=taobao_sample, sessions=options.sessions.__class__(gap_seconds=60))
    assert not prepare_dataset("taobao", None, tmp_path / "out", other_gap)[1]


def test_tampered_output_is_detected(tmp_path: Path) -> None:
    prepare_dataset("synthetic", None, tmp_path, PrepareOptions(synthetic=SMALL))
    with open(tmp_path / "events.parquet", "ab") as handle:
        handle.write(b"x")
    with pytest.raises(DataError, match="sha256 differs"):
        load_prepared(tmp_path)


def test_load_dataset_and_default(tmp_path: Path) -> None:
    dataset = load_dataset("synthetic", None, tmp_path, PrepareOptions(synthetic=SMALL))
    assert (tmp_path / "synthetic" / "manifest.json").is_file()
    assert dataset.manifest["synthetic"]["num_users"] == 40
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("ml-20m", None, tmp_path)
    # An empty data directory means no ML-1M: the default falls back to the synthetic generator.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert default_dataset(empty, tmp_path / "cache").name == "synthetic"


def test_default_dataset_prefers_ml1m(shared_data_dir: Path, tmp_path: Path) -> None:
    assert default_dataset(shared_data_dir, tmp_path).name == "ml-1m"


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(argv))


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
