"""Candidate generation shared by serving and offline evaluation: several sources, one merge.

- ``sources``: each source turns one request (history, context, optional user vector, exclusions) into a
  ranked list;
- ``merge``: per-source quotas, de-duplication, a weighted reciprocal-rank fusion order, and for every
  candidate its rank and score in every source (the ranker's features);
- ``generator``: the configured sources asked once per request and merged; ``fit_sources`` builds them;
- ``served``: merged candidates reordered by the ranker when the bundle trusts it;
- ``from_bundle``: the served pipeline of a loaded bundle.
"""
