"""Settings from TANDEM_* environment variables."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.core.config import Settings


def test_environment_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANDEM_API_KEYS", "alpha, beta,,")
    monkeypatch.setenv("TANDEM_REDIS_URL", "")
    monkeypatch.setenv("TANDEM_CANDIDATE_COUNT", "400")
    settings = Settings()
    assert settings.api_keys == ["alpha", "beta"]
    assert settings.redis_url is None and settings.embedded
    assert settings.candidate_count == 400
    monkeypatch.setenv("TANDEM_REDIS_URL", "redis://redis:6379/0")
    assert not Settings().embedded


def test_invalid_values_name_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANDEM_MAX_IN_FLIGHT", "0")
    with pytest.raises(ValidationError, match="max_in_flight"):
        Settings()
    monkeypatch.delenv("TANDEM_MAX_IN_FLIGHT")
    with pytest.raises(ValidationError, match="candidate_count"):
        Settings(candidate_count=50, k_max=100)


def test_with_milvus_the_key_prefix_must_make_a_collection_name() -> None:
    milvus = {"index_backend": "milvus", "milvus_uri": "http://milvus:19530"}
    assert Settings(**milvus, key_prefix="shop_eu2").key_prefix == "shop_eu2"
    for prefix in ("shop-eu", "2shop", "shop.eu", ""):
        with pytest.raises(ValidationError, match="Milvus collection name"):
            Settings(**milvus, key_prefix=prefix)
    assert Settings(key_prefix="shop-eu").key_prefix == "shop-eu"  # faiss: any Redis prefix


def test_the_default_in_flight_limit_follows_capacity_and_budget() -> None:
    assert Settings().in_flight_limit == 50  # 200 requests/s x 0.25 s
    assert Settings(capacity_rps=300, latency_budget_ms=100).in_flight_limit == 30
    assert Settings(capacity_rps=1, latency_budget_ms=10).in_flight_limit == 1
    assert Settings(max_in_flight=200, capacity_rps=1).in_flight_limit == 200  # explicit wins


def test_every_setting_is_documented() -> None:
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[3] / "docs" / "serving.md").read_text()
    missing = [name for name in Settings.model_fields if f"`TANDEM_{name.upper()}`" not in docs]
    assert not missing, f"docs/serving.md lacks {missing}"
