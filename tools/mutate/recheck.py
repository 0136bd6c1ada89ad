"""Reruns a target's surviving mutants of the last ``make mutate`` against test files of the work tree (the
new tests written for them), each mutant switched on in a forked pytest; first the same tests with no
mutant, which must pass. Prints, per survivor, whether the given tests now kill it.

    python -m tools.mutate.recheck TARGET TEST_FILE ...
"""

from __future__ import annotations

import json
import os
import shutil
import sys

from tools.mutate.main import ROOT, WORK


def run_pytest(mutant: str, tests: list[str]) -> int:
    """pytest in a forked child with ``mutant`` switched on ("" = none); its exit code."""
    pid = os.fork()
    if pid == 0:
        import pytest

        os.environ["MUTANT_UNDER_TEST"] = mutant
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        os._exit(int(pytest.main(["-q", "-x", "-p", "no:cacheprovider", *tests])))
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def main(argv: list[str]) -> int:
    target, tests = argv[0], argv[1:]
    mutants = WORK / target / "mutants"
    for test in tests:  # the work tree's version of each test file, beside the mutated sources
        (mutants / test).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / test, mutants / test)
    os.chdir(mutants)
    sys.path.insert(0, str(mutants))
    if run_pytest("", tests) != 0:
        print("the tests fail without any mutant")
        return 1
    survivors = json.loads((WORK / target / "summary.json").read_text())["survivors"]
    killed = 0
    for mutant in survivors:
        code = run_pytest(mutant, tests)
        killed += code != 0
        print(f"{'killed  ' if code else 'survived'} {mutant}", flush=True)
    print(f"{killed} of {len(survivors)} survivors killed by {' '.join(tests)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
