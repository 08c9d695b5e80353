"""`mnist-bench history`: every run under a folder as series over time, their change points, and a regression gate."""

from __future__ import annotations

from pathlib import Path

from benchmarks.commands.flags import CliError
from common.errors import EXIT_FAILED, EXIT_OK


def cmd_history(args) -> int:
    """Print the series and their steps; with --fail-on-regression, exit 1 when a latest point regressed."""
    from benchmarks.report.history import (ACKNOWLEDGED_FILE, NothingToReport, acknowledge, build_series,
                                           find_reports, format_history, gate, load_acknowledged, warn)

    if args.fail_on_regression is not None and args.fail_on_regression < 0:
        raise CliError(f"--fail-on-regression {args.fail_on_regression}: give a percentage >= 0, e.g. 10")
    path = Path(args.acknowledged or Path(args.root) / ACKNOWLEDGED_FILE)
    try:
        found = find_reports([args.root])
        acknowledged = load_acknowledged(path)
    except (NothingToReport, ValueError) as error:
        raise CliError(str(error)) from None
    warn(found.skipped)
    if not found.runs:
        raise CliError(f"history: no runs (results.json) under {args.root}; pass a folder of `mnist-bench run` outputs")
    series = build_series(found.runs)
    if args.acknowledge:
        key, _, run = args.acknowledge.rpartition("@")
        known = {(s.key, p.run) for s in series for p in s.points}
        if (key, run) not in known:
            raise CliError(f"--acknowledge {args.acknowledge}: no run {run!r} in series {key!r}; give SERIES@RUN as "
                           "`mnist-bench history` prints them")
        acknowledge(path, key, run)
        acknowledged.add((key, run))
        print(f"acknowledged {key} at {run} in {path}")
    print(format_history(series, acknowledged))
    if args.fail_on_regression is None:
        return EXIT_OK
    failing = gate(series, args.fail_on_regression, acknowledged)
    for regression in failing:
        print(f"REGRESSION {regression.series.key}: {regression.latest.run} is {(regression.ratio - 1) * 100:+.1f}% "
              f"[{(regression.low - 1) * 100:+.1f}%, {(regression.high - 1) * 100:+.1f}%] slower than its level "
              f"({regression.baseline:.3f} s/epoch), past the {args.fail_on_regression:g}% allowed")
    if not failing:
        print(f"no series' latest run is slower than its level by more than {args.fail_on_regression:g}% with its CI "
              "clear of it")
    return EXIT_FAILED if failing else EXIT_OK


def add_parser(commands, formatter) -> None:
    """Add this command and its flags to the CLI's subcommands."""
    history = commands.add_parser("history", formatter_class=formatter,
                                  help="series of runs over time, change points, and a regression gate for CI")
    history.add_argument("root", metavar="ROOT", help="folder holding run folders (searched recursively)")
    history.add_argument("--fail-on-regression", type=float, default=None, metavar="PCT",
                         help="exit 1 when a series' latest run is slower than its level by more than PCT percent, "
                              "its 95%% CI wholly past it (acknowledged ones excepted)")
    history.add_argument("--acknowledge", default=None, metavar="SERIES@RUN",
                         help="accept the step or regression at RUN of SERIES: kept in the acknowledged file")
    history.add_argument("--acknowledged", default=None, metavar="FILE",
                         help="acknowledged regressions (default: ROOT/acknowledged-regressions.json)")
    history.set_defaults(handler=cmd_history)
