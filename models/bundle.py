"""The artifact bundle: the one directory that crosses from training to serving.

Layout (all written by ``build_bundle`` into a temporary sibling directory, then renamed into place, so a
reader never sees half a bundle):

    manifest.json          versions, data fingerprint, config, offline metrics, serving path, vocabularies
    catalogue.parquet      item (index), raw_id, title, category, genres, year, popularity
    users.parquet          user (index), raw_id, static user features
    recent_events.parquet  each user's last <= 200 events (user, item, action, value, timestamp, scene,
                           device)
    encoder/, ranker/      the checkpoints as given (config + state_dict), when present
    item_vectors.npy       [num_items, d] float32 encoder item vectors, when an encoder is present
    index/                 ``ItemIndex`` over the item vectors, with its recall/latency sweep
    cooccurrence/          the item-to-item neighbours baseline, when models.baselines provides it

``model_version`` is a hash of the checkpoint bytes (of the data and baseline method for a baseline-only
bundle); ``index_version`` is the item-vector hash.

Integrity: the manifest lists the sha256 of every file of the bundle (``file_sha256``, relative path ->
hex digest). ``Bundle.load`` recomputes them before loading anything and refuses a missing or changed file
with ``BundleIntegrityError`` naming it; the model version it reports is recomputed from the checkpoints'
bytes, never read from the manifest alone, so vectors cached under other weights never count as fresh.
Bundles of format 1 (before the file list) have their checkpoints verified and the rest logged as
unverified.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from models.data.histories import history_from_rows
from models.data.schema import FIRST_REAL_ID, Catalogue, Dataset, EventTable
from models.data.storage import catalogue_columns, read_catalogue
from models.index import IndexBuildConfig, ItemIndex
from models.index.from_encoder import build_index_for_encoder
from models.inference import CandidateRanker, UserEncoder, UserHistory

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: manifest carries file_sha256
MANIFEST = "manifest.json"
HISTORY_LENGTH = 200
ENCODER_LOADER = "models.encoder.serving:load_user_encoder"
RANKER_LOADER = "models.ranker.serving:load_ranker"


HISTORY_COLUMNS = ("user", "item", "action", "value", "timestamp", "scene", "device")


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _sha256_path(path: Path) -> str:
    """sha256 of a file, or of a directory's files (relative names and bytes, sorted)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        with open(file, "rb") as handle:
            while block := handle.read(1 << 22):
                digest.update(block)
    return digest.hexdigest()


class BundleIntegrityError(ValueError):
    """A bundle file is missing or its bytes differ from the sha256 in the manifest."""


def file_hashes(directory: Path) -> dict[str, str]:
    """sha256 of every file under ``directory`` except the manifest, by POSIX relative path."""
    return {
        file.relative_to(directory).as_posix(): _sha256_bytes(file)
        for file in sorted(directory.rglob("*"))
        if file.is_file() and file.name != MANIFEST
    }


def _sha256_bytes(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def model_version_of(checkpoint_hashes: dict[str, str]) -> str:
    """The model version: a hash of the checkpoints' hashes (or the baseline's description)."""
    return sha256_hex("|".join(f"{k}:{v}" for k, v in sorted(checkpoint_hashes.items())))[:12]


def verify_bundle(path: Path, manifest: dict[str, Any]) -> str:
    """Checks every listed file's sha256 and the checkpoints' hashes; returns the verified model version.

    Raises ``BundleIntegrityError`` naming the first missing or changed file."""
    expected: dict[str, str] = manifest.get("file_sha256") or {}
    if not expected:
        if int(manifest.get("format_version", 1)) >= 2:
            raise BundleIntegrityError(f"{path / MANIFEST}: field 'file_sha256' missing")
        logger.warning("bundle %s has no file hashes (format 1): only its checkpoints are verified", path)
    for relative, digest in sorted(expected.items()):
        file = path / relative
        if not file.is_file():
            raise BundleIntegrityError(f"{file}: missing (listed in the manifest)")
        actual = _sha256_bytes(file)
        if actual != digest:
            raise BundleIntegrityError(
                f"{file}: sha256 {actual[:12]} does not match the manifest's {digest[:12]}"
            )
    hashes = dict(manifest.get("checkpoint_sha256") or {})
    files = manifest.get("files") or {}
    for name in ("encoder", "ranker"):
        if files.get(name):
            checkpoint = path / files[name]
            if not checkpoint.exists():
                raise BundleIntegrityError(f"{checkpoint}: missing (listed in the manifest)")
            if hashes.get(name) != _sha256_path(checkpoint):
                raise BundleIntegrityError(
                    f"{checkpoint}: sha256 does not match the manifest's checkpoint hash"
                )
    version = model_version_of(hashes)
    if hashes and version != str(manifest.get("model_version")):
        raise BundleIntegrityError(f"{path / MANIFEST}: model_version does not match the checkpoint hashes")
    return version


def copy_checkpoint(source: Path, directory: Path) -> tuple[str, str]:
    """Copies a checkpoint file (or directory) into ``directory``; returns (bundle-relative path, sha256)."""
    if not source.exists():
        raise FileNotFoundError(f"{source}: checkpoint not found")
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / source.name
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)
    return f"{directory.name}/{source.name}", _sha256_path(source)


