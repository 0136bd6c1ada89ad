"""Benchmarks: the serving stages (``make bench-stages``), the whole service over HTTP (``make bench``), the
ANN index sweep (``make bench-index``), the ranker's forward (``make bench-ranker``) and encoder epochs
(``make bench-epochs``)."""
