import functools
import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.bundle.format import file_hashes
from models.bundle.load import Bundle
from models.bundle.pack import BundleFetchError, fetch_bundle, pack_bundle, sha256_file


def test_a_packed_bundle_fetched_by_file_url_is_the_same_bundle(trained_bundle: Path, tmp_path: Path) -> None:
    archive, digest = pack_bundle(trained_bundle, tmp_path / "b.tar.gz")
    assert digest == sha256_file(archive)
    fetched = fetch_bundle(archive.as_uri(), digest, tmp_path / "replica")
    assert fetched.parent == tmp_path / "replica" and fetched.name.startswith(digest[:16])
    assert file_hashes(fetched) == file_hashes(trained_bundle)
    assert Bundle.load(fetched).model_version == Bundle.load(trained_bundle).model_version
    # fetched once: the next call reuses it without downloading (the URL is gone)
    archive.unlink()
    assert fetch_bundle(archive.as_uri(), digest, tmp_path / "replica") == fetched


def test_a_wrong_sha256_is_refused_and_leaves_nothing(trained_bundle: Path, tmp_path: Path) -> None:
    archive, _ = pack_bundle(trained_bundle, tmp_path / "b.tar.gz")
    wrong = "0" * 64
    with pytest.raises(BundleFetchError, match="sha256"):
        fetch_bundle(archive.as_uri(), wrong, tmp_path / "replica")
    assert list((tmp_path / "replica").iterdir()) == []


@pytest.fixture()
def served_dir(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    directory = tmp_path / "www"
    directory.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", directory
    finally:
        server.shutdown()
        server.server_close()


def test_a_bundle_is_fetched_over_http(
    trained_bundle: Path, served_dir: tuple[str, Path], tmp_path: Path
) -> None:
    base, directory = served_dir
    _, digest = pack_bundle(trained_bundle, directory / "bundle.tar.gz")
    fetched = fetch_bundle(f"{base}/bundle.tar.gz", digest, tmp_path / "replica")
    assert file_hashes(fetched) == file_hashes(trained_bundle)
    with pytest.raises(BundleFetchError, match="404"):
        fetch_bundle(f"{base}/missing.tar.gz", digest[::-1], tmp_path / "other")


def _crafted(path: Path, member: tarfile.TarInfo, data: bytes = b"x") -> str:
    with tarfile.open(path, "w:gz") as archive:
        top = tarfile.TarInfo("bundle")
        top.type = tarfile.DIRTYPE
        archive.addfile(top)
        member.size = len(data) if member.isfile() else 0
        archive.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return sha256_file(path)


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (_member("/etc/evil"), "unsafe path"),
        (_member("bundle/../../evil"), "unsafe path"),
        (_member("bundle/link", tarfile.SYMTYPE, "/etc/passwd"), "links"),
        (_member("bundle/hard", tarfile.LNKTYPE, "bundle/manifest.json"), "links"),
        (_member("bundle/fifo", tarfile.FIFOTYPE), "links"),
        (_member("other/file"), "one bundle directory"),
    ],
)
def test_unsafe_archives_are_refused_before_anything_is_written(
    member: tarfile.TarInfo, message: str, tmp_path: Path
) -> None:
    archive = tmp_path / "evil.tar.gz"
    digest = _crafted(archive, member)
    with pytest.raises(BundleFetchError, match=message):
        fetch_bundle(archive.as_uri(), digest, tmp_path / "replica")
    assert [p.name for p in (tmp_path / "replica").iterdir()] == []
    assert not (tmp_path / "evil").exists()


def test_only_http_and_file_urls_are_fetched(tmp_path: Path) -> None:
    with pytest.raises(BundleFetchError, match="only http"):
        fetch_bundle("ftp://example.org/b.tar.gz", "0" * 64, tmp_path)
