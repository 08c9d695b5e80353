"""`mnist-bench run`: train and compare the job's backends, or finish a saved run."""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks.commands.flags import (DEFAULT_JOB, SEEDS_HELP, CliError, add_setting_flags, backend_help, flag_for,
                                       given_settings, job_from_args, parse_backends, parse_seeds)
from benchmarks.harness.children import first_stop_only, stop_exit_status, stop_word
from common.config import ExperimentConfig
from common.errors import EXIT_FAILED, EXIT_OK
from common.job import Job


def check_resume_flags(args, saved: Job) -> None:
    """Flags given with --resume must agree with the saved job; the run is finished as it was started."""
    if args.out:
        raise CliError("--out: cannot be combined with --resume; a resumed run writes into its own folder")
    if args.stack:
        raise CliError("--stack: cannot be combined with --resume; a resumed run trains on the stacks it was started "
                       "with")
    given = {**given_settings(args, Job), **{f"config.{name}": value
                                             for name, value in given_settings(args, ExperimentConfig).items()}}
    if args.backend:
        given["backends"] = parse_backends(args.backend, saved.config.model, saved.device)
    if args.seeds is not None:
        given["seeds"] = parse_seeds(args.seeds)
    for name, value in given.items():
        field = name.removeprefix("config.")
        saved_value = getattr(saved.config if name.startswith("config.") else saved, field)
        if value != saved_value:
            raise CliError(f"{flag_for(field)}: {value!r} contradicts the run being resumed, which has "
                           f"{field}={saved_value!r}; drop the flag to resume the run as it was started")


def cmd_run(args) -> int:
    """Train every (backend, seed), print the table, write results.json, plots and summary.md."""
    from benchmarks.harness.parent import Interrupted, resume_benchmark, run_benchmark
    from benchmarks.report.tables import text_report, write_report
    from common.results import load_results

    try:
        with first_stop_only():
            if args.resume:
                check_resume_flags(args, load_results(args.resume).job)
                results, run_dir = resume_benchmark(Path(args.resume), quiet=args.quiet)
            else:
                from benchmarks.harness.stacks import stacked_job

                job = stacked_job(job_from_args(args), args.stack, quiet=args.quiet)
                results, run_dir = run_benchmark(job, Path(args.out) if args.out else None, quiet=args.quiet,
                                                 measure_floor=not args.no_floor)
    except Interrupted as interrupted:
        write_report([interrupted.results], interrupted.run_dir)
        print(text_report([interrupted.results]))
        print(f"\n{stop_word(interrupted)}: completed runs kept in {interrupted.run_dir}; finish them with "
              f"`mnist-bench run --resume {interrupted.run_dir}`", file=sys.stderr)
        return stop_exit_status(interrupted)
    summary = write_report([results], run_dir)
    print(text_report([results]))
    print(f"\nresults: {run_dir / 'results.json'}\nreport:  {summary}\nplots:   {run_dir / 'plots'}\n"
          f"page:    mnist-bench report {run_dir.parent} (every run there, interactive, with its history)")
    return EXIT_OK if all(run.status == "ok" for run in results.runs) else EXIT_FAILED


def add_parser(commands, formatter) -> None:
    """Add this command and its flags to the CLI's subcommands."""
    run = commands.add_parser("run", help="train and compare backends (default: the reference three, CPU, seed 0, "
                                          "full MNIST)", formatter_class=formatter)
    run.add_argument("--backend", action="append", metavar="NAME", help=backend_help("reference"))
    add_setting_flags(run, ExperimentConfig, DEFAULT_JOB.config)
    add_setting_flags(run, Job, DEFAULT_JOB)
    run.add_argument("--seeds", default=None, help=f"{SEEDS_HELP}: one run per seed and backend "
                                                   f"(default: {','.join(map(str, DEFAULT_JOB.seeds))})")
    run.add_argument("--out", default=None, help="run folder (default: runs/<UTC timestamp>)")
    run.add_argument("--stack", action="append", metavar="NAME=REQ[,REQ...]",
                     help="also train every backend on another stack, e.g. jax09=jax==0.9.2,jaxlib==0.9.2: a uv "
                          "environment built (or reused) from the project's requirements with these pins; rows are "
                          "BACKEND@STACK (the running environment is `current`), interleaved; repeatable")
    run.add_argument("--resume", default=None, metavar="RUN",
                     help="finish an interrupted or partly failed run: keep its ok runs, train the rest with its "
                          "own saved settings (other flags must agree with them)")
    run.add_argument("--quiet", action="store_true", help="no progress bars, only the final table")
    run.add_argument("--no-floor", action="store_true",
                     help="skip measuring this machine's limits before training (a child of ~6 s): no floor columns")
    run.set_defaults(handler=cmd_run)
