"""Serving adapter: a trained encoder behind models.inference.UserEncoder.

``save_user_encoder(model, path, item_category, version)`` writes ``{config, state_dict, item_category,
version}``; ``load_user_encoder(path)`` rebuilds it as a ``TorchUserEncoder``. ``encode_histories`` is the
one batched path from raw events to user vectors; training-time validation and offline evaluation call it
too, so serving and evaluation share the layout code (same sessionisation) and the forward pass.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from models.checkpoints import load_checkpoint
from models.encoder.config import EncoderConfig
from models.encoder.layout import build_layout, pad_jagged, stack_layouts
from models.encoder.model import RetrievalEncoder, last_query_rows, to_tensors
from models.types import RequestContext, UserHistory

if TYPE_CHECKING:
    from models.encoder.compiled import ExportedQuery

ENCODER_FILE = "encoder.pt"


def user_feature_matrix(config: EncoderConfig, histories: list[UserHistory]) -> np.ndarray:
    """[B, F] static user features in the order of ``sorted(config.user_feature_sizes)``; 1 = unknown.
    Indices outside a table are mapped to unknown rather than failing the request."""
    names = sorted(config.user_feature_sizes)
    matrix = np.ones((len(histories), len(names)), dtype=np.int64)
    for column, name in enumerate(names):
        values = np.array([h.user_features.get(name, 1) for h in histories], dtype=np.int64)
        in_range = (values >= 0) & (values < config.user_feature_sizes[name])
        matrix[:, column] = np.where(in_range, values, 1)
    return matrix


@torch.inference_mode()
def encode_histories(
    model: RetrievalEncoder,
    item_category: np.ndarray,
    histories: list[UserHistory],
    contexts: list[RequestContext],
    batch_size: int = 256,
) -> np.ndarray:
    """One forward per ``batch_size`` users. Returns [B, d] float32 unit vectors (the query token's output:
    the appended context token, or the last event for causal kinds). An empty history still gets a vector
    (session encoder: from its context token alone; causal kinds: the zero vector)."""
    if len(histories) != len(contexts):
        raise ValueError(f"{len(histories)} histories but {len(contexts)} contexts")
    was_training = model.training
    if was_training:  # toggling walks every submodule (~0.1 ms a call): only when needed
        model.eval()
    config = model.config
    outputs = []
    for start in range(0, len(histories), batch_size):
        chunk = histories[start : start + batch_size]
        layouts = [
            build_layout(h, c, config, item_category)
            for h, c in zip(chunk, contexts[start : start + batch_size], strict=True)
        ]
        jagged = stack_layouts(layouts, user_feature_matrix(config, chunk))
        hidden, _ = model(to_tensors(pad_jagged(jagged)), torch.as_tensor(jagged.user_features))
        lengths = torch.as_tensor(jagged.lengths)
        vectors = model.query_vectors(last_query_rows(hidden, lengths))
        outputs.append((vectors * (lengths > 0).unsqueeze(-1)).float().numpy())
    if was_training:
        model.train()
    dim = config.dim
    return np.concatenate(outputs) if outputs else np.zeros((0, dim), dtype=np.float32)


class TorchUserEncoder:
    """``models.inference.UserEncoder`` over a ``RetrievalEncoder``."""

    def __init__(self, model: RetrievalEncoder, item_category: np.ndarray, version: str) -> None:
        self.model = model.eval()
        self.item_category = item_category
        self.version = version
        self.dim = model.config.dim
        self._item_vectors: np.ndarray | None = None
        self.exported: ExportedQuery | None = None

    def export(self, backend: str = "auto", threads: int = 1) -> None:
        """One user at a time is encoded through the exported blocks from now on (``models.encoder.
        compiled``: a request's online vector); batches keep the eager forward."""
        from models.encoder.compiled import ExportedQuery

        self.exported = ExportedQuery(self.model, self.item_category, backend, threads)

    def encode(self, histories: list[UserHistory], contexts: list[RequestContext]) -> np.ndarray:
        if self.exported is not None and len(histories) == 1:
            return self.exported.vector(histories[0], contexts[0])[None, :]
        return encode_histories(self.model, self.item_category, histories, contexts)

    def item_vectors(self) -> np.ndarray:
        if self._item_vectors is None:
            with torch.inference_mode():
                self._item_vectors = self.model.item_vectors().float().numpy()
        return self._item_vectors


def encoder_path(path: Path | str) -> Path:
    """A checkpoint file, or a directory (existing, or a path without suffix) holding ``encoder.pt``."""
    path = Path(path)
    return path / ENCODER_FILE if path.is_dir() or not path.suffix else path


def weights_version(model: RetrievalEncoder) -> str:
    """``<kind>-<12 hex>``: a hash of the weights, the encoder's version when none is given."""
    digest = hashlib.sha256()
    state = model.state_dict()
    for key in sorted(state):
        digest.update(state[key].detach().cpu().float().numpy().tobytes())
    return f"{model.config.kind}-{digest.hexdigest()[:12]}"


def save_user_encoder(
    model: RetrievalEncoder,
    path: Path | str,
    item_category: np.ndarray,
    version: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``{config, state_dict, item_category, version, ...extra}``; returns the file written.
    ``version`` defaults to a hash of the weights."""
    target = encoder_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if version is None:
        version = weights_version(model)
    payload = {
        "config": model.config.to_dict(),
        "state_dict": state,
        "item_category": np.asarray(item_category, dtype=np.int64),
        "version": version,
        **(extra or {}),
    }
    torch.save(payload, target)
    return target


def load_encoder_checkpoint(path: Path | str) -> tuple[RetrievalEncoder, dict[str, Any]]:
    """Rebuild the model from any checkpoint holding ``config`` and ``state_dict``."""
    target = encoder_path(path)
    if not target.exists():
        raise FileNotFoundError(f"encoder checkpoint not found: {target}")
    payload = load_checkpoint(target)
    for key in ("config", "state_dict"):
        if key not in payload:
            raise ValueError(f"{target}: not an encoder checkpoint (missing {key!r})")
    model = RetrievalEncoder(EncoderConfig.from_dict(payload["config"]))
    model.load_state_dict(payload["state_dict"])
    return model.eval(), payload


def load_user_encoder(path: Path | str) -> TorchUserEncoder:
    model, payload = load_encoder_checkpoint(path)
    item_category = payload.get("item_category")
    if item_category is None:
        item_category = np.zeros(model.config.num_items, dtype=np.int64)
    version = str(payload.get("version", model.config.kind))
    return TorchUserEncoder(model, np.asarray(item_category, dtype=np.int64), version)