def data_fingerprint(dataset: Dataset) -> str:
    """sha256 over the event columns and the item/user vocabularies: same data -> same fingerprint."""
    digest = hashlib.sha256(dataset.name.encode())
    for name in (*HISTORY_COLUMNS, "session"):
        digest.update(np.ascontiguousarray(getattr(dataset.events, name)).tobytes())
    digest.update("\x1f".join(dataset.catalogue.raw_id).encode())
    digest.update("\x1f".join(dataset.user_raw_id).encode())
    return digest.hexdigest()


def recent_events(events: EventTable, num_users: int, length: int) -> dict[str, np.ndarray]:
    """Each user's last ``length`` events (rows stay sorted by user, then time). Columns [E'] each."""
    offsets = events.user_offsets(num_users)
    ends = np.repeat(offsets[1:], np.diff(offsets))  # [E] end row of each event's user
    keep = ends - np.arange(len(events)) <= length
    return {name: getattr(events, name)[keep] for name in HISTORY_COLUMNS}


def popularity_scores(dataset: Dataset) -> tuple[np.ndarray, str]:
    """[num_items] float32 recency-weighted popularity share just after the last event (0 for rows 0/1).

    Uses the popularity baseline from models.baselines (global share, no scene), so serving's "popular"
    fallback ranks exactly as the evaluated baseline does at the end of the data.
    """
    from models.baselines.popularity import PopularityConfig, popularity_after

    config = PopularityConfig()
    scores = popularity_after(dataset.events, dataset.num_items, dataset.num_scenes, config)
    return scores, f"models.baselines.popularity half_life_days={config.half_life_days}"


