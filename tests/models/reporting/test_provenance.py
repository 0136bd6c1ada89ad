import re
from pathlib import Path

import pytest

from models.reporting.provenance import (
    command_line,
    cpu_vector_extensions,
    git_commit,
    machine_description,
    machine_info,
)


def test_commit_is_a_short_hash_inside_the_checkout() -> None:
    assert re.fullmatch(r"[0-9a-f]{7,}(\+modified)?", git_commit())


def test_commit_is_unknown_outside_a_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert git_commit() == "unknown"


def test_machine_record_and_line_describe_the_same_machine() -> None:
    info = machine_info()
    assert {"cpu", "cores", "memory_gib", "os", "python", "torch", "commit", "load_average_1m"} <= set(info)
    line = machine_description()
    assert f"{info['cores']} CPUs" in line and f"Python {info['python']}" in line
    assert info["cpu"] in line
    assert all(name in line for name in info["cpu_vector_extensions"])


def test_vector_extensions_read_from_the_flags_line(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    flags = "fpu sse4_2 avx avx2 fma avx512f avx512bw"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n")
    assert cpu_vector_extensions(cpuinfo) == ("sse4_2", "avx", "avx2", "fma", "avx512f")
    cpuinfo.write_text("flags\t\t: fpu sse2\n")
    assert cpu_vector_extensions(cpuinfo) == ()
    assert cpu_vector_extensions(tmp_path / "missing") == ()


def test_command_line_names_the_program_and_its_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["run_all.py", "--repeats", "3"])
    assert command_line().endswith("--repeats 3")
