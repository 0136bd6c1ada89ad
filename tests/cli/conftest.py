"""The app's fixtures (bundles built once, Redis), for the tests that start ``tandem serve``."""

from tests.app.conftest import anyio_backend, baseline_bundle, key_prefix, redis_url

__all__ = ["anyio_backend", "baseline_bundle", "key_prefix", "redis_url"]
