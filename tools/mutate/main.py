"""Runs mutmut once per target, each in its own workspace var/mutate/<target>/ exported from a commit (HEAD):
the target's files mutated, only the target's test files run (mutmut then runs, per mutant, the tests among
them that call the mutated function), one worker. Prints per file killed / survived / timeout / no tests
and writes var/mutate/<target>/summary.json plus survivors.diff (every survivor's diff).

    python -m tools.mutate [TARGET ...] [--rev REV] [--report]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "var" / "mutate"
EXPORTED = ("app", "models", "cli", "tests", "pyproject.toml")


@dataclass(frozen=True)
class Target:
    files: tuple[str, ...]  # globs of the files to mutate (mutmut's only_mutate)
    tests: tuple[str, ...]  # the test files (or folders) that cover them
    functions: tuple[str, ...] = ()  # mutant-name globs when only some functions count; () = whole files
    deselect: tuple[str, ...] = ()  # test ids that cannot run under mutmut (see docs/results/mutation.md)


def functions(module: str, *names: str) -> tuple[str, ...]:
    """mutmut's mutant names of the module-level functions ``names``."""
    return tuple(f"{module}.x_{name}__mutmut_*" for name in names)


TARGETS: dict[str, Target] = {
    "stores": Target(
        ("app/stores/*.py",),
        (
            "tests/app/stores",
            "tests/app/services/test_worker.py",
            "tests/app/services/test_bundle_upgrade.py",
            "tests/app/api/test_routes_events.py",
        ),
    ),
    "worker": Target(
        ("app/services/worker.py",),
        (
            "tests/app/services/test_worker.py",
            "tests/app/services/test_worker_warm_up.py",
            "tests/app/services/test_worker_loop.py",
        ),
    ),
    "user_vectors": Target(
        ("app/services/user_vectors.py",),
        (
            "tests/app/services/test_user_vectors.py",
            "tests/app/services/test_user_vectors_lookup.py",
            "tests/app/services/test_recommend.py",
            "tests/app/api/test_routes_recommend.py",
            "tests/app/api/test_routes_events.py",
        ),
    ),
    "middleware": Target(
        ("app/api/middleware.py",),
        (
            "tests/app/api/test_middleware.py",
            "tests/app/api/test_middleware_exact.py",
            "tests/app/api/test_routes_events.py",
        ),
    ),
    "merge": Target(
        ("models/candidates/merge.py",),
        (
            "tests/models/candidates/test_merge.py",
            "tests/models/candidates/test_merge_exact.py",
            "tests/models/candidates/test_default_merge.py",
        ),
    ),
    "bundle_format": Target(
        ("models/bundle/format.py",),
        (
            "tests/models/bundle/test_write_load.py",
            "tests/models/bundle/test_upgrade.py",
            "tests/models/bundle/test_format_hashes.py",
        ),
        functions(
            "models.bundle.format",
            "sha256_hex",
            "sha256_file",
            "sha256_tree",
            "file_hashes",
            "model_version_of",
            "verify_bundle",
        ),
    ),
    "features": Target(
        ("models/candidates/features.py", "models/candidates/feature_state.py"),
        (
            "tests/models/candidates/test_features.py",
            "tests/models/candidates/test_feature_state.py",
            "tests/models/candidates/test_feature_state_io.py",
            "tests/models/candidates/test_training_requests.py",
            "tests/models/ranker/test_gbdt_serving.py",
        ),
    ),
    "gate": Target(
        ("models/recipe/ranker_stage.py", "models/bootstrap.py"),
        (
            "tests/models/test_bootstrap.py",
            "tests/models/test_bootstrap_exact.py",
            "tests/models/recipe/test_ranker_gate.py",
            "tests/models/recipe/test_ranker_gate_edges.py",
        ),
        # test_ranker_gate.py less the bundle test, which trains and writes a transformer (seconds per
        # mutant); its gate wiring test (run_seed, the gate's users resampled) trains a GBDT in under a second
        deselect=(
            "tests/models/recipe/test_ranker_gate.py::test_the_transformer_can_read_the_gbdt_features_and_ships_with_them",
        ),
        functions=(
            *functions("models.recipe.ranker_stage", "ranker_gate", "_mean_or_zero", "pick_epoch"),
            *functions("models.recipe.ranker_stage", "user_folds"),
            "models.bootstrap.*",
        ),
    ),
}

