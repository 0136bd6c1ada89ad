"""Step 2: the base images. The public python:3.11-slim when it can be pulled; otherwise
tandem-base:bookworm from Debian packages (debootstrap + docker import) and var/wheelhouse from the host's
pip, for docker/compose.debian.yml."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from tools.compose_check import shell
from tools.compose_check.engine import Engine
from tools.compose_check.shell import ROOT, CheckFailed, apt_install, run, say

WHEELHOUSE = ROOT / "var" / "wheelhouse"
PUBLIC_BASE = "python:3.11-slim"
LOCAL_BASE = "tandem-base:bookworm"
DEBIAN_MIRROR = os.environ.get("TANDEM_DEBIAN_MIRROR", "http://deb.debian.org/debian")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def base_image_pullable(engine: Engine) -> bool:
    if run([engine.docker, "image", "inspect", PUBLIC_BASE], check=False).returncode == 0:
        return True
    return run([engine.docker, "pull", "-q", PUBLIC_BASE], check=False, timeout=300).returncode == 0


def build_local_base(engine: Engine) -> None:
    """tandem-base:bookworm: Debian 12 minbase with Python 3.11, its venv module and CA certificates."""
    if run([engine.docker, "image", "inspect", LOCAL_BASE], check=False).returncode == 0:
        say(f"{LOCAL_BASE} present (docker rmi it to rebuild)")
        return
    if shutil.which("debootstrap") is None and not apt_install(["debootstrap"]):
        raise CheckFailed(f"{PUBLIC_BASE} cannot be pulled and debootstrap is not installable here")
    rootfs = shell.WORK / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    shell.WORK.mkdir(parents=True, exist_ok=True)
    include = "--include=python3,python3-venv,ca-certificates"
    command: list[str | Path] = [
        "debootstrap",
        "--variant=minbase",
        include,
        "bookworm",
        rootfs,
        DEBIAN_MIRROR,
    ]
    say(f"{PUBLIC_BASE} cannot be pulled: building {LOCAL_BASE} with debootstrap from {DEBIAN_MIRROR}")
    run(command, timeout=1200)
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for entry in (rootfs / cache).glob("*"):
            if entry.is_file():
                entry.unlink()
    tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    run([engine.docker, "import", "-c", 'CMD ["/bin/bash"]', "-", LOCAL_BASE], stdin=tar.stdout)
    tar.wait()
    shutil.rmtree(rootfs, ignore_errors=True)


def image_requirements() -> list[str]:
    """What the image's dependency stage installs: build requirements, wheel, project dependencies."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [*project["build-system"]["requires"], "wheel", *project["project"]["dependencies"]]


def make_wheelhouse(engine: Engine) -> None:
    """var/wheelhouse for WHEELS=local: the host's pip first (its torch is the CPU wheel), then pip in the
    base image adds what only that interpreter needs (markers on its exact Python version)."""
    requirements = "\n".join(image_requirements()) + "\n"
    # Only wheels go into var/wheelhouse: the image build hashes that directory, so anything else
    # there (stamps, lists) would throw away the cached dependency layers whenever it changed.
    pip_dir = shell.WORK / "pip"
    stamp = pip_dir / "stamp"
    base_id = run([engine.docker, "image", "inspect", "-f", "{{.Id}}", LOCAL_BASE]).stdout.strip()
    if stamp.is_file() and stamp.read_text() == requirements + base_id:
        say("var/wheelhouse is current")
        return
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    pip_dir.mkdir(parents=True, exist_ok=True)
    (pip_dir / "requirements.txt").write_text(requirements)
    pip = [sys.executable, "-m", "pip", "download", "-q"]
    run([*pip, "-d", WHEELHOUSE, "-r", pip_dir / "requirements.txt"])
    pins = sorted(
        "{}=={}".format(*wheel.name.split("-")[:2]) for wheel in WHEELHOUSE.glob("*.whl")
    )  # keep every wheel the host chose (the CPU torch above all)
    (pip_dir / "constraints.txt").write_text("\n".join(pins) + "\n")
    mounts = ["-v", f"{WHEELHOUSE}:/wheels", "-v", f"{pip_dir}:/pip:ro"]
    if HOST_CA_BUNDLE.is_file():  # a container trusts only what it is given
        mounts += ["-v", f"{HOST_CA_BUNDLE}:/host-ca.crt:ro", "-e", "PIP_CERT=/host-ca.crt"]
    script = (
        "python3 -m venv /tmp/venv && /tmp/venv/bin/pip download -q --disable-pip-version-check "
        "-d /wheels --find-links /wheels -c /pip/constraints.txt -r /pip/requirements.txt"
    )
    run([engine.docker, "run", "--rm", *mounts, LOCAL_BASE, "sh", "-c", script], timeout=900)
    stamp.write_text(requirements + base_id)
