"""Writing a bundle: a ``TrainedPipeline`` saved as it was fitted (no refit, no reload), plus the tables
serving reads (catalogue, users, recent events). Two other ways in use the same writer: the baseline bundle
(sources only) and a bundle assembled from checkpoints trained elsewhere (``tandem bundle build
--encoder``)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from models.bundle.format import (
    HISTORY_COLUMNS,
    HISTORY_LENGTH,
    MANIFEST,
    Manifest,
    ServingChoice,
    file_hashes,
    model_version_of,
    sha256_tree,
)
from models.bundle.ranker_io import save_any_ranker
from models.bundle.sources_io import SOURCES_DIR, save_sources
from models.candidates.merge import default_merge
from models.candidates.sources import AnnSource
from models.data.schema import Dataset, EventTable
from models.data.storage import catalogue_columns
from models.recipe.train import fit_all_sources
from models.recipe.trained import PeriodsSpec, TrainedPipeline


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


def _popularity(trained: TrainedPipeline, dataset: Dataset) -> np.ndarray:
    """The catalogue's popularity column (cold start, the popular fallback): the fitted ``popular``
    source's scores, the same numbers the served pipeline's popular list ranks by."""
    source = trained.sources.get("popular")
    scores = getattr(source, "scores", None)
    if scores is None:
        return np.zeros(dataset.num_items, dtype=np.float32)
    return np.asarray(scores, dtype=np.float32)


def write_bundle(
    trained: TrainedPipeline,
    dataset: Dataset,
    out_dir: str | Path,
    *,
    offline: dict[str, Any] | None = None,
    recipe: str | None = None,
    training: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Saves ``trained`` for ``dataset`` at ``out_dir`` (atomically) exactly as fitted; returns its path.

    offline: the replay's numbers on the held-out test (``{"test": rows, "valid": ...}``); training:
    extra build facts for the manifest (step seconds)."""
    out_dir = Path(out_dir)
    started = time.perf_counter()

    def assemble(directory: Path) -> None:
        from models.encoder.serving import TorchUserEncoder, save_user_encoder

        files: dict[str, str | None] = {
            "encoder": None,
            "ranker": None,
            "index": None,
            "sources": SOURCES_DIR,
        }
        hashes: dict[str, str] = {}
        _write_tables(dataset, _popularity(trained, dataset), directory)
        save_sources(trained.sources, directory)
        index_version, index_facts = "none", {}
        if trained.encoder is not None:
            encoder = trained.encoder
            if not isinstance(encoder, TorchUserEncoder):
                raise TypeError(f"cannot save an encoder of type {type(encoder).__name__}")
            save_user_encoder(
                encoder.model, directory / "encoder" / "encoder.pt", encoder.item_category, encoder.version
            )
            files["encoder"] = "encoder/encoder.pt"
            np.save(directory / "item_vectors.npy", np.asarray(encoder.item_vectors(), dtype=np.float32))
        if trained.index is not None:
            trained.index.save(directory / "index")
            files["index"] = "index"
            index_version = trained.index.version
            index_facts = dict(trained.index.metadata.get("recall", {})) | {
                "chosen": trained.index.metadata.get("chosen")
            }
        if trained.ranker is not None:
            files["ranker"] = save_any_ranker(trained.ranker, directory)
        for name in ("encoder", "ranker"):
            if files[name]:
                hashes[name] = sha256_tree(directory / str(files[name]))
        if not hashes:  # no model: the version is the fitted sources' content
            hashes["sources"] = sha256_tree(directory / SOURCES_DIR)
        spec = trained.periods
        manifest = Manifest(
            model_version=model_version_of(hashes),
            index_version=index_version,
            dataset=dataset.name,
            data_fingerprint=data_fingerprint(dataset),
            served_path=trained.served_path,
            serving=ServingChoice(
                merge=trained.merge.to_dict(),
                ranker_served=trained.ranker_served and trained.ranker is not None,
                ranker_kind=trained.ranker_kind if trained.ranker is not None else None,
                ranker_gain=trained.valid.get("gate_ratio"),
                recent=trained.recent,
                protocol=spec.protocol,
                ranker_events=spec.ranker_events,
                ranker_windows=spec.ranker_windows,
                exclude_seen=spec.exclude_seen,
            ),
            files=files,
            checkpoint_sha256=hashes,
            file_sha256=file_hashes(directory),
            created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            recipe=recipe,
            offline=dict(offline or {}),
            training={**_training_summary(trained), **(training or {})},
            index=index_facts,
            vocabularies=dict(dataset.manifest.get("vocabularies", {})),
            counts=dict(dataset.manifest.get("counts", {})),
            funnel=dataset.manifest.get("funnel"),
            sessions=dataset.manifest.get("sessions"),
            build_seconds=round(time.perf_counter() - started, 3),
        )
        (directory / MANIFEST).write_text(manifest.to_json() + "\n", encoding="utf-8")

    return write_atomically(out_dir, assemble, overwrite=overwrite)


def _training_summary(trained: TrainedPipeline) -> dict[str, Any]:
    """What the manifest keeps of the recipe's logs: choices, numbers and seconds, not per-step arrays."""
    kept = {k: v for k, v in trained.training.items() if k != "valid_unions"}
    return {"seed": trained.seed, "valid": trained.valid, "notes": trained.notes, **kept}


def sources_only(dataset: Dataset, protocol: str = "leave-last-out", total: int = 200) -> TrainedPipeline:
    """The baseline pipeline: every encoder-free source fitted on all events, the untuned merge."""
    sources = fit_all_sources(dataset, dataset.events)
    allow_seen = protocol != "leave-last-out"
    merge = default_merge(list(sources), total, allow_seen)
    return TrainedPipeline(dataset.name, 0, PeriodsSpec(protocol, None, not allow_seen), sources, merge)


def from_checkpoints(
    dataset: Dataset,
    encoder_path: str | Path | None,
    ranker_path: str | Path | None,
    index_kind: str = "auto",
    index_config: Any | None = None,
    total: int = 200,
) -> TrainedPipeline:
    """A pipeline assembled from checkpoints trained elsewhere: sources fitted on all events (the same fit
    path), the encoder's index built here and tuned on sampled users, the untuned merge; a given ranker is
    served (nothing here can gate it)."""
    from models.encoder.serving import load_user_encoder
    from models.index.from_encoder import build_index_for_encoder
    from models.ranker.serving import load_ranker

    pipeline = sources_only(dataset, total=total)
    sources = dict(pipeline.sources)
    encoder = index = ranker = None
    if encoder_path is not None:
        encoder = load_user_encoder(encoder_path)
        index, _ = build_index_for_encoder(encoder, history_sample(dataset), index_kind, index_config)
        sources["ann"] = AnnSource(index)
    if ranker_path is not None:
        ranker = load_ranker(ranker_path)
    merge = default_merge(list(sources), total, pipeline.merge.allow_seen)
    return replace(
        pipeline,
        sources=sources,
        merge=merge,
        encoder=encoder,
        index=index,
        ranker=ranker,
        ranker_served=ranker is not None,
    )


def history_sample(dataset: Dataset, max_users: int = 300) -> list[tuple[Any, int]]:
    """Up to ``max_users`` users' recent histories (with the time of their last event) for index tuning."""
    from models.data.histories import history_from_rows

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
