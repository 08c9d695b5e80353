"""mnist-bench: train the same MNIST models in several frameworks from identical weights and batches, and compare."""

from __future__ import annotations

import argparse
import sys

from benchmarks.commands import (breakdown, calibrate, compare, data, history, info, report, roofline, run, show,
                                 suite, sweep, verify)
from benchmarks.commands.flags import CliError
from benchmarks.harness.children import guarded

# In the order `--help` lists them.
COMMANDS = (run, verify, calibrate, show, compare, report, history, breakdown, suite, sweep, roofline, info, data)


class _DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """Shows '(default: X)' for real defaults; flags whose help already explains the default skip it."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line naming the problem (exit 2)."""

    def error(self, message):
        raise CliError(message)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand, each added by its own module; --help shows every default."""
    parser = _Parser(prog="mnist-bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for command in COMMANDS:
        command.add_parser(commands, _DefaultsHelp)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mnist-bench` console script."""
    return guarded(lambda: (lambda args: args.handler(args))(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
