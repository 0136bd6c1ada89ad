"""``load_dataset``: prepare a named dataset once into a cache directory and reuse it while inputs match."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from models.data.builder import SessionConfig
from models.data.errors import BadRows, DataError
from models.data.loaders.commerce import find_taobao_file, load_retailrocket, load_taobao
from models.data.loaders.generic import load_event_file
from models.data.loaders.movielens import find_ml1m_ratings, load_ml1m, load_ml100k
from models.data.loaders.synthetic import SyntheticConfig, generate_synthetic
from models.data.schema import Dataset
from models.data.storage import FORMAT_VERSION, load_prepared, read_manifest, save_dataset, sha256_file

DATASET_NAMES = ("ml-1m", "ml-100k", "taobao", "retailrocket", "csv", "synthetic")
SHIPPED_DATASETS = ("ml-1m", "ml-100k", "taobao", "retailrocket")  # re-prepared from the data directory
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DEFAULT_DATA_DIR = Path("../shared/data")
DEFAULT_CACHE_DIR = Path("var/data")
PREPARE_VERSION = 2


def code_fingerprint() -> str:
    """sha256 over the source of models/data, so a cache written by other preparation code is rebuilt."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


SUBDIRECTORIES = {
    "ml-1m": "ml-1m",
    "ml-100k": "ml-100k",
    "taobao": "taobao-userbehavior",
    "retailrocket": "retailrocket",
}


@dataclass
class PrepareOptions:
    """Everything besides the dataset name that changes the prepared output."""

    sessions: SessionConfig = field(default_factory=SessionConfig)
    skip_bad_rows: bool = False
    input_path: Path | None = None  # a file (csv/parquet, ratings, events) or a directory
    mapping: dict[str, str] = field(default_factory=dict)  # csv only
    sep: str = ","
    timestamp_unit: str = "s"
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    progress: bool = False
    name: str | None = (
        None  # the prepared dataset's own name (cache folder, reports, bundles); None: the kind
    )

    def identity(self, name: str) -> dict[str, Any]:
        """The options that define the output (progress and paths excluded; input bytes are hashed)."""
        out: dict[str, Any] = {"sessions": asdict(self.sessions), "skip_bad_rows": self.skip_bad_rows}
        if self.name is not None:
            out["name"] = self.name
        if name == "csv":
            out.update(
                mapping=dict(sorted(self.mapping.items())), sep=self.sep, timestamp_unit=self.timestamp_unit
            )
        if name == "synthetic":
            out["synthetic"] = asdict(self.synthetic)
        return out


def resolve_data_dir(data_dir: Path | str | None) -> Path:
    """The given directory, else ``DEFAULT_DATA_DIR`` (../shared/data). The commands resolve
    $TANDEM_DATA_DIR themselves (``cli.options``)."""
    return Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR


def _source_dir(name: str, data_dir: Path, options: PrepareOptions) -> Path:
    if options.input_path is not None:
        return options.input_path if options.input_path.is_dir() else options.input_path.parent
    nested = data_dir / SUBDIRECTORIES[name]
    return nested if nested.is_dir() else data_dir


def _plan(
    name: str, data_dir: Path, options: PrepareOptions
) -> tuple[list[Path], Callable[[BadRows], Dataset]]:
    """Input files to fingerprint and a function that builds the dataset from them."""
    sessions, progress = options.sessions, options.progress
    given_file = (
        options.input_path if options.input_path is not None and options.input_path.is_file() else None
    )
    if name == "synthetic":
        return [], lambda bad: generate_synthetic(options.synthetic, sessions)
    if name == "csv":
        if options.input_path is None:
            raise ValueError("dataset 'csv' needs an input file (--input events.csv|events.parquet)")
        path = options.input_path
        mapping = options.mapping or {}
        return [path], lambda bad: load_event_file(
            path,
            {**{"user": "user", "item": "item", "timestamp": "timestamp"}, **mapping},
            bad,
            sessions,
            options.sep,
            options.timestamp_unit,
            options.name or "csv",
        )
    if name not in SUBDIRECTORIES:
        raise ValueError(f"unknown dataset '{name}', expected one of {DATASET_NAMES}")
    directory = _source_dir(name, data_dir, options)
    if name == "ml-1m":
        ratings = given_file or find_ml1m_ratings(directory)
        files = [ratings, directory / "movies.dat", directory / "users.dat"]
        return files, lambda bad: load_ml1m(directory, bad, sessions, ratings, progress)
    if name == "ml-100k":
        files = [directory / n for n in ("u.data", "u.item", "u.user", "u.genre")]
        return files, lambda bad: load_ml100k(directory, bad, sessions, progress)
    if name == "taobao":
        path = given_file or find_taobao_file(directory)
        return [path], lambda bad: load_taobao(path, bad, sessions, progress)
    events = given_file or directory / "events.csv"
    files = [events, *sorted(events.parent.glob("item_properties_part*.csv"))]
    return files, lambda bad: load_retailrocket(directory, bad, sessions, events, progress)


