"""`mnist-bench sweep`: a grid of runs, here or on a Ray cluster."""

from __future__ import annotations

import sys
from pathlib import Path

from backends.registry import DEFAULT_BACKENDS
from benchmarks.commands.flags import (DEFAULT_JOB, SEEDS_HELP, CliError, add_list_flags, add_setting_flags,
                                       backend_help, flag_for, parse_backends, parse_list, parse_seeds)
from benchmarks.harness.children import first_stop_only, stop_exit_status, stop_word
from benchmarks.sweep.grid import SHARED_SETTINGS
from benchmarks.sweep.runner import EXECUTORS
from benchmarks.sweep.trial import DEFAULT_TRIAL_TIMEOUT_S
from common.config import ExperimentConfig
from common.validation import ConfigError
from common.errors import EXIT_FAILED, EXIT_OK
from common.job import Job


SWEEP_AXIS_FLAGS = ("backend", "batch_size", "seeds", "devices", "learning_rate", "precision", "xla_flags",
                    *SHARED_SETTINGS)


def grid_from_args(args):
    """The sweep's Grid: a --grid TOML file if given, with any axis or setting given as a flag taking precedence."""
    from benchmarks.sweep import Grid, base_job, grid_from_toml

    from_file = grid_from_toml(Path(args.grid)) if args.grid else {"settings": {}}
    settings = from_file.pop("settings")
    settings.update({name: value for name in SHARED_SETTINGS if (value := getattr(args, name)) is not None})
    model, device = settings.get("model") or ExperimentConfig.model, settings.get("device") or Job.device
    axes = {**from_file}
    flags = {"backends": parse_backends(args.backend, model, device) if args.backend else None,
             "batch_sizes": parse_list("--batch-size", args.batch_size, int),
             "seeds": parse_seeds(args.seeds) if args.seeds is not None else None,
             "devices": parse_list("--devices", args.devices, int),
             "learning_rates": parse_list("--lr", args.learning_rate, float),
             "precisions": parse_list("--precision", args.precision, str),
             "xla_flags": parse_routes(args.xla_flags)}
    axes.update({axis: values for axis, values in flags.items() if values is not None})
    if "backends" in axes:
        axes["backends"] = parse_backends(list(axes["backends"]), model, device)
    axes.setdefault("backends", DEFAULT_BACKENDS)
    try:
        return Grid(**axes, base=base_job(settings))
    except ConfigError as error:
        raise CliError(f"{flag_for(error.field)}: {error}") from None
    except TypeError as error:
        raise CliError(f"--grid: {error}") from None


def stacked_grid(grid, values, quiet: bool = True):
    """The grid with the stacks as an axis: every backend on the running stack and on each --stack (labels
    BACKEND@STACK), each stack built or reused before any trial starts."""
    import dataclasses

    from benchmarks.harness.stacks import stacked_job

    if not values:
        return grid
    stacked = stacked_job(grid.base.replace(backends=grid.backends), values, quiet)
    return dataclasses.replace(grid, backends=stacked.backends, base=grid.base.replace(stacks=stacked.stacks))


def parse_routes(value: str | None) -> tuple[str, ...] | None:
    """--xla-flags of a sweep: kernel routes separated by commas, `xla` for XLA's defaults; None when not given."""
    if value is None:
        return None
    parts = [part.strip() for part in value.split(",")]
    if not all(parts):
        raise CliError(f"--xla-flags: {value!r} has an empty route; write `xla` for XLA's defaults, e.g. "
                       "--xla-flags=xla,--xla_cpu_multi_thread_eigen=false")
    return tuple("" if part == "xla" else part for part in parts)


