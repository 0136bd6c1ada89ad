"""Reruns a target's surviving mutants of the last ``make mutate`` against test files of the work tree (the
new tests written for them), each mutant switched on in a forked pytest; first the same tests with no
mutant, which must pass. Prints, per survivor, whether the given tests now kill it.

    [RECHECK_ONLY=FILE] python -m tools.mutate.recheck TARGET TEST_FILE ...
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from tools.mutate.main import ROOT, WORK


class FirstFailure:
    """A pytest plugin keeping the id of the first test that failed."""

    def __init__(self) -> None:
        self.test = ""

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.failed and not self.test:
            self.test = report.nodeid


def run_pytest(mutant: str, tests: list[str]) -> tuple[int, str]:
    """pytest in a forked child with ``mutant`` on ("" = none) -> exit code, the first failed test."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        import pytest

        os.close(read)
        os.environ["MUTANT_UNDER_TEST"] = mutant
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        failure = FirstFailure()
        code = int(pytest.main(["-q", "-x", "-p", "no:cacheprovider", *tests], plugins=[failure]))
        os.write(write, failure.test.encode())
        os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        failed = pipe.read()
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), failed


def main(argv: list[str]) -> int:
    target, tests = argv[0], argv[1:]
    mutants = WORK / target / "mutants"
    for test in tests:  # the work tree's version of each test file, beside the mutated sources
        (mutants / test).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / test, mutants / test)
    os.chdir(mutants)
    sys.path.insert(0, str(mutants))
    if run_pytest("", tests)[0] != 0:
        print("the tests fail without any mutant")
        return 1
    survivors = json.loads((WORK / target / "summary.json").read_text())["survivors"]
    if only := os.environ.get("RECHECK_ONLY"):  # a file of mutant names: the survivors of an earlier recheck
        survivors = [name for name in survivors if name in set(Path(only).read_text().split())]
    killed = 0
    for mutant in survivors:
        code, failed = run_pytest(mutant, tests)
        killed += code != 0
        print(f"killed   {mutant} {failed}" if code else f"survived {mutant}", flush=True)
    print(f"{killed} of {len(survivors)} survivors killed by {' '.join(tests)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
