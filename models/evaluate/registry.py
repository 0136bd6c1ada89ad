"""Model name -> "module:function" of a factory ``(FitInput) -> Scorer``, imported only when used.

Other parts of the project add their entries here (sasrec, hstu, session_encoder, ranker).
"""

from __future__ import annotations

import importlib

from models.scorer import ModelFactory

MODELS: dict[str, str] = {
    "popularity": "models.baselines.popularity:build_popularity",
    "cooccurrence": "models.baselines.cooccurrence:build_cooccurrence",
    "sasrec": "models.train.eval_adapter:build_sasrec",
    "hstu": "models.train.eval_adapter:build_hstu",
    "hstu_tau02": "models.train.eval_adapter:build_hstu_tau02",
    "session_encoder": "models.train.eval_adapter:build_session_encoder",
}


def register(name: str, target: str) -> None:
    """Adds (or replaces) a model entry; ``target`` is "package.module:function"."""
    if ":" not in target:
        raise ValueError(f"target '{target}' must be 'module:function'")
    MODELS[name] = target


def get_factory(name: str) -> ModelFactory:
    if name not in MODELS:
        raise KeyError(f"unknown model '{name}', registered: {sorted(MODELS)}")
    module_name, _, function_name = MODELS[name].partition(":")
    module = importlib.import_module(module_name)
    factory: ModelFactory = getattr(module, function_name)
    return factory


def available_models() -> list[str]:
    """Registered models whose module can be imported now (others have not landed yet)."""
    names = []
    for name, target in MODELS.items():
        try:
            importlib.import_module(target.partition(":")[0])
        except ModuleNotFoundError:
            continue
        names.append(name)
    return names