def _fingerprint(name: str, files: list[Path], options: PrepareOptions) -> tuple[str, dict[str, str]]:
    inputs = {}
    for path in files:
        if not path.is_file():
            raise DataError(path, "file not found")
        inputs[path.name] = sha256_file(path)
    identity = {
        "dataset": name,
        "inputs": inputs,
        "options": options.identity(name),
        "format_version": FORMAT_VERSION,
        "prepare_version": PREPARE_VERSION,
        "code": code_fingerprint(),
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return digest, inputs


def prepare_dataset(
    name: str, data_dir: Path | str | None, out_dir: Path, options: PrepareOptions | None = None
) -> tuple[Dataset, bool]:
    """Prepares ``name`` into ``out_dir`` unless a matching preparation is there. Returns (dataset,
    reused)."""
    options = options or PrepareOptions()
    files, build = _plan(name, resolve_data_dir(data_dir), options)
    fingerprint, inputs = _fingerprint(name, files, options)
    manifest = read_manifest(out_dir)
    if manifest is not None and manifest.get("input_fingerprint") == fingerprint:
        return load_prepared(out_dir), True
    bad_rows = BadRows(skip=options.skip_bad_rows)
    dataset = build(bad_rows)
    dataset.name = options.name or dataset.name
    dataset.manifest.update(
        dataset=dataset.name,
        source=name,
        input_fingerprint=fingerprint,
        inputs=inputs,
        options=options.identity(name),
        skipped_rows=bad_rows.as_dict(),
        prepare_version=PREPARE_VERSION,
    )
    save_dataset(dataset, out_dir)
    return dataset, False


def load_dataset(
    name: str,
    data_dir: Path | str | None = None,
    cache_dir: Path | str = DEFAULT_CACHE_DIR,
    options: PrepareOptions | None = None,
) -> Dataset:
    """The prepared dataset ``name``, cached in ``cache_dir/<name>`` (prepared on first use)."""
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown dataset '{name}', expected one of {DATASET_NAMES}")
    dataset, _ = prepare_dataset(name, data_dir, Path(cache_dir) / name, options)
    return dataset


def check_dataset_name(name: str, kind: str | None = None) -> str:
    """``name`` when it can name a prepared dataset of ``kind`` (a folder name that no shipped dataset
    uses), else ValueError saying what is allowed."""
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"dataset name {name!r}: use up to 64 letters, digits, '.', '_' or '-', starting with a letter "
            "or digit"
        )
    if kind is not None and name in DATASET_NAMES and name != kind:
        raise ValueError(f"dataset name {name!r} is the name of the {name} dataset; choose another --name")
    return name


def open_dataset(
    name: str, data_dir: Path | str | None = None, cache_dir: Path | str = DEFAULT_CACHE_DIR
) -> Dataset:
    """The dataset a command names. A shipped one is (re)prepared from the data directory as
    ``load_dataset`` does; any other name (synthetic, csv, or the ``--name`` given to ``tandem data
    prepare``) is read as it was prepared into ``cache_dir/<name>``, its options kept; synthetic is
    generated with defaults when it is not there. An unknown name raises DataError saying how to prepare it.
    """
    check_dataset_name(name)
    if name in SHIPPED_DATASETS:
        return load_dataset(name, data_dir, cache_dir)
    folder = Path(cache_dir) / name
    if (folder / "manifest.json").is_file():
        dataset = load_prepared(folder)
        dataset.name = name  # prepared with --out into this folder: the folder names it
        dataset.manifest["dataset"] = name
        return dataset
    if name == "synthetic":
        return load_dataset(name, data_dir, cache_dir)
    raise DataError(
        folder,
        f"no prepared dataset '{name}' here. Prepare it first: tandem data prepare --dataset csv "
        f"--name {name} --input <events.csv> --map user=<column>,item=<column>,timestamp=<column> (or give "
        f"--cache-dir the folder that holds {name}/)",
    )


def has_ml1m(data_dir: Path | str | None = None) -> bool:
    directory = resolve_data_dir(data_dir)
    directory = directory / "ml-1m" if (directory / "ml-1m").is_dir() else directory
    try:
        find_ml1m_ratings(directory)
    except DataError:
        return False
    return (directory / "movies.dat").is_file() and (directory / "users.dat").is_file()


def default_dataset(data_dir: Path | str | None = None, cache_dir: Path | str = DEFAULT_CACHE_DIR) -> Dataset:
    """ML-1M when its files are in ``data_dir``, else the synthetic generator's default dataset."""
    name = "ml-1m" if has_ml1m(data_dir) else "synthetic"
    return load_dataset(name, data_dir, cache_dir)
