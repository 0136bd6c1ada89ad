"""The bundle step reads the summary ``tandem bundle build`` prints."""

from __future__ import annotations

import json

import pytest

from tools.compose_check import bundle
from tools.compose_check.shell import CheckFailed


def test_the_bundle_summary_is_the_last_json_object_printed() -> None:
    summary = {"bundle": "var/bundles/ml-1m-x", "index": {"kind": "flat"}}
    stdout = "step {'a': 1} took 3s\n{not json\n" + json.dumps(summary, indent=2) + "\n"
    assert bundle.bundle_summary(stdout) == summary
    # tandem bundle build ends with a hint after the summary
    assert bundle.bundle_summary(stdout + "serve it: tandem serve --bundle var/bundles/ml-1m-x\n") == summary
    with pytest.raises(CheckFailed, match="no bundle summary"):
        bundle.bundle_summary("trained {'encoder': 1}\n")
