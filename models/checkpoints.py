"""Loading checkpoints without running code: ``torch.load(weights_only=True)`` everywhere.

``weights_only`` unpickles tensors, containers and primitive types only; a pickle that names anything else
(a class whose constructor runs code) is refused. Checkpoints written before tensors were used everywhere
hold numpy arrays and scalars (item categories, metrics), so the numpy types that rebuild plain arrays and
scalars are allowed too; object arrays still go through the same allow-list for their elements.
"""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

_NUMPY_DTYPES = [
    np.dtypes.BoolDType,
    np.dtypes.Int8DType,
    np.dtypes.Int16DType,
    np.dtypes.Int32DType,
    np.dtypes.Int64DType,
    np.dtypes.UInt8DType,
    np.dtypes.UInt16DType,
    np.dtypes.UInt32DType,
    np.dtypes.UInt64DType,
    np.dtypes.Float16DType,
    np.dtypes.Float32DType,
    np.dtypes.Float64DType,
]
_MULTIARRAY = importlib.import_module("numpy._core.multiarray")  # the functions pickles of arrays name
SAFE_NUMPY_GLOBALS: list[Any] = [
    np.ndarray,
    np.dtype,
    _MULTIARRAY._reconstruct,
    _MULTIARRAY.scalar,
    *_NUMPY_DTYPES,
]


def load_checkpoint(path: Path | str) -> Any:
    """``torch.load`` on CPU with ``weights_only=True`` (plus plain numpy arrays and scalars).

    Raises ``ValueError`` naming the file when it is not a weights-only checkpoint (truncated, corrupt, or
    a pickle that would run code)."""
    try:
        with torch.serialization.safe_globals(SAFE_NUMPY_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:  # a global outside the allow-list: refused, nothing ran
        raise ValueError(f"{path}: refused, not a weights-only checkpoint: {_first_line(error)}") from error
    except (RuntimeError, EOFError, ValueError, AttributeError, TypeError) as error:  # truncated, corrupt
        raise ValueError(f"{path}: not a loadable checkpoint: {_first_line(error)}") from error


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [error.__class__.__name__])[0][:200]
