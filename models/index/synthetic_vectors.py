"""Clustered unit vectors for index tests and benchmarks (a gaussian mixture on the sphere).

Real item vectors from a trained encoder are far from uniform: items crowd around a few hundred topics, and
user vectors point into those crowds. Uniform random vectors would make ANN search look harder (no
structure to exploit) and exact search look easier (no near-ties), so tests and benchmarks use this instead.
"""

from __future__ import annotations

import numpy as np

from models.data.schema import FIRST_REAL_ID


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def clustered_item_vectors(
    num_items: int, dim: int, *, num_clusters: int = 256, spread: float = 0.35, seed: int = 0
) -> np.ndarray:
    """Item vectors laid out like an item table: [num_items, dim] float32, rows 0/1 zero, others unit length.

    Cluster sizes follow a Dirichlet draw (some topics are big), each item is its centre plus isotropic
    noise of scale ``spread`` per unit norm, renormalised. Generated in chunks so 1M x 64 stays cheap.
    """
    if num_items < FIRST_REAL_ID + 1:
        raise ValueError(f"num_items must be >= {FIRST_REAL_ID + 1}, got {num_items}")
    rng = np.random.default_rng(seed)
    centres = _unit_rows(rng.standard_normal((num_clusters, dim)))
    weights = rng.dirichlet(np.full(num_clusters, 2.0))
    vectors = np.zeros((num_items, dim), dtype=np.float32)
    noise_scale = spread / np.sqrt(dim)
    chunk = 131_072
    for start in range(FIRST_REAL_ID, num_items, chunk):
        stop = min(start + chunk, num_items)
        cluster = rng.choice(num_clusters, size=stop - start, p=weights)
        noisy = centres[cluster] + noise_scale * rng.standard_normal((stop - start, dim)).astype(np.float32)
        vectors[start:stop] = _unit_rows(noisy)
    return vectors


def user_like_queries(
    item_vectors: np.ndarray, num_queries: int, *, mix: int = 3, seed: int = 1
) -> np.ndarray:
    """Queries shaped like user vectors: the normalised mean of ``mix`` random real items plus noise.

    item_vectors: [N, d] -> [num_queries, d] float32, unit length. A user who watched a few items from
    one or two topics gets a vector between them; the noise keeps queries off the item points themselves.
    """
    rng = np.random.default_rng(seed)
    num_items, dim = item_vectors.shape
    picks = rng.integers(FIRST_REAL_ID, num_items, size=(num_queries, mix))
    mean = item_vectors[picks].mean(axis=1)
    noise = (0.2 / np.sqrt(dim)) * rng.standard_normal((num_queries, dim)).astype(np.float32)
    return _unit_rows(mean + noise)
