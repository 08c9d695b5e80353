"""`mnist-bench show`: print a saved run's table, or a sweep's."""

from __future__ import annotations

from pathlib import Path

from common.errors import EXIT_OK


def cmd_show(args) -> int:
    """Print a saved run's table, or a sweep's."""
    from benchmarks.report.tables import text_report
    from benchmarks.sweep import format_summary, is_sweep, summary_rows
    from common.results import load_results

    if is_sweep(args.run):
        print(format_summary(summary_rows(Path(args.run))))
    else:
        print(text_report([load_results(args.run)]))
    return EXIT_OK


def add_parser(commands, formatter) -> None:
    """Add this command and its flags to the CLI's subcommands."""
    show = commands.add_parser("show", help="print a saved run's (or sweep's) table")
    show.add_argument("run", help="run folder, results.json or sweep folder")
    show.set_defaults(handler=cmd_show)
