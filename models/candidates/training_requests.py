"""Reranker requests built like the leave-last-out test requests, at every offset from the end.

The leave-last-out test request of a user is their last event (offset 0), with the sources fitted on every
user's events except their last one. Offset k does the same one step further back: the target is each
user's k-th event from the end (k = 1 is the validation request, k >= 2 training requests), and the sources
and the ``FeatureState`` are **refitted** on every user's events before *their* offset-k event (each user's
last k + 1 events left out). So no fit an offset-k request reads holds any user's event at offset <= k,
exactly as no test fit holds any user's last event; a request at offset k is the test request of the log cut
before everyone's k-th-last event (``tests/models/candidates/test_training_requests.py`` checks both: equal
to a fresh refit on those events, and unchanged when everyone's later events are deleted). One refit per
offset (K + 2 fits for K training offsets); refitting per request ("everything before each target's time")
would cost one fit per request. Fitting once and hiding only the user's own later events would still leak:
other users' events at offsets <= k would sit in the tables.

Within a request: history = the user's ``max_history`` events before the target, context time = the
target's time, exclusions = the history's items (rating logs, ``exclude_seen``), candidates = the merged
top-M of the configured sources (``MergeConfig``), and every candidate of that list is a row: label 1 for
the target, 0 for the rest (no sampling of negatives).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from models.baselines.cooccurrence import SparseRows
from models.candidates.feature_state import FeatureState, StaticInfo
from models.candidates.features import candidate_features, feature_names
from models.candidates.generator import fit_sources
from models.candidates.merge import MergeConfig, MergedCandidates, merge_lists
from models.candidates.sources import CandidateRequest, CandidateSource, CooccurrenceSource, SourceList
from models.data.histories import history_from_rows
from models.data.schema import Dataset, EventTable
from models.types import RequestContext


def positions(events: EventTable) -> tuple[np.ndarray, np.ndarray]:
    """events sorted by user -> (from_end [E]: 0 = the user's last event, from_start [E]: 0 = first)."""
    if len(events) and np.any(np.diff(events.user) < 0):
        raise ValueError("events must be sorted by user")
    num_users = int(events.user.max()) + 1 if len(events) else 0
    offsets = events.user_offsets(num_users)
    row = np.arange(len(events))
    return offsets[events.user + 1] - 1 - row, row - offsets[events.user]


def fit_rows(events: EventTable, offset: int) -> np.ndarray:
    """[E] bool: the events an offset-``offset`` request may have been fitted on (each user's events before
    their ``offset``-th-last event)."""
    return positions(events)[0] > offset


@dataclass
class OffsetFit:
    """The sources and the feature state refitted for one offset."""

    offset: int
    sources: dict[str, CandidateSource]
    state: FeatureState


def _rows_of(source: CandidateSource) -> SparseRows:
    if not isinstance(source, CooccurrenceSource):
        raise TypeError(f"source {source.name} has no item-to-item table")
    return SparseRows(source.indptr, source.indices, source.data)


def sources_feature_state(
    events: EventTable,
    static: StaticInfo,
    sources: dict[str, CandidateSource],
    item_vectors: np.ndarray | None = None,
) -> FeatureState:
    """The feature state of ``events``, sharing the co-occurrence and transition tables of ``sources``
    (fitted on the same events) instead of fitting them again."""
    return FeatureState.fit(
        events,
        static,
        cooccurrence=_rows_of(sources["cooccurrence"]),
        transitions=_rows_of(sources["transitions"]),
        item_vectors=item_vectors,
    )


def fit_offset(dataset: Dataset, static: StaticInfo, offset: int) -> OffsetFit:
    """fit_sources and FeatureState on the events before every user's ``offset``-th-last event (the two
    share the co-occurrence and transition tables)."""
    events = dataset.events.take(fit_rows(dataset.events, offset))
    sources = fit_sources(events, dataset.num_items, dataset.num_scenes)
    return OffsetFit(offset, sources, sources_feature_state(events, static, sources))


@dataclass
class Request:
    """One offset's request for one user: the target item and the CandidateRequest the sources see."""

    user: int
    offset: int
    target: int
    candidate_request: CandidateRequest


def offset_requests(
    dataset: Dataset, offset: int, max_history: int = 200, exclude_seen: bool = True
) -> list[Request]:
    """Every user's request whose target is their ``offset``-th-last event (users with an earlier event)."""
    events = dataset.events
    from_end, from_start = positions(events)
    out = []
    for row in np.flatnonzero((from_end == offset) & (from_start >= 1)).tolist():
        user = int(events.user[row])
        start = row - min(int(from_start[row]), max_history)
        history = history_from_rows(events, slice(start, row), dataset.user_features, user)
        context = RequestContext(int(events.timestamp[row]), int(events.scene[row]), int(events.device[row]))
        exclude = np.unique(history.item) if exclude_seen else np.zeros(0, np.int64)
        request = CandidateRequest(history, context, None, exclude)
        out.append(Request(user, offset, int(events.item[row]), request))
    return out


def source_lists(fit: OffsetFit, requests: Sequence[Request], config: MergeConfig) -> list[list[SourceList]]:
    """Per request, one list per ``config.sources`` entry cut at its quota (what ``merge_lists`` reads)."""
    chosen = [fit.sources[name] for name in config.sources]
    return [
        [
            source.candidates(r.candidate_request, quota)
            for source, quota in zip(chosen, config.quotas, strict=True)
        ]
        for r in requests
    ]


@dataclass
class RequestSet:
    """Q requests with their merged candidates flattened into R rows (request q owns group[q]:group[q+1]).

    names [F]; features [R, F] float32; label [R] float32 (1 = the target); position [R] int64 (place in the
    merged order); group [Q + 1] int64; per request: user, offset, target [Q] int64, found [Q] bool (the
    target is among the candidates).
    """

    names: tuple[str, ...]
    features: np.ndarray
    label: np.ndarray
    position: np.ndarray
    group: np.ndarray
    user: np.ndarray
    offset: np.ndarray
    target: np.ndarray
    found: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        owner = np.repeat(np.arange(len(self.user)), np.diff(self.group))
        self.found = np.bincount(owner, self.label, minlength=len(self.user)) > 0

    def __len__(self) -> int:
        return len(self.user)

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.group)

    def select(self, keep: np.ndarray) -> RequestSet:
        """The requests where ``keep`` [Q] bool holds, in order."""
        rows = np.repeat(keep, self.sizes)
        group = np.concatenate([[0], np.cumsum(self.sizes[keep])]).astype(np.int64)
        return RequestSet(
            self.names,
            self.features[rows],
            self.label[rows],
            self.position[rows],
            group,
            self.user[keep],
            self.offset[keep],
            self.target[keep],
        )

    @staticmethod
    def concat(parts: Sequence[RequestSet]) -> RequestSet:
        starts = np.cumsum([0] + [len(p.label) for p in parts])
        group = np.concatenate([[0]] + [p.group[1:] + s for p, s in zip(parts, starts, strict=False)])
        return RequestSet(
            parts[0].names,
            np.concatenate([p.features for p in parts]),
            np.concatenate([p.label for p in parts]),
            np.concatenate([p.position for p in parts]),
            group.astype(np.int64),
            *(np.concatenate([getattr(p, name) for p in parts]) for name in ("user", "offset", "target")),
        )


