"""What a benchmark ran on and how it was started, recorded next to every number."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _commit() -> str:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip()


def machine_info() -> dict[str, Any]:
    """CPU, core count, memory, OS, Python and library versions, git commit."""
    memory_gib = None
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        total_kib = int(meminfo.read_text().split("MemTotal:")[1].split()[0])
        memory_gib = round(total_kib / 2**20, 1)
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "faiss": _version("faiss-cpu"),
        "torch": _version("torch"),
        "commit": _commit(),
        # The machine is shared: a high load average means latencies carry other processes' noise.
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def command_line() -> str:
    """The command as typed (``python -m module args``)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    program = f"python -m {spec.name}" if spec is not None else f"python {sys.argv[0]}"
    return " ".join([program, *sys.argv[1:]])
