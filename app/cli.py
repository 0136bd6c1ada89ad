"""The ``tandem`` command: one entry point; each (sub)command lives in the module that owns it.

Every module named in ``COMMANDS`` exposes ``add_arguments(parser)`` and ``run(args) -> int``. A module
whose package has not been installed is skipped, so the command works while the project grows.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence

# command path -> (module, one-line help)
COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("data", "prepare"): ("models.data.cli", "turn a raw dataset into the typed event table"),
    ("train", "encoder"): ("models.train.encoder_cli", "train the retrieval encoder (or a baseline)"),
    ("train", "ranker"): ("models.ranker.cli", "train the target-aware ranker"),
    ("bundle", "build"): ("models.bundle_cli", "assemble an artifact bundle (vectors, index, models)"),
    ("eval",): ("models.evaluate.cli", "offline evaluation with markdown/JSON/PNG reports"),
    ("serve",): ("app.server_cli", "serve the HTTP API"),
    ("worker",): ("app.worker_cli", "run the near-line user-vector worker"),
}


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent package that has not landed yet
        return False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tandem", description="Two-stage recommender: train, evaluate, serve."
    )
    top = parser.add_subparsers(dest="command", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    for path, (module_name, help_text) in COMMANDS.items():
        if not _module_exists(module_name):
            continue
        module = importlib.import_module(module_name)
        if len(path) == 1:
            sub = top.add_parser(path[0], help=help_text)
        else:
            if path[0] not in groups:
                group_parser = top.add_parser(path[0], help=f"{path[0]} commands")
                groups[path[0]] = group_parser.add_subparsers(dest=f"{path[0]}_command", required=True)
            sub = groups[path[0]].add_parser(path[1], help=help_text)
        module.add_arguments(sub)
        sub.set_defaults(func=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