# mutmut's exit codes (mutmut.stats.status_by_exit_code); "no tests": no selected test calls the function
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped"}
STATUS |= {37: "type check"} | {code: "timeout" for code in (24, -24, 36, 152, 255)}


def export(rev: str, workspace: Path) -> None:
    """The commit's sources and tests (not the working tree, which others may be editing)."""
    archive = subprocess.run(["git", "archive", "--format=tar", rev, *EXPORTED], cwd=ROOT, check=True,
                             capture_output=True).stdout  # fmt: skip
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(workspace, filter="data")


def config(target: Target) -> str:
    def lines(values: tuple[str, ...]) -> str:
        return "".join(f"\n    {value}" for value in values)

    deselected = tuple(f"--deselect={test}" for test in target.deselect)
    return (
        "[mutmut]\n"
        "source_paths =\n    app\n    models\n    cli\n"
        f"only_mutate ={lines(target.files)}\n"
        f"pytest_add_cli_args_test_selection ={lines(target.tests)}\n"
        f"pytest_add_cli_args =\n    -p\n    no:cacheprovider{lines(deselected)}\n"
    )


def run_target(name: str, target: Target, rev: str) -> int:
    workspace = WORK / name
    shutil.rmtree(workspace, ignore_errors=True)
    workspace.mkdir(parents=True)
    export(rev, workspace)
    (workspace / "setup.cfg").write_text(config(target))
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    with open(workspace / "mutmut.log", "w") as log:  # mutmut redraws its progress line: kept in a file
        command = [mutmut, "run", "--max-children", "1", *target.functions]
        # one OpenMP thread at most: mutmut forks each mutant's run from the process that ran every test, and
        # GNU OpenMP hangs in a forked child once the parent had a thread pool (faiss's index build did)
        env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
        run = subprocess.run(command, cwd=workspace, env=env, stdout=log, stderr=subprocess.STDOUT)
    code = run.returncode
    summary = summarise(name, target)
    diffs = [subprocess.run([mutmut, "show", mutant], cwd=workspace, capture_output=True, text=True).stdout
             for mutant in summary["survivors"]]  # fmt: skip
    (workspace / "survivors.diff").write_text("\n".join(diffs))
    return code


def summarise(name: str, target: Target) -> dict[str, Any]:
    """Counts per mutated file (only the mutants of ``target.functions`` where it names some)."""
    from fnmatch import fnmatch

    workspace = WORK / name
    per_file: dict[str, Counter[str]] = {}
    survivors: list[str] = []
    for meta in sorted((workspace / "mutants").rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        counts: Counter[str] = Counter()
        for mutant, code in codes.items():
            if target.functions and not any(fnmatch(mutant, pattern) for pattern in target.functions):
                continue
            status = STATUS.get(code, "not checked" if code is None else f"other {code}")
            counts[status] += 1
            if status in ("survived", "no tests"):
                survivors.append(mutant)
        if counts:
            per_file[meta.relative_to(workspace / "mutants").as_posix().removesuffix(".meta")] = counts
    summary: dict[str, Any] = {"per_file": per_file, "survivors": sorted(survivors)}
    (workspace / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def report(names: list[str]) -> None:
    print("| target | file | mutants | killed | survived | no tests | timeout | kill rate |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in names:
        path = WORK / name / "summary.json"
        if not path.is_file():
            print(f"| {name} | (not run) | | | | | | |")
            continue
        for file, counts in json.loads(path.read_text())["per_file"].items():
            total = sum(counts.values())
            killed = counts.get("killed", 0)
            cells = [counts.get(k, 0) for k in ("survived", "no tests", "timeout")]
            rate = f"{killed / total:.1%}" if total else "-"
            print(f"| {name} | {file} | {total} | {killed} | {' | '.join(map(str, cells))} | {rate} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.mutate", description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help=f"any of {', '.join(TARGETS)} (default: every one)")
    parser.add_argument("--rev", default="HEAD", help="the commit to export and mutate (default HEAD)")
    parser.add_argument("--report", action="store_true", help="only print the table of the last runs")
    args = parser.parse_args(argv)
    names = args.targets or list(TARGETS)
    if unknown := set(names) - set(TARGETS):
        parser.error(f"unknown target(s) {sorted(unknown)}")
    failed = 0
    if not args.report:
        for name in names:
            print(f"== mutmut: {name}", flush=True)
            failed += run_target(name, TARGETS[name], args.rev) != 0
    report(names)
    return 1 if failed else 0
