"""What every step of the compose check uses: the repository's paths, running a command from its root,
the one-line failure, timed steps, and finding or installing binaries."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "var" / "compose-check"


class CheckFailed(Exception):
    """A step did not hold; the message says which and why (one line)."""


def say(message: str) -> None:
    print(f"compose-check: {message}", flush=True)


def run(
    command: Sequence[str | Path],
    *,
    check: bool = True,
    capture: bool = True,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    stdin: Any = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command from the repository root; a failure with ``check`` raises CheckFailed with its tail."""
    try:
        result = subprocess.run(
            [str(part) for part in command],
            cwd=ROOT,
            env=env,
            text=True,
            capture_output=capture,
            timeout=timeout,
            stdin=stdin,
        )
    except FileNotFoundError as error:
        raise CheckFailed(f"{command[0]}: not installed") from error
    except subprocess.TimeoutExpired as error:
        raise CheckFailed(f"{' '.join(map(str, command[:3]))}: no answer in {timeout:.0f}s") from error
    if check and result.returncode != 0:
        tail = "\n".join(((result.stdout or "") + (result.stderr or "")).strip().splitlines()[-15:])
        raise CheckFailed(f"`{' '.join(map(str, command[:4]))} ...` failed ({result.returncode}):\n{tail}")
    return result


@contextlib.contextmanager
def step(name: str, timings: dict[str, float]) -> Iterator[None]:
    say(f"{name} ...")
    start = time.monotonic()
    yield
    timings[name] = round(time.monotonic() - start, 1)
    say(f"{name}: {timings[name]:.1f}s")


def path_binaries(name: str) -> list[str]:
    found: list[str] = []
    for directory in [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin", "/usr/sbin"]:
        candidate = Path(directory) / name
        real = str(candidate.resolve()) if candidate.exists() else ""
        if real and os.access(candidate, os.X_OK) and real not in {str(Path(f).resolve()) for f in found}:
            found.append(str(candidate))
    return found


def apt_install(packages: list[str]) -> bool:
    """Install Debian packages when running as root with apt; False when that is not possible here."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    say(f"installing {' '.join(packages)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    quiet = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    if run(quiet, check=False, env=env).returncode != 0:
        run(["apt-get", "update", "-q"], check=False, env=env)
        return run(quiet, check=False, env=env).returncode == 0
    return True
