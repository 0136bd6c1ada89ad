import pytest
import torch
from torch import nn

from models.export import BACKENDS, ShapeCache, available_backend, export_forward


class _Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 2))

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return self.layer(x) * scale


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_export_gives_the_eager_output(backend: str) -> None:
    module = _Scaled().eval()
    example = [torch.randn(3, 4), torch.full((3, 1), 2.0)]
    forward = export_forward(module, example, ["x", "scale"], backend)
    other = [torch.randn(3, 4), torch.full((3, 1), 0.5)]  # same shapes, other values
    with torch.no_grad():
        assert torch.allclose(forward(other), module(*other), atol=1e-5)


def test_the_shape_cache_exports_once_per_key() -> None:
    cache = ShapeCache("torchscript")
    built: list[int] = []

    def build() -> nn.Module:
        built.append(1)
        return _Scaled()

    for rows in (2, 2, 5):
        example = [torch.randn(rows, 4), torch.ones(rows, 1)]
        assert cache.get(rows, build, example, ["x", "scale"])(example).shape == (rows, 2)
    assert len(built) == 2 and sorted(cache.compiled) == [2, 5]


def test_backend_names_are_checked() -> None:
    assert available_backend("auto") in BACKENDS
    assert available_backend("torchscript") == "torchscript"
    with pytest.raises(ValueError, match="unknown backend"):
        available_backend("tensorrt")
