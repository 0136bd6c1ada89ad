"""Candidate generation shared by serving and offline evaluation: several sources, one merge.

``sources``: each source turns one request (history, context, optional user vector, exclusions) into a
ranked list. ``merge``: per-source quotas, de-duplication, a weighted reciprocal-rank fusion order, and for
every candidate its rank and score in every source (the ranker's features).
"""

from models.candidates.merge import MergeConfig, MergedCandidates, merge_lists
from models.candidates.sources import (
    AnnSource,
    CandidateRequest,
    CandidateSource,
    CooccurrenceSource,
    PopularSource,
    RecentItemsSource,
    SourceList,
)

__all__ = [
    "AnnSource",
    "CandidateRequest",
    "CandidateSource",
    "CooccurrenceSource",
    "MergeConfig",
    "MergedCandidates",
    "PopularSource",
    "RecentItemsSource",
    "SourceList",
    "merge_lists",
]
