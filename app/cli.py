"""The ``tandem`` command: one entry point, subcommands contributed by the modules that own them.

Each module in ``COMMAND_MODULES`` exposes ``register(subparsers)``, which adds its subcommands and sets
``func`` (called with the parsed namespace, returning an exit code) as the parser default.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence

COMMAND_MODULES = (
    "models.data.cli",  # tandem data prepare
    "models.train.cli",  # tandem train encoder|ranker
    "models.evaluate.cli",  # tandem eval
    "app.server_cli",  # tandem serve, tandem worker
)


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent package that has not landed yet
        return False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tandem", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        if not _module_exists(name):
            continue
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