class CooccurrenceNeighbours:
    """Serving face of the co-occurrence baseline: ``neighbours(item_ids, k)`` over a fitted scorer;
    ``transitions``: the directed successor source saved beside it (None in bundles built before it)."""

    def __init__(self, scorer: Any, transitions: Any | None = None):
        self.scorer = scorer
        self.transitions = transitions

    def neighbours(self, item_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Items that co-occur with the seed items (oldest first, the last weighs most).

        item_ids: [n] int64 -> (items [<= k] int64 best first, never rows 0/1; scores [<= k] float32).
        """
        seeds = np.asarray(item_ids, dtype=np.int64).reshape(-1)
        scores = self.scorer.score_items([seeds])[0]
        scores[:FIRST_REAL_ID] = -np.inf
        k = min(k, int(np.isfinite(scores).sum()))
        if k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        best = np.argpartition(-scores, k - 1)[:k]
        best = best[np.lexsort((best, -scores[best]))]
        return best.astype(np.int64), scores[best].astype(np.float32)


COOCCURRENCE_FILE = "cooccurrence.npz"
TRANSITIONS_FILE = "transitions.npz"
TRANSITIONS_CONFIG = "transitions.json"


def save_transitions(dataset: Dataset, directory: Path) -> None:
    """Fits the directed successor table (``models.baselines.transitions``) on all events and saves it."""
    from models.baselines.transitions import TransitionConfig, transition_matrix

    config = TransitionConfig()
    matrix = transition_matrix(dataset.events, dataset.num_items, config)
    np.savez(directory / TRANSITIONS_FILE, indptr=matrix.indptr, indices=matrix.indices, data=matrix.data)
    (directory / TRANSITIONS_CONFIG).write_text(json.dumps(asdict(config), indent=2, sort_keys=True) + "\n")


def load_transitions(directory: Path) -> Any | None:
    """The ``transitions`` candidate source saved by ``save_transitions``; None when the bundle has none."""
    from models.baselines.cooccurrence import SparseRows
    from models.baselines.transitions import TransitionConfig
    from models.candidates.generator import transition_source

    path = directory / TRANSITIONS_FILE
    if not path.is_file():
        return None
    arrays = np.load(path)
    config = TransitionConfig(**json.loads((directory / TRANSITIONS_CONFIG).read_text()))
    return transition_source(SparseRows(arrays["indptr"], arrays["indices"], arrays["data"]), config)


def save_cooccurrence(dataset: Dataset, directory: Path) -> str:
    """Fits the co-occurrence baseline (and the successor table beside it) on all events and saves their
    sparse rows; returns the method name."""
    from models.baselines.cooccurrence import CooccurrenceConfig, CooccurrenceScorer

    config = CooccurrenceConfig()
    scorer = CooccurrenceScorer(dataset.events, dataset.num_items, config)
    directory.mkdir(parents=True, exist_ok=True)
    matrix = scorer.matrix
    np.savez(
        directory / COOCCURRENCE_FILE,
        indptr=matrix.indptr,
        indices=matrix.indices,
        data=matrix.data,
        popularity=scorer.popularity,
    )
    (directory / "config.json").write_text(json.dumps(asdict(config), indent=2, sort_keys=True) + "\n")
    save_transitions(dataset, directory)
    return f"models.baselines.cooccurrence window={config.window}"


def load_cooccurrence(directory: Path) -> CooccurrenceNeighbours:
    """Rebuilds the fitted scorer from its saved arrays (no refit)."""
    from models.baselines.cooccurrence import CooccurrenceConfig, CooccurrenceScorer, SparseRows

    path = directory / COOCCURRENCE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: co-occurrence arrays missing")
    arrays = np.load(path)
    config = CooccurrenceConfig(**json.loads((directory / "config.json").read_text()))
    # The scorer has no loader of its own; fill the fitted state its constructor would compute.
    scorer = CooccurrenceScorer.__new__(CooccurrenceScorer)
    scorer.config = config
    scorer.num_items = int(arrays["indptr"].shape[0] - 1)
    scorer.matrix = SparseRows(arrays["indptr"], arrays["indices"], arrays["data"])
    scorer.popularity = arrays["popularity"]
    return CooccurrenceNeighbours(scorer, load_transitions(directory))


def write_atomically(out_dir: Path, assemble: Callable[[Path], None], *, overwrite: bool) -> Path:
    """Runs ``assemble(tmp)`` in a temporary sibling of ``out_dir`` and renames it into place.

    A crash leaves only a hidden ``.tmp`` directory, never a half-written bundle under the final name.
    With ``overwrite`` an existing bundle is moved aside first and deleted after the rename.
    """
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir}: already exists (pass overwrite=True to replace it)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    # mkdtemp makes the directory 0700; a bundle is read by other users (the non-root serving container)
    staging.chmod(0o755)
    try:
        assemble(staging)
        old = None
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}-{time.time_ns()}"
            os.rename(out_dir, old)
        os.rename(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out_dir


def _load_with(loader: str, path: Path, **options: Any) -> Any:
    """Imports ``module:function`` lazily and calls it on ``path`` (and ``options``)."""
    module_name, function_name = loader.split(":")
    return getattr(importlib.import_module(module_name), function_name)(path, **options)


def serving_path_name(has_encoder: bool, has_ranker: bool, has_cooccurrence: bool) -> str:
    if has_encoder:
        return "session_encoder+ranker" if has_ranker else "session_encoder"
    baseline = "baseline:cooccurrence+popularity" if has_cooccurrence else "baseline:popularity"
    return baseline + ("+ranker" if has_ranker else "")


@dataclass
class Bundle:
    """A loaded bundle. See the module docstring for what each file holds."""

    path: Path
    manifest: dict[str, Any]
    catalogue: Catalogue
    item_index: dict[str, int]  # raw item id -> item index
    user_index: dict[str, int]  # raw user id -> user index (training users)
    popularity: np.ndarray  # [num_items] float32, 0 for rows 0/1
    encoder: UserEncoder | None = None
    ranker: CandidateRanker | None = None
    index: ItemIndex | None = None
    cooccurrence: CooccurrenceNeighbours | None = None
    _history_table: pa.Table | None = field(default=None, repr=False)
    _user_features: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _user_raw_id: list[str] = field(default_factory=list, repr=False)
    verified_model_version: str | None = None  # set by ``load`` from the checkpoints' bytes

    @property
    def model_version(self) -> str:
        return self.verified_model_version or str(self.manifest["model_version"])

    @property
    def index_version(self) -> str:
        return str(self.manifest["index_version"])

    def recent_histories(self) -> Iterator[tuple[str, UserHistory]]:
        """(raw user id, last <= 200 events, oldest first) for every user with events, in user order."""
        if self._history_table is None or self._history_table.num_rows == 0:
            return
        columns = {name: self._history_table.column(name).to_numpy() for name in HISTORY_COLUMNS}
        users = columns["user"]
        starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
        stops = np.r_[starts[1:], users.shape[0]]
        for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
            user = int(users[start])
            yield (
                self._user_raw_id[user],
                history_from_rows(columns, slice(start, stop), self._user_features, user),
            )

    @classmethod
    def load(cls, path: str | Path, ranker_backend: str = "eager", threads: int = 1) -> Bundle:
        """Loads a bundle directory; models come from their owners' ``serving`` modules (lazy imports).

        ranker_backend/threads: how the ranker scores one request (``models.ranker.serving.load_ranker``)."""
        path = Path(path)
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{manifest_path}: not a bundle (manifest missing)")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{manifest_path}:{error.lineno}: not valid JSON ({error.msg})") from error
        for key in ("format_version", "model_version", "index_version", "files"):
            if key not in manifest:
                raise ValueError(f"{manifest_path}: field '{key}' missing")
        files = manifest["files"]
        verified_version = verify_bundle(path, manifest)
        catalogue = read_catalogue(path / "catalogue.parquet")
        users = pq.read_table(path / "users.parquet")
        user_raw_id = [str(u) for u in users.column("raw_id").to_pylist()]
        features = {
            name: users.column(name).to_numpy().astype(np.int32)
            for name in users.column_names
            if name not in ("user", "raw_id")
        }
        bundle = cls(
            path=path,
            manifest=manifest,
            catalogue=catalogue,
            item_index={raw: row for row, raw in enumerate(catalogue.raw_id) if row >= 2},
            user_index={raw: row for row, raw in enumerate(user_raw_id) if row >= 2},
            popularity=pq.read_table(path / "catalogue.parquet", columns=["popularity"])
            .column("popularity")
            .to_numpy()
            .astype(np.float32),
            _history_table=pq.read_table(path / "recent_events.parquet"),
            _user_features=features,
            _user_raw_id=user_raw_id,
            verified_model_version=verified_version,
        )
        if files.get("encoder"):
            bundle.encoder = _load_with(ENCODER_LOADER, path / files["encoder"])
        if files.get("ranker"):
            bundle.ranker = _load_with(
                RANKER_LOADER, path / files["ranker"], backend=ranker_backend, threads=threads
            )
        if files.get("index"):
            bundle.index = ItemIndex.load(path / files["index"])
        if files.get("cooccurrence"):
            bundle.cooccurrence = load_cooccurrence(path / files["cooccurrence"])
        return bundle


def _write_tables(dataset: Dataset, popularity: np.ndarray, directory: Path) -> None:
    catalogue = {**catalogue_columns(dataset.catalogue), "popularity": popularity.astype(np.float32)}
    pq.write_table(pa.table(catalogue), directory / "catalogue.parquet", compression="zstd")
    users: dict[str, Any] = {
        "user": np.arange(dataset.num_users, dtype=np.int32),
        "raw_id": pa.array(dataset.user_raw_id, pa.string()),
    }
    users.update({name: column.astype(np.int32) for name, column in sorted(dataset.user_features.items())})
    pq.write_table(pa.table(users), directory / "users.parquet", compression="zstd")
    recent = recent_events(dataset.events, dataset.num_users, HISTORY_LENGTH)
    pq.write_table(pa.table(recent), directory / "recent_events.parquet", compression="zstd")


def build_bundle(
    dataset: Dataset,
    out_dir: str | Path,
    *,
    encoder_path: str | Path | None = None,
    ranker_path: str | Path | None = None,
    index_kind: str = "auto",
    index_config: IndexBuildConfig | None = None,
    metrics: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Assembles a bundle for ``dataset`` at ``out_dir`` (atomically) and returns its path.

    Without an encoder checkpoint the bundle is baseline-only (popularity, co-occurrence when available).
    ``metrics`` (offline evaluation) and ``config`` (training settings) are stored in the manifest as given.
    """
    out_dir = Path(out_dir)
    started = time.perf_counter()

    def assemble(directory: Path) -> None:
        files: dict[str, str | None] = {"encoder": None, "ranker": None, "index": None, "cooccurrence": None}
        hashes: dict[str, str] = {}
        popularity, popularity_method = popularity_scores(dataset)
        _write_tables(dataset, popularity, directory)
        cooccurrence_method = save_cooccurrence(dataset, directory / "cooccurrence")
        if cooccurrence_method:
            files["cooccurrence"] = "cooccurrence"
        all_metrics: dict[str, Any] = dict(metrics or {})
        index_version = "none"
        if encoder_path is not None:
            encoder_file, hashes["encoder"] = copy_checkpoint(Path(encoder_path), directory / "encoder")
            files["encoder"] = encoder_file
            encoder = _load_with(ENCODER_LOADER, directory / encoder_file)
            index, item_vectors = build_index_for_encoder(
                encoder, history_sample(dataset), index_kind, index_config
            )
            np.save(directory / "item_vectors.npy", item_vectors)
            index.save(directory / "index")
            files["index"], index_version = "index", index.version
            all_metrics["index"] = index.metadata["recall"] | {"chosen": index.metadata["chosen"]}
        if ranker_path is not None:
            files["ranker"], hashes["ranker"] = copy_checkpoint(Path(ranker_path), directory / "ranker")
        fingerprint = data_fingerprint(dataset)
        if not hashes:
            hashes["baseline"] = sha256_hex(f"{fingerprint}|{popularity_method}|{cooccurrence_method}")
        manifest = {
            "format_version": FORMAT_VERSION,
            "model_version": model_version_of(hashes),
            "index_version": index_version,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "dataset": dataset.name,
            "data_fingerprint": fingerprint,
            "counts": dataset.manifest.get("counts", {}),
            "vocabularies": dataset.manifest.get("vocabularies", {}),
            "funnel": dataset.manifest.get("funnel"),
            "sessions": dataset.manifest.get("sessions"),
            "serving_path": serving_path_name(
                files["encoder"] is not None, files["ranker"] is not None, files["cooccurrence"] is not None
            ),
            "baselines": {"popularity": popularity_method, "cooccurrence": cooccurrence_method},
            "files": files,
            "checkpoint_sha256": hashes,
            "file_sha256": file_hashes(directory),
            "config": dict(config or {}),
            "metrics": all_metrics,
            "build_seconds": round(time.perf_counter() - started, 3),
        }
        text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False, default=_json_default)
        (directory / MANIFEST).write_text(text + "\n", encoding="utf-8")

    return write_atomically(out_dir, assemble, overwrite=overwrite)


def history_sample(dataset: Dataset, max_users: int = 300) -> list[tuple[UserHistory, int]]:
    """Up to ``max_users`` users' recent histories (with the time of their last event) for index tuning."""
    recent = recent_events(dataset.events, dataset.num_users, HISTORY_LENGTH)
    users = recent["user"]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if users.size else np.zeros(0, np.int64)
    stops = np.r_[starts[1:], users.shape[0]]
    picks = np.random.default_rng(0).permutation(starts.shape[0])[:max_users]
    sample = []
    for start, stop in zip(starts[picks].tolist(), stops[picks].tolist(), strict=True):
        history = history_from_rows(recent, slice(start, stop))
        sample.append((history, int(history.timestamp[-1])))
    return sample


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"manifest value of type {type(value).__name__} is not JSON serialisable")
