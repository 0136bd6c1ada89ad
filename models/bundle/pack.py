"""Bundles for replicas without a shared disk: one ``.tar.gz`` per bundle, fetched by URL and checked.

``pack_bundle(dir)`` writes ``<dir>.tar.gz`` (members under the bundle's name, regular files and
directories only, sorted, no owner names) and returns its sha256. ``fetch_bundle(url, sha256, root)``
downloads it into ``root`` (``http(s)://`` or ``file://``, a timeout on every read), refuses it unless the
bytes hash to ``sha256``, extracts it refusing absolute paths, ``..``, links and anything but files and
directories (Python 3.11.2, Debian's, has no ``tarfile`` extraction filter), verifies every file against
the bundle's own manifest (``verify_bundle``) and renames it into place atomically. A bundle already
fetched with that hash is reused.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path, PurePosixPath

from models.bundle.format import MANIFEST, Manifest, verify_bundle
from models.bundle.write import write_atomically

CHUNK = 1 << 20
MAX_BYTES = 8 << 30  # a download larger than this is refused


class BundleFetchError(ValueError):
    """The packed bundle could not be fetched, did not match its sha256, or held an unsafe member."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def pack_bundle(bundle_dir: Path, out: Path | None = None) -> tuple[Path, str]:
    """Writes the bundle at ``bundle_dir`` as a ``.tar.gz`` (default ``<bundle_dir>.tar.gz``) after checking
    it; returns (the archive, its sha256)."""
    bundle_dir = Path(bundle_dir)
    verify_bundle(bundle_dir, Manifest.read(bundle_dir))
    out = Path(out) if out is not None else bundle_dir.with_name(bundle_dir.name + ".tar.gz")
    partial = out.with_name(out.name + ".partial")
    with tarfile.open(partial, "w:gz") as archive:
        for path in sorted([bundle_dir, *bundle_dir.rglob("*")]):
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                raise BundleFetchError(f"{path}: a bundle holds only files and directories")
            info = archive.gettarinfo(
                str(path), arcname=str(PurePosixPath(bundle_dir.name, *path.relative_to(bundle_dir).parts))
            )
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if info.isfile():
                with open(path, "rb") as handle:
                    archive.addfile(info, handle)
            else:
                archive.addfile(info)
    partial.replace(out)
    return out, sha256_file(out)


def safe_members(archive: tarfile.TarFile) -> tuple[str, list[tarfile.TarInfo]]:
    """The archive's one top directory and its members, refusing absolute paths, ``..``, links, devices
    and members outside that directory."""
    members = archive.getmembers()
    tops = set()
    for member in members:
        path = PurePosixPath(member.name)
        if path.is_absolute() or ".." in path.parts or not path.parts:
            raise BundleFetchError(f"unsafe path in the archive: {member.name!r}")
        if not (member.isfile() or member.isdir()):
            raise BundleFetchError(f"{member.name!r}: links and special files are refused")
        tops.add(path.parts[0])
    if len(tops) != 1:
        raise BundleFetchError(f"the archive must hold one bundle directory, found {sorted(tops)}")
    return tops.pop(), members


def fetch_bundle(url: str, sha256: str, root: Path, timeout_s: float = 30.0) -> Path:
    """The bundle at ``url`` (a ``pack_bundle`` archive whose sha256 is ``sha256``) extracted and verified
    under ``root``/``<sha256[:16]>-<name>``; returns its directory. Raises ``BundleFetchError``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    known = sorted(root.glob(f"{sha256[:16]}-*"))
    for candidate in known:  # fetched before: reuse it once it verifies
        if (candidate / MANIFEST).is_file():
            verify_bundle(candidate, Manifest.read(candidate))
            return candidate
    with tempfile.TemporaryDirectory(dir=root, prefix=".fetch-") as scratch:
        archive_path = Path(scratch) / "bundle.tar.gz"
        _download(url, archive_path, timeout_s)
        got = sha256_file(archive_path)
        if got != sha256:
            raise BundleFetchError(f"{url}: sha256 {got}, expected {sha256}")
        with tarfile.open(archive_path, "r:gz") as archive:
            name, members = safe_members(archive)
            target = root / f"{sha256[:16]}-{name}"

            def assemble(directory: Path) -> None:
                for member in members:
                    relative = PurePosixPath(member.name).parts[1:]
                    destination = directory.joinpath(*relative)
                    if member.isdir():
                        destination.mkdir(parents=True, exist_ok=True)
                        continue
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    source = archive.extractfile(member)
                    if source is None:
                        raise BundleFetchError(f"{member.name!r}: unreadable member")
                    with source, open(destination, "wb") as handle:
                        shutil.copyfileobj(source, handle, CHUNK)
                verify_bundle(directory, Manifest.read(directory))

            return write_atomically(target, assemble, overwrite=True)


def _download(url: str, out: Path, timeout_s: float) -> None:
    if not url.startswith(("http://", "https://", "file://")):
        raise BundleFetchError(f"{url}: only http(s):// and file:// bundle URLs are fetched")
    received = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, open(out, "wb") as handle:
            while block := response.read(CHUNK):
                received += len(block)
                if received > MAX_BYTES:
                    raise BundleFetchError(f"{url}: larger than {MAX_BYTES} bytes")
                handle.write(block)
    except OSError as exc:
        raise BundleFetchError(f"{url}: {exc}") from exc
