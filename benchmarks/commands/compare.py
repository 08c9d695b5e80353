"""`mnist-bench compare`: tables and plots from saved runs, without training."""

from __future__ import annotations

from pathlib import Path

from benchmarks.commands.flags import CliError
from common.errors import EXIT_OK


def load_runs(paths: list[str]) -> list:
    """Results of run folders, results.json files and sweep folders (every trial of a sweep)."""
    from benchmarks.sweep import is_sweep, sweep_results
    from common.results import load_results

    results = []
    for path in paths:
        results.extend(sweep_results(path) if is_sweep(path) else [load_results(path)])
    return results


def cmd_compare(args) -> int:
    """Re-render the table and plots from saved runs, without training."""
    from benchmarks.report.tables import text_report, write_report
    from common.atomic import claim_output_directory, new_output_directory

    results_list = load_runs(args.runs)
    if not results_list:
        raise CliError(f"compare: no saved results in {', '.join(args.runs)}")
    out = claim_output_directory(Path(args.out) if args.out else new_output_directory("compare-"))
    summary = write_report(results_list, out, title="mnist-bench comparison: " + ", ".join(args.runs))
    print(text_report(results_list))
    print(f"\nreport: {summary}")
    return EXIT_OK


def add_parser(commands, formatter) -> None:
    """Add this command and its flags to the CLI's subcommands."""
    compare = commands.add_parser("compare", help="tables and plots from saved runs, e.g. CPU vs GPU machines",
                                  formatter_class=formatter)
    compare.add_argument("runs", nargs="+", metavar="RUN", help="run folders, results.json files or sweep folders")
    compare.add_argument("--out", default=None, help="report folder (default: runs/compare-<UTC timestamp>)")
    compare.set_defaults(handler=cmd_compare)