def request_set(
    fit: OffsetFit,
    requests: Sequence[Request],
    config: MergeConfig,
    lists: Sequence[Sequence[SourceList]] | None = None,
) -> RequestSet:
    """Merge every request's source lists (computed here unless given) and compute the features of all of
    its candidates."""
    lists = source_lists(fit, requests, config) if lists is None else lists
    names = feature_names(config.sources)
    blocks, labels, sizes = [], [], []
    for request, request_lists in zip(requests, lists, strict=True):
        merged: MergedCandidates = merge_lists(request_lists, config)
        r = request.candidate_request
        blocks.append(candidate_features(r.context.timestamp, r.history, merged, fit.state, r.user_vector))
        labels.append((merged.items == request.target).astype(np.float32))
        sizes.append(len(merged))
    counts = np.array(sizes, dtype=np.int64)
    return RequestSet(
        names,
        np.concatenate(blocks) if blocks else np.zeros((0, len(names)), np.float32),
        np.concatenate(labels) if labels else np.zeros(0, np.float32),
        np.concatenate([np.arange(n) for n in sizes]).astype(np.int64) if sizes else np.zeros(0, np.int64),
        np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        np.array([r.user for r in requests], dtype=np.int64),
        np.array([r.offset for r in requests], dtype=np.int64),
        np.array([r.target for r in requests], dtype=np.int64),
    )


def offset_request_set(
    dataset: Dataset,
    static: StaticInfo,
    offset: int,
    config: MergeConfig,
    max_history: int = 200,
    exclude_seen: bool = True,
) -> RequestSet:
    """Refit at ``offset`` and build all of its requests (``fit_offset``, ``offset_requests``,
    ``request_set``)."""
    fit = fit_offset(dataset, static, offset)
    return request_set(fit, offset_requests(dataset, offset, max_history, exclude_seen), config)
