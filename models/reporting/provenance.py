"""Where a number came from: the code's commit, the machine, the command line. Recorded in every report."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any


def git_commit() -> str:
    """Short HEAD hash, with ``+modified`` when tracked code under models/ differs from it; ``unknown``
    outside a git checkout."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "models"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = head.stdout.strip() or "unknown"
    return commit + ("+modified" if commit != "unknown" and changed.stdout.strip() else "")


# vector extensions that change which float kernels numpy, torch and LightGBM run (oldest first): two hosts
# that differ here can differ in a float's last bits, and a GBDT's early stopping can amplify that into a
# different model (docs/ranking.md, recipe 15)
VECTOR_EXTENSIONS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")


def machine_description() -> str:
    """One line for a report header: OS, architecture, CPU model and its vector extensions, CPU count,
    Python."""
    extensions = ", ".join(cpu_vector_extensions()) or "none listed"
    return (
        f"{platform.system()} {platform.machine()}, {_cpu_model()} ({extensions}), {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )


def machine_info() -> dict[str, Any]:
    """The full record for benchmarks: CPU, core count, memory, OS, Python and library versions, commit,
    and the load average (the machine is shared: a high load means latencies carry others' noise)."""
    return {
        "cpu": _cpu_model(),
        "cpu_vector_extensions": list(cpu_vector_extensions()),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "faiss": _version("faiss-cpu"),
        "torch": _version("torch"),
        "lightgbm": _version("lightgbm"),
        "commit": git_commit(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def command_line() -> str:
    """The command as typed (``python -m module args``)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    program = f"python -m {spec.name}" if spec is not None else f"python {sys.argv[0]}"
    return " ".join([program, *sys.argv[1:]])


CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo_field(key: str, cpuinfo: Path = CPUINFO) -> str | None:
    """The first CPU's ``key`` value in ``cpuinfo`` (None: no such file or line)."""
    if not cpuinfo.is_file():
        return None
    for line in cpuinfo.read_text().splitlines():
        if line.startswith(key):
            return line.split(":", 1)[1].strip()
    return None


def _cpu_model() -> str:
    return _cpuinfo_field("model name") or platform.processor() or "unknown"


def cpu_vector_extensions(cpuinfo: Path = CPUINFO) -> tuple[str, ...]:
    """Which of ``VECTOR_EXTENSIONS`` the first CPU's ``flags`` line lists (empty where there is none)."""
    flags = set((_cpuinfo_field("flags", cpuinfo) or "").split())
    return tuple(name for name in VECTOR_EXTENSIONS if name in flags)


def _memory_gib() -> float | None:
    meminfo = Path("/proc/meminfo")
    if not meminfo.is_file():
        return None
    total_kib = int(meminfo.read_text().split("MemTotal:")[1].split()[0])
    return round(total_kib / 2**20, 1)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"
