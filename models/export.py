"""Fixed-shape exports of a module for one-request serving calls: ONNX Runtime or TorchScript.

Small serving models spend most of an eager forward in per-operator dispatch. When a call's shapes are known
(one request, inputs padded to a bucket), the forward can be exported once per shape and run outside eager
PyTorch. ``ShapeCache`` keeps one compiled function per shape key; the owner (``models.ranker.compiled``)
decides the padding and checks its scores against the eager model in tests.
"""

from __future__ import annotations

import importlib.util
import io
import math
import threading
import warnings
from collections.abc import Callable, Hashable, Sequence

import numpy as np
import torch
from torch import nn

BACKENDS = ("onnxruntime", "torchscript")

Forward = Callable[[Sequence[torch.Tensor]], torch.Tensor]


def available_backend(requested: str = "auto") -> str:
    """``auto`` -> onnxruntime when importable, else torchscript; a named backend is checked and returned."""
    if requested == "auto":
        return "onnxruntime" if importlib.util.find_spec("onnxruntime") is not None else "torchscript"
    if requested not in BACKENDS:
        raise ValueError(f"unknown backend '{requested}', expected auto or one of {BACKENDS}")
    if requested == "onnxruntime" and importlib.util.find_spec("onnxruntime") is None:
        raise ValueError("backend 'onnxruntime' needs the onnxruntime package")
    return requested


def export_forward(
    module: nn.Module, example: Sequence[torch.Tensor], names: Sequence[str], backend: str, threads: int = 1
) -> Forward:
    """module(*tensors) -> one output tensor, exported for exactly the shapes of ``example``."""
    with torch.no_grad(), warnings.catch_warnings():
        # shapes are fixed per export on purpose; the tracer's "might not generalize" notes are expected
        warnings.simplefilter("ignore")
        if backend == "torchscript":
            traced = torch.jit.trace(module.eval(), tuple(example), check_trace=False)
            frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
            return lambda tensors: frozen(*tensors)
        return _onnx_session(module.eval(), example, list(names), threads)


def _onnx_session(
    module: nn.Module, example: Sequence[torch.Tensor], names: list[str], threads: int
) -> Forward:
    import onnxruntime

    buffer = io.BytesIO()
    # the TorchScript-based exporter: fast (~0.3 s) and enough for fixed shapes; torch is pinned
    torch.onnx.export(
        module,
        tuple(example),
        buffer,  # type: ignore[arg-type]  # the TorchScript exporter writes to a file object too
        input_names=names,
        output_names=["output"],
        dynamo=False,
    )
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    inputs = {node.name for node in session.get_inputs()}  # the exporter drops inputs the graph ignores

    def run(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        pairs = zip(names, tensors, strict=True)
        feed = {name: np.asarray(t.numpy()) for name, t in pairs if name in inputs}
        return torch.from_numpy(session.run(None, feed)[0])

    return run


def padded_size(count: int, multiple: int) -> int:
    """``count`` rounded up to a multiple of ``multiple`` (at least one multiple): the shapes an exported
    forward is built for, so a few exports serve every size."""
    return max(1, math.ceil(count / multiple)) * multiple


class ShapeCache:
    """One exported forward per shape key, built on first use (once, even under concurrent calls)."""

    def __init__(self, backend: str = "auto", threads: int = 1) -> None:
        if threads < 1:
            raise ValueError("threads must be >= 1")
        self.backend = available_backend(backend)
        self.threads = threads
        self.compiled: dict[Hashable, Forward] = {}
        self._lock = threading.Lock()

    def get(
        self,
        key: Hashable,
        build: Callable[[], nn.Module],
        example: Sequence[torch.Tensor],
        names: Sequence[str],
    ) -> Forward:
        compiled = self.compiled.get(key)
        if compiled is None:
            with self._lock:
                compiled = self.compiled.get(key)
                if compiled is None:
                    compiled = export_forward(build(), example, names, self.backend, self.threads)
                    self.compiled[key] = compiled
        return compiled
