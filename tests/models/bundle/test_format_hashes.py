"""The bundle's hashes on small hand-made files (no training): what a checkpoint's hash covers, the model
version's fixed recipe, and the messages of each refusal."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from models.bundle.format import (
    BundleIntegrityError,
    Manifest,
    ServingChoice,
    file_hashes,
    model_version_of,
    sha256_tree,
    verify_bundle,
)


def test_the_model_version_is_a_fixed_recipe_of_the_checkpoint_hashes() -> None:
    # bundles written by earlier builds must keep verifying: the recipe cannot drift
    expected = hashlib.sha256(b"encoder:cd|ranker:ab").hexdigest()[:12]
    assert model_version_of({"ranker": "ab", "encoder": "cd"}) == expected == "3a08b2d17fbc"


def test_a_checkpoint_file_is_hashed_with_its_name(tmp_path: Path) -> None:
    (tmp_path / "ranker.pt").write_bytes(b"weights")
    (tmp_path / "other.pt").write_bytes(b"weights")
    assert sha256_tree(tmp_path / "ranker.pt") == hashlib.sha256(b"ranker.pt" + b"weights").hexdigest()
    assert sha256_tree(tmp_path / "ranker.pt") != sha256_tree(tmp_path / "other.pt")


def test_a_checkpoint_directory_is_hashed_with_every_files_relative_path(tmp_path: Path) -> None:
    trees = []
    for name, sub in (("one", "a"), ("two", "b")):  # the same bytes under another subfolder
        (tmp_path / name / sub).mkdir(parents=True)
        (tmp_path / name / sub / "w.bin").write_bytes(b"weights")
        (tmp_path / name / "top.json").write_bytes(b"{}")
        trees.append(tmp_path / name)
    expected = hashlib.sha256(b"a/w.bin" + b"weights" + b"top.json" + b"{}").hexdigest()
    assert sha256_tree(trees[0]) == expected
    assert sha256_tree(trees[0]) != sha256_tree(trees[1])
    (trees[0] / "a" / "w.bin").write_bytes(b"changed")
    assert sha256_tree(trees[0]) != expected


def bundle(path: Path) -> Manifest:
    """A two-file bundle with one checkpoint, and its valid manifest."""
    (path / "ranker").mkdir(parents=True)
    (path / "ranker" / "ranker.pt").write_bytes(b"weights")
    (path / "catalogue.parquet").write_bytes(b"items")
    hashes = {"ranker": sha256_tree(path / "ranker" / "ranker.pt")}
    return Manifest(
        model_version=model_version_of(hashes),
        index_version="",
        dataset="tiny",
        data_fingerprint="",
        served_path="sources",
        serving=ServingChoice(merge={}),
        files={"ranker": "ranker/ranker.pt", "encoder": None},
        checkpoint_sha256=hashes,
        file_sha256=file_hashes(path),
        created_at="",
    )


def test_a_valid_bundle_verifies_to_its_model_version(tmp_path: Path) -> None:
    manifest = bundle(tmp_path)
    assert verify_bundle(tmp_path, manifest) == manifest.model_version


def test_each_refusal_names_the_file_and_what_is_wrong(tmp_path: Path) -> None:
    manifest = bundle(tmp_path)
    with pytest.raises(
        BundleIntegrityError, match=rf"^{tmp_path}/manifest\.json: field 'file_sha256' is empty$"
    ):
        verify_bundle(tmp_path, replace(manifest, file_sha256={}))
    wrong_version = replace(manifest, model_version="000000000000")
    message = rf"^{tmp_path}/manifest\.json: model_version does not match the content hashes$"
    with pytest.raises(BundleIntegrityError, match=message):
        verify_bundle(tmp_path, wrong_version)
    (tmp_path / "catalogue.parquet").write_bytes(b"other")
    actual = hashlib.sha256(b"other").hexdigest()[:12]
    listed = manifest.file_sha256["catalogue.parquet"][:12]
    message = rf"^{tmp_path}/catalogue\.parquet: sha256 {actual} does not match the manifest's {listed}$"
    with pytest.raises(BundleIntegrityError, match=message):
        verify_bundle(tmp_path, manifest)
