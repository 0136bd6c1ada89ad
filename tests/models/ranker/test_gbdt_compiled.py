"""The GBDT's trees compiled for serving score as LightGBM does, and serving goes on without them."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest

from models.ranker.gbdt import GbdtRanker, train_gbdt
from models.ranker.gbdt_compiled import compile_trees
from tests.models.ranker.test_gbdt import NAMES, SMALL, planted


@pytest.fixture(scope="module")
def model_text() -> str:
    ranker, _ = train_gbdt(planted(200, 0), planted(40, 1), NAMES, SMALL)
    return ranker.text


def test_compiled_trees_give_lightgbm_scores_and_order(model_text: str) -> None:
    plain, compiled = GbdtRanker(model_text), GbdtRanker(model_text)
    assert compiled.compile() and plain.compiled is None
    features = planted(30, 5).features
    want, got = plain.score(features), compiled.score(features)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(np.argsort(-got, kind="stable"), np.argsort(-want, kind="stable"))
    rows = [features[:7], features[7:20]]
    for a, b in zip(compiled.score_batch(rows), plain.score_batch(rows), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_without_lleaves_lightgbm_keeps_scoring(
    model_text: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "lleaves", None)
    ranker = GbdtRanker(model_text)
    with caplog.at_level(logging.WARNING):
        assert not ranker.compile()
    assert "lleaves not installed" in caplog.text
    assert ranker.score(planted(2, 3).features).shape == (40,)


def test_a_model_that_does_not_compile_is_reported_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert compile_trees("not a LightGBM model") is None
    assert "compiling the GBDT failed" in caplog.text


def test_a_bundle_gbdt_is_compiled_unless_the_backend_is_eager(tmp_path: Path) -> None:
    from models.bundle.ranker_io import load_any_ranker, save_any_ranker
    from models.ranker.gbdt_serving import MergedReranker
    from tests.models.ranker.test_gbdt_serving import _trained

    ranker, fit, requests, merged = _trained()
    relative = save_any_ranker(MergedReranker(ranker, fit.state), tmp_path)
    served = load_any_ranker(tmp_path / relative, backend="auto")
    eager = load_any_ranker(tmp_path / relative, backend="eager")
    assert served.ranker.compiled is not None and eager.ranker.compiled is None
    for request, candidates in zip(requests, merged, strict=True):
        assert (
            served.rerank(request, candidates).items.tolist()
            == eager.rerank(request, candidates).items.tolist()
        )


def test_the_repeat_features_are_computed_only_for_a_model_that_splits_on_one() -> None:
    from models.ranker.gbdt_serving import MergedReranker
    from tests.models.ranker.test_gbdt import NAMES, SMALL, planted

    ignores, _ = train_gbdt(planted(200, 0), planted(40, 1), NAMES, SMALL)
    reads_seen = ("noise_a", "seen", "noise_b", "penalty", "noise_c")  # "seen" carries the signal
    reads, _ = train_gbdt(planted(200, 0), planted(40, 1), reads_seen, SMALL)
    assert "seen" in reads.split_features() and "seen" not in ignores.split_features()
    assert MergedReranker(reads, None).repeats  # type: ignore[arg-type]
    assert not MergedReranker(ignores, None).repeats  # type: ignore[arg-type]
