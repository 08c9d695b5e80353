"""`mnist-bench breakdown`: where each profiled backend's step time goes, by op category, side by side."""

from __future__ import annotations

from pathlib import Path

from benchmarks.commands.flags import CliError
from common.errors import EXIT_OK


def cmd_breakdown(args) -> int:
    """Print the per-category table of a `--profile` run and write its stacked-bar plot."""
    from benchmarks.report.breakdown import format_breakdown, run_breakdowns
    from benchmarks.report.plots import plot_breakdown

    run_dir = Path(args.run)
    if run_dir.name == "results.json":
        run_dir = run_dir.parent
    if not (run_dir / "results.json").is_file():
        raise CliError(f"breakdown: {run_dir} holds no results.json; pass a run folder made with `mnist-bench run`")
    breakdowns = run_breakdowns(run_dir)
    if not breakdowns:
        raise CliError(f"breakdown: {run_dir} has no --profile traces; run it with `mnist-bench run --profile ...`")
    print(format_breakdown(breakdowns))
    plot = plot_breakdown(breakdowns, run_dir / "plots" / "breakdown.png")
    print(f"\nplot: {plot}")
    return EXIT_OK


def add_parser(commands, formatter) -> None:
    """Add this command and its flags to the CLI's subcommands."""
    breakdown = commands.add_parser("breakdown", help="a profiled run's step time by op category, per backend "
                                                      "(GEMM, conv and its gradients, pooling, optimizer, between ops)")
    breakdown.add_argument("run", help="a run folder made with `mnist-bench run --profile`")
    breakdown.set_defaults(handler=cmd_breakdown)