def cmd_sweep(args) -> int:
    """Run a grid of trials here or on a Ray cluster; write the sweep folder, print its table."""
    from common.atomic import new_output_directory
    from benchmarks.sweep import SweepInterrupted, format_summary, load_sweep, run_sweep, write_sweep_report

    if args.trials_per_node < 1:
        raise CliError(f"--trials-per-node: {args.trials_per_node}; expected an integer >= 1")
    if not args.trial_timeout > 0:
        raise CliError(f"--trial-timeout: {args.trial_timeout}; expected seconds > 0")
    if args.resume:
        if args.grid or args.out or args.stack or any(getattr(args, name) is not None for name in SWEEP_AXIS_FLAGS):
            raise CliError("--resume: runs the saved grid as it was started; drop --grid, --out and the grid flags")
        grid, sweep_dir = load_sweep(args.resume).grid, Path(args.resume)
    else:
        if args.stack and args.executor == "ray":
            raise CliError("--stack with --executor ray: a stack is a uv environment on this machine, which a Ray "
                           "cluster's nodes do not have; sweep stacks with --executor local")
        grid, sweep_dir = grid_from_args(args), Path(args.out) if args.out else new_output_directory("sweep-")
        grid = stacked_grid(grid, args.stack, quiet=args.quiet or args.dry_run)
    if args.dry_run:
        for trial in grid.trials():
            print(trial.id)
        print(f"{len(grid.trials())} trials", file=sys.stderr)
        return EXIT_OK
    try:
        with first_stop_only():
            index = run_sweep(None if args.resume else grid, sweep_dir, args.executor, resume=bool(args.resume),
                              ray_address=args.ray_address, trials_per_node=args.trials_per_node,
                              timeout_s=args.trial_timeout, quiet=args.quiet)
    except SweepInterrupted as interrupted:
        print(format_summary(write_sweep_report(interrupted.sweep_dir)))
        print(f"\n{stop_word(interrupted)}: finished trials kept in {interrupted.sweep_dir}; run the rest with "
              f"`mnist-bench sweep --resume {interrupted.sweep_dir}`", file=sys.stderr)
        return stop_exit_status(interrupted)
    print(format_summary(write_sweep_report(sweep_dir)))
    print(f"\nsweep:  {sweep_dir / 'sweep.json'}\nreport: {sweep_dir / 'summary.md'}\nplots:  {sweep_dir / 'plots'}")
    return EXIT_OK if all(record.status == "ok" for record in index.trials) else EXIT_FAILED


def add_parser(commands, formatter) -> None:
    """Add this command and its flags to the CLI's subcommands."""
    sweep = commands.add_parser("sweep", help="a grid of runs (backends x batch sizes x seeds x devices x learning "
                                              "rates x precision), here or on a Ray cluster", formatter_class=formatter)
    sweep.add_argument("--grid", default=None, metavar="SWEEP.toml",
                       help="the grid as a TOML file (axes: backends, batch_sizes, seeds, devices, learning_rates, "
                            "precisions, xla_flags; shared [settings]); flags below override it")
    sweep.add_argument("--backend", action="append", metavar="NAME", help=backend_help("reference"))
    # The grid's axes: the same fields as `run`'s flags, each as a comma list.
    add_list_flags(sweep, ExperimentConfig, DEFAULT_JOB.config, only=("batch_size", "learning_rate"))
    sweep.add_argument("--seeds", default=None, help=f"{SEEDS_HELP}, one trial each (default: "
                                                     f"{','.join(map(str, DEFAULT_JOB.seeds))})")
    add_list_flags(sweep, Job, DEFAULT_JOB, only=("devices", "precision"))
    sweep.add_argument("--xla-flags", default=None, metavar="ROUTE,...",
                       help="kernel routes, one trial each: XLA flags for the JAX workers, routes separated by commas, "
                            "`xla` for XLA's defaults (write --xla-flags=...; default: each backend's own route)")
    add_setting_flags(sweep, ExperimentConfig, DEFAULT_JOB.config, only=SHARED_SETTINGS)
    add_setting_flags(sweep, Job, DEFAULT_JOB, only=SHARED_SETTINGS)
    sweep.add_argument("--executor", choices=EXECUTORS, default=EXECUTORS[0],
                       help="local: trials one after another here; ray: Ray tasks on a cluster (extra 'cluster')")
    sweep.add_argument("--ray-address", default=None, metavar="auto|HOST:PORT",
                       help="the Ray cluster to use (default: $RAY_ADDRESS, else a Ray started on this machine)")
    sweep.add_argument("--trials-per-node", type=int, default=1,
                       help="trials running at once on one node (more disturb each other's timings)")
    sweep.add_argument("--trial-timeout", type=float, default=DEFAULT_TRIAL_TIMEOUT_S, metavar="SECONDS",
                       help="a trial still running after this is stopped and recorded as failed")
    sweep.add_argument("--out", default=None, help="sweep folder (default: runs/sweep-<UTC timestamp>)")
    sweep.add_argument("--resume", default=None, metavar="SWEEP_DIR",
                       help="run the saved sweep's missing, failed and interrupted trials")
    sweep.add_argument("--dry-run", action="store_true", help="print the trials and stop")
    sweep.add_argument("--stack", action="append", metavar="NAME=REQ[,REQ...]",
                       help="a stack axis (as `run --stack`): every backend on the running stack and on this one; "
                            "local executor only; repeatable")
    sweep.add_argument("--quiet", action="store_true", help="no per-trial lines")
    sweep.set_defaults(handler=cmd_sweep)
