"""Tools of the project, not of the product (not in the wheel): benchmarks (``tools.bench``), the compose
check (``tools.compose_check``) and the local stack script. The Makefile runs them (``make bench``,
``make compose-check``, ``make stack-local`` ...) from the repository root."""
