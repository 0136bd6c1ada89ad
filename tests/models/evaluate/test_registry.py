import pytest

from models.baselines.popularity import build_popularity
from models.evaluate import registry


def test_lazy_lookup_and_registration(monkeypatch: pytest.MonkeyPatch) -> None:
    assert registry.get_factory("popularity") is build_popularity
    assert {"popularity", "cooccurrence"} <= set(registry.available_models())
    with pytest.raises(KeyError, match="unknown model"):
        registry.get_factory("nope")
    monkeypatch.setattr(registry, "MODELS", dict(registry.MODELS))
    registry.register("later", "models.not_landed_yet:build")
    assert "later" not in registry.available_models()
    with pytest.raises(ValueError, match="module:function"):
        registry.register("bad", "models.baselines.popularity")
