"""The ground floor's value types: a user's recent events and the situation of a request.

Every layer reads them (data builds them, models encode them, the app fills them from stored events); they
import nothing of the project.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class UserHistory:
    """A user's recent events, oldest first. All arrays [E]."""

    item: np.ndarray  # int64 item indices (>= 2, 1 = unknown item)
    action: np.ndarray  # int64 models.data.schema.Action
    value: np.ndarray  # float32 (rating, or 1.0)
    timestamp: np.ndarray  # int64 unix seconds
    scene: np.ndarray  # int64 scene index
    device: np.ndarray  # int64 device index
    user_features: dict[str, int] = field(default_factory=dict)  # static features (index per field)

    @staticmethod
    def empty() -> UserHistory:
        z = np.zeros(0, dtype=np.int64)
        return UserHistory(z, z, np.zeros(0, dtype=np.float32), z, z, z)

    def __len__(self) -> int:
        return int(self.item.shape[0])


@dataclass
class RequestContext:
    """The situation of the request being answered (the next session's context token)."""

    timestamp: int  # unix seconds of the request
    scene: int = 1  # scene index (1 = unknown)
    device: int = 1  # device index (1 = unknown)
    anchors: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # item indices
