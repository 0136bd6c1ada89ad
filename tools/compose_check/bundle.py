"""Step 3: the bundle the containers serve: the default one built on the host (``tandem bundle build
--default``, reused when current), staged where the containers' user can read it and mounted read-only
through docker/compose.check.yml."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tools.compose_check import shell
from tools.compose_check.shell import ROOT, CheckFailed


def default_bundle(data_dir: Path) -> Path:
    """The default bundle on the host (built on first use, a few minutes; reused after)."""
    command = [sys.executable, "-m", "cli.main", "bundle", "build", "--default"]
    command += ["--data-dir", str(data_dir), "--root", str(ROOT / "var")]
    result = subprocess.run(command, cwd=ROOT, text=True, stdout=subprocess.PIPE)  # progress on stderr
    if result.returncode != 0:
        raise CheckFailed(f"the default bundle could not be built ({result.returncode}); see above")
    return Path(bundle_summary(result.stdout)["bundle"]).resolve()


def bundle_summary(stdout: str) -> dict[str, Any]:
    """The last JSON summary `tandem bundle build` prints (indented: it opens with a lone "{" line and
    closes with a lone "}"); lines after it (the "serve it: ..." hint) are not part of it."""
    lines = stdout.splitlines()
    starts = [i for i, line in enumerate(lines) if line == "{"]
    try:
        stop = lines.index("}", starts[-1])
        return dict(json.loads("\n".join(lines[starts[-1] : stop + 1])))
    except (IndexError, ValueError) as error:  # no "{" line, no closing "}", or not JSON
        raise CheckFailed(
            f"no bundle summary in the output of tandem bundle build: {stdout[-300:]!r}"
        ) from error


def staged_bundle(bundle: Path) -> Path:
    """A copy of the bundle the containers' non-root user can read (bundle directories are made private
    on the host), under var/compose-check/bundle; the original stays as it is."""
    if not (bundle / "manifest.json").is_file():
        raise CheckFailed(f"{bundle}: not a bundle (no manifest.json)")
    staged = shell.WORK / "bundle"
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(bundle, staged)
    for path in [staged, *staged.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return staged
