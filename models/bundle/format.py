"""The bundle's format: its layout, the typed manifest, and the hashes that make it tamper-evident.

Layout (written by ``models.bundle.write`` into a temporary sibling directory, then renamed into place, so a
reader never sees half a bundle)::

    manifest.json          ``Manifest``: versions, data fingerprint, the served path, merge and ranker
                           decision, offline metrics, per-file sha256
    catalogue.parquet      item (index), raw_id, title, category, genres, year, popularity
    users.parquet          user (index), raw_id, static user features
    recent_events.parquet  each user's last <= 200 events (user, item, action, value, timestamp, scene,
                           device)
    sources/               every fitted candidate source as fitted (``models.bundle.sources_io``)
    encoder/, ranker/      the checkpoints (config + state_dict), when present
    item_vectors.npy       [num_items, d] float32 encoder item vectors, when an encoder is present
    index/                 ``ItemIndex`` over the item vectors

``model_version`` is a hash of the checkpoint bytes (of the sources' files for a bundle without models);
``index_version`` is the item-vector hash. The manifest lists the sha256 of every other file
(``file_sha256``); ``models.bundle.load`` recomputes them before loading anything and refuses a missing or
changed file with ``BundleIntegrityError`` naming it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

# 3: typed manifest, fitted sources saved as fitted (sources/); 4: the ranker may be a GBDT (model text +
# feature state, ranker/gbdt/), ServingChoice.ranker_kind and ranker_gain
FORMAT_VERSION = 4
MANIFEST = "manifest.json"
HISTORY_LENGTH = 200
HISTORY_COLUMNS = ("user", "item", "action", "value", "timestamp", "scene", "device")


class BundleIntegrityError(ValueError):
    """A bundle file is missing, its bytes differ from the manifest's sha256, or the manifest is invalid."""


@dataclass(frozen=True)
class ServingChoice:
    """How the bundle serves: the merge (``MergeConfig.to_dict``), whether the ranker is served, which kind
    it is (``gbdt`` or ``onepiece``) and the gate's cross-fitted ratio over the merged order
    (``ranker_gain``), the recent-items scoring, and how the data was cut for the offline numbers."""

    merge: dict[str, Any]
    ranker_served: bool = False
    ranker_kind: str | None = None
    ranker_gain: float | None = None
    recent: dict[str, Any] | None = None
    protocol: str | None = None
    ranker_events: int | None = None
    exclude_seen: bool | None = None
    ranker_windows: int | None = None


@dataclass(frozen=True)
class Manifest:
    """Everything ``manifest.json`` says, read and written here only.

    served_path: what answers a known user, e.g. ``session_encoder+ranker`` only when the gate served the
    ranker (``session_encoder`` when it refused it, ``sources`` without an encoder); files: bundle-relative
    path per part (None = absent); offline: the replay's numbers (``test``: row -> metric -> value,
    ``valid``: validation and gate numbers); training: per-stage logs and seconds."""

    model_version: str
    index_version: str
    dataset: str
    data_fingerprint: str
    served_path: str
    serving: ServingChoice
    files: dict[str, str | None]
    checkpoint_sha256: dict[str, str]
    file_sha256: dict[str, str]
    created_at: str
    recipe: str | None = None
    offline: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    index: dict[str, Any] = field(default_factory=dict)  # the index's recall sweep and chosen setting
    vocabularies: dict[str, list[str]] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    funnel: str | None = None
    sessions: dict[str, Any] | None = None
    build_seconds: float = 0.0
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, ensure_ascii=False, default=_json_default)

    @staticmethod
    def read(path: Path) -> Manifest:
        """``path``: a bundle directory. Refuses a missing, unreadable or older-format manifest clearly."""
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{manifest_path}: not a bundle (manifest missing)")
        try:
            data = json.loads(manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{manifest_path}:{error.lineno}: not valid JSON ({error.msg})") from error
        if not isinstance(data, dict):
            raise ValueError(f"{manifest_path}: expected a JSON object")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise BundleIntegrityError(
                f"{manifest_path}: bundle format {version}, this tandem reads format {FORMAT_VERSION}; "
                "rebuild it with `tandem bundle build`"
            )
        known = {f.name for f in fields(Manifest)}
        required = [f.name for f in fields(Manifest) if f.default is MISSING and f.default_factory is MISSING]
        missing = sorted(name for name in required if name not in data)
        if missing:
            raise BundleIntegrityError(f"{manifest_path}: field(s) {missing} missing")
        values = {k: v for k, v in data.items() if k in known}
        values["serving"] = ServingChoice(**data["serving"])
        return Manifest(**values)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def sha256_file(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def sha256_tree(path: Path) -> str:
    """sha256 of a file, or of a directory's files (relative names and bytes, sorted)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        with open(file, "rb") as handle:
            while block := handle.read(1 << 22):
                digest.update(block)
    return digest.hexdigest()


def file_hashes(directory: Path) -> dict[str, str]:
    """sha256 of every file under ``directory`` except the manifest, by POSIX relative path."""
    return {
        file.relative_to(directory).as_posix(): sha256_file(file)
        for file in sorted(directory.rglob("*"))
        if file.is_file() and file.name != MANIFEST
    }


def model_version_of(checkpoint_hashes: dict[str, str]) -> str:
    """The model version: a hash of the checkpoints' hashes (or of the sources' for a bundle without
    models)."""
    return sha256_hex("|".join(f"{k}:{v}" for k, v in sorted(checkpoint_hashes.items())))[:12]


def verify_bundle(path: Path, manifest: Manifest) -> str:
    """Checks every file on disk against ``file_sha256`` (none missing, none changed, none unlisted) and
    the checkpoints' hashes; returns the model version recomputed from the bytes.

    Raises ``BundleIntegrityError`` naming the first missing, changed or unlisted file."""
    expected = manifest.file_sha256
    if not expected:
        raise BundleIntegrityError(f"{path / MANIFEST}: field 'file_sha256' is empty")
    on_disk = {
        file.relative_to(path).as_posix()
        for file in path.rglob("*")
        if file.is_file() and file.name != MANIFEST
    }
    unlisted = sorted(on_disk - set(expected))
    if unlisted:
        raise BundleIntegrityError(f"{path / unlisted[0]}: not listed in the manifest")
    for relative, digest in sorted(expected.items()):
        file = path / relative
        if not file.is_file():
            raise BundleIntegrityError(f"{file}: missing (listed in the manifest)")
        actual = sha256_file(file)
        if actual != digest:
            raise BundleIntegrityError(
                f"{file}: sha256 {actual[:12]} does not match the manifest's {digest[:12]}"
            )
    hashes = manifest.checkpoint_sha256
    for name, part in manifest.files.items():
        if part and name in hashes and hashes[name] != sha256_tree(path / part):
            raise BundleIntegrityError(f"{path / part}: sha256 does not match the manifest's {name} hash")
    version = model_version_of(hashes)
    if version != manifest.model_version:
        raise BundleIntegrityError(f"{path / MANIFEST}: model_version does not match the content hashes")
    return version


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"manifest value of type {type(value).__name__} is not JSON serialisable")
