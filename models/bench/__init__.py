"""Benchmarks of the serving stages (``python -m models.bench.run_all``) and the index sweep."""
