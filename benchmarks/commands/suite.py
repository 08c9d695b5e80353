"""`mnist-bench suite`: the pytest-benchmark suite, one process per backend, merged and plotted."""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks.commands.flags import DEFAULT_JOB, CliError, add_setting_flags, backend_help, parse_backends
from common.errors import EXIT_FAILED, EXIT_OK
from common.job import Job


def cmd_suite(args) -> int:
    """Run the pytest-benchmark suite per backend, merge the JSON, plot step time and GFLOP/s."""
    import json

    from benchmarks.suite.runner import Regression, round_timings, run_suite, suite_table
    from common.atomic import claim_output_directory, new_output_directory
    from benchmarks.report.plots import plot_suite

    backends = parse_backends(args.backend or ["all"])  # the suite trains the MLP on the CPU
    if args.fail_over is not None and args.baseline is None:
        raise CliError("--fail-over: needs --baseline OLD.json, the suite to compare with")
    if args.fail_over is not None and not args.fail_over > 0:
        raise CliError(f"--fail-over: {args.fail_over}; expected a percentage > 0, e.g. --fail-over 10")
    if args.baseline is not None:
        try:
            saved = json.loads(Path(args.baseline).read_text(encoding="utf-8"))["benchmarks"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise CliError(f"--baseline: {args.baseline} is not a readable pytest-benchmark JSON file ({error}); "
                           "pass the benchmarks.json of an earlier `mnist-bench suite`") from None
        try:
            for bench in saved:
                round_timings(bench)  # the gate needs every round, not a mean: checked before anything runs
        except (ValueError, TypeError, AttributeError) as error:
            raise CliError(f"--baseline: {args.baseline}: {error}") from None
    out = claim_output_directory(Path(args.out) if args.out else new_output_directory("suite-"))
    code = EXIT_OK
    try:
        merged_path = run_suite(backends, out, quick=args.quick, quiet=args.quiet,
                                precision=args.precision or DEFAULT_JOB.precision,
                                baseline=Path(args.baseline).resolve() if args.baseline else None,
                                fail_over_pct=args.fail_over)
    except (Regression, RuntimeError) as error:
        print(f"mnist-bench: {error}", file=sys.stderr)
        merged_path, code = out / "benchmarks.json", EXIT_FAILED
    merged = json.loads(merged_path.read_text(encoding="utf-8"))
    plot = plot_suite(merged, out / "suite.png")
    print(suite_table(merged))
    print(f"\nbenchmark JSON: {merged_path}\nplot:           {plot}\n"
          f"compare:        pytest-benchmark compare {merged_path} OTHER.json --group-by=group")
    return code


def add_parser(commands, formatter) -> None:
    """Add this command and its flags to the CLI's subcommands."""
    suite = commands.add_parser("suite", help="pytest-benchmark suite, one process per backend (default: all), "
                                              "merged JSON + plot; can gate a regression against a baseline",
                                formatter_class=formatter)
    suite.add_argument("--backend", action="append", metavar="NAME", help=backend_help("all"))
    add_setting_flags(suite, Job, DEFAULT_JOB, only=("precision",))
    suite.add_argument("--quick", action="store_true", help="quick mode: batch 32 and 512, 3 rounds, 1/10 epoch")
    suite.add_argument("--out", default=None, help="folder (default: runs/suite-<UTC timestamp>)")
    suite.add_argument("--baseline", default=None, metavar="OLD.json",
                       help="compare with the benchmarks.json of an earlier suite (pytest-benchmark's compare)")
    suite.add_argument("--fail-over", type=float, default=None, metavar="PCT",
                       help="with --baseline: exit 1 when a benchmark got slower by more than PCT percent: the 95%% CI "
                       "of its new/old time over the rounds wholly above 1 + PCT/100, never one point")
    suite.add_argument("--quiet", action="store_true", help="hide pytest's output")
    suite.set_defaults(handler=cmd_suite)
