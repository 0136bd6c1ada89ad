"""The ``tandem`` command: one entry point over the command modules of this package.

Every command module exposes ``add_arguments(parser)`` and ``run(args) -> int`` and is imported here by
name, so a command whose module fails to import fails ``tandem`` loudly instead of disappearing from it.
The command modules import the library (``app``, ``models``) lazily where it is heavy, so ``tandem --help``
stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from cli import bundle, bundle_pack, data, serve, train_encoder, train_ranker, worker
from cli import eval as evaluate

# (command path, module, one-line help), in the order ``tandem --help`` lists them
COMMANDS: tuple[tuple[tuple[str, ...], ModuleType, str], ...] = (
    (("data", "prepare"), data, "turn a raw dataset into the typed event table"),
    (("train", "encoder"), train_encoder, "train the retrieval encoder (or a baseline)"),
    (("train", "ranker"), train_ranker, "train the target-aware ranker"),
    (("bundle", "build"), bundle, "assemble an artifact bundle (vectors, index, models)"),
    (("bundle", "pack"), bundle_pack, "pack a bundle as one .tar.gz for replicas (prints its sha256)"),
    (("eval",), evaluate, "offline evaluation with markdown/JSON/PNG reports"),
    (("serve",), serve, "serve the HTTP API"),
    (("worker",), worker, "run the near-line user-vector worker"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tandem", description="Two-stage recommender: train, evaluate, serve."
    )
    top = parser.add_subparsers(dest="command", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    for path, module, help_text in COMMANDS:
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


if __name__ == "__main__":  # python -m cli.main: the same as the installed `tandem` script
    sys.exit(main())
