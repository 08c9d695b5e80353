"""mnist-bench: train the same MNIST models in several frameworks from identical weights and batches, and compare."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
from pathlib import Path
from typing import Callable

from common.errors import MnistBenchError
from backends.registry import BACKENDS, DEFAULT_BACKENDS, runs
from benchmarks.sweep import DEFAULT_TRIAL_TIMEOUT_S, SHARED_SETTINGS
from benchmarks.exit_codes import (EXIT_BROKEN_PIPE, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE,
                                   first_interrupt_only)
from common.config import ConfigError, ExperimentConfig
from common.job import Job


def backend_help(default: str) -> str:
    """--backend's help, naming the groups, the backends and this command's default."""
    return (f"backend(s), repeatable or comma-separated: reference (= {', '.join(DEFAULT_BACKENDS)}), all (every "
            f"registered backend that can train the model on the device), or names: {', '.join(BACKENDS)} (default: {default})")


class CliError(MnistBenchError):
    """A bad flag value or input file: one line on stderr, exit code 2."""


BACKEND_GROUPS = {"reference": DEFAULT_BACKENDS, "all": tuple(BACKENDS)}


def parse_backends(values: list[str] | None, model: str = ExperimentConfig.model,
                   device: str = Job.device) -> tuple[str, ...]:
    """--backend given repeatedly and/or as comma lists; 'reference' (the default) and 'all' name groups.

    'all' keeps the backends that can train `model` on `device`; a backend named outright is kept, so that
    the job's checks can refuse it with their reason.
    """
    names = [name.strip() for value in (values or ["reference"]) for name in value.split(",") if name.strip()]
    groups = {**BACKEND_GROUPS, "all": tuple(name for name, spec in BACKENDS.items() if runs(spec, model, device))}
    names = [expanded for name in names for expanded in groups.get(name, (name,))]
    unknown = [name for name in names if name not in BACKENDS]
    if unknown or not names:
        raise CliError(f"--backend: unknown backend {', '.join(map(repr, unknown)) or '(empty)'}; "
                       f"valid: {', '.join(BACKEND_GROUPS)}, {', '.join(BACKENDS)}")
    return tuple(dict.fromkeys(names))


def parse_seeds(value: str) -> tuple[int, ...]:
    """'0,1,2' -> (0, 1, 2); also accepts a range '0-4'. Seeds are integers >= 0."""
    seeds: list[int] = []
    for part in (part.strip() for part in value.split(",")):
        if re.fullmatch(r"-\d+(-\d+)?", part):
            raise CliError(f"--seeds: {value!r}: seeds must be integers >= 0; e.g. --seeds 0,1,2 or --seeds 0-4")
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise CliError(f"--seeds: {value!r} is not a list of integers; e.g. --seeds 0,1,2 or --seeds 0-4")
        low, high = int(match[1]), int(match[2] or match[1])
        if high < low:
            raise CliError(f"--seeds: range {part!r} runs backwards; write it low-high, e.g. --seeds 0-4")
        seeds.extend(range(low, high + 1))
    return tuple(dict.fromkeys(seeds))


def setting_fields(cls) -> list[dataclasses.Field]:
    """The fields of ExperimentConfig or Job that are command-line flags (their metadata says how)."""
    return [field for field in dataclasses.fields(cls) if "flag" in field.metadata]


def add_setting_flags(parser: argparse.ArgumentParser, cls, defaults, only: tuple[str, ...] | None = None) -> None:
    """One flag per flagged field of `cls` (or of those named in `only`); argparse's default stays None so
    that given flags can be told apart."""
    for field in setting_fields(cls):
        if only is not None and field.name not in only:
            continue
        options = {key: value for key, value in field.metadata.items() if key not in ("flag", "help")}
        default = getattr(defaults, field.name)
        if default is not None and not {"type", "choices", "action"} & set(options):
            options["type"] = type(default)
        shown = f" (default: {default})" if default not in (None, False) else ""
        if "action" not in options:
            options.setdefault("metavar", field.metadata["flag"].lstrip("-").upper().replace("-", "_"))
        parser.add_argument(field.metadata["flag"], dest=field.name, default=None,
                            help=field.metadata["help"] + shown, **options)


def given_settings(args, cls) -> dict:
    """The flagged fields of `cls` that were given on the command line, by field name."""
    return {field.name: getattr(args, field.name) for field in setting_fields(cls)
            if getattr(args, field.name, None) is not None}


def flag_for(field_name: str | None) -> str:
    """The command-line flag that sets a config or job field."""
    special = {"backends": "--backend", "seeds": "--seeds"}
    for cls in (ExperimentConfig, Job):
        for field in setting_fields(cls):
            if field.name == field_name:
                return field.metadata["flag"]
    return special.get(field_name, field_name or "argument")


def job_from_args(args) -> Job:
    """The Job that the flags describe, every unspecified setting at its one default."""
    job_settings = given_settings(args, Job)
    if args.seeds is not None:
        job_settings["seeds"] = parse_seeds(args.seeds)
    try:
        config = ExperimentConfig(**given_settings(args, ExperimentConfig))
        if args.backend:
            job_settings["backends"] = parse_backends(args.backend, config.model, job_settings.get("device", Job.device))
        return Job(**{"backends": DEFAULT_BACKENDS, **job_settings, "config": config})
    except ConfigError as error:
        raise CliError(f"{flag_for(error.field)}: {error}") from None


def check_resume_flags(args, saved: Job) -> None:
    """Flags given with --resume must agree with the saved job; the run is finished as it was started."""
    if args.out:
        raise CliError("--out: cannot be combined with --resume; a resumed run writes into its own folder")
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
    from benchmarks.harness import Interrupted, resume_benchmark, run_benchmark
    from benchmarks.report import text_report, write_report
    from common.results import load_results

    try:
        with first_interrupt_only():
            if args.resume:
                check_resume_flags(args, load_results(args.resume).job)
                results, run_dir = resume_benchmark(Path(args.resume), quiet=args.quiet)
            else:
                job = job_from_args(args)
                results, run_dir = run_benchmark(job, Path(args.out) if args.out else None, quiet=args.quiet)
    except Interrupted as interrupted:
        write_report([interrupted.results], interrupted.run_dir)
        print(text_report([interrupted.results]))
        print(f"\ninterrupted: completed runs kept in {interrupted.run_dir}; finish them with "
              f"`mnist-bench run --resume {interrupted.run_dir}`", file=sys.stderr)
        return EXIT_INTERRUPTED
    summary = write_report([results], run_dir)
    print(text_report([results]))
    print(f"\nresults: {run_dir / 'results.json'}\nreport:  {summary}\nplots:   {run_dir / 'plots'}")
    return EXIT_OK if all(run.status == "ok" for run in results.runs) else EXIT_FAILED


def cmd_verify(args) -> int:
    """Train every chosen backend and a float64 reference on the same batches; judge every difference."""
    from benchmarks.harness import check_job_can_start, default_run_dir
    from benchmarks.verify import VerifyError, text_table, verify, write_verification
    from common.atomic import prepare_output_directory

    if args.steps < 1:
        raise CliError(f"--steps: {args.steps}; expected an integer >= 1")
    try:
        # Dropout off: every framework draws its own masks, so only rate-0 trajectories can agree step for step.
        config = ExperimentConfig(**given_settings(args, ExperimentConfig), dropout=0.0)
        job_settings = given_settings(args, Job)
        backends = parse_backends(args.backend or ["all"], config.model, job_settings.get("device", Job.device))
        job = Job(backends=backends, config=config, **job_settings)
    except ConfigError as error:
        raise CliError(f"{flag_for(error.field)}: {error}") from None
    check_job_can_start(job)
    out = prepare_output_directory(Path(args.out) if args.out else default_run_dir("verify-"))
    try:
        verification = verify(job, args.steps, quiet=args.quiet)
    except ValueError as error:
        raise CliError(f"--steps: {error}") from None
    except VerifyError as error:
        print(f"mnist-bench: verify: {error}", file=sys.stderr)
        return EXIT_FAILED
    written = write_verification(verification, out)
    print(text_table(verification))
    print(f"\nverify.json: {written[0]}\nplots:       {', '.join(str(path) for path in written[1:])}")
    return EXIT_OK if verification.passed else EXIT_FAILED


def parse_list(flag: str, value: str | None, kind: type) -> tuple | None:
    """A comma list of one flag's values, e.g. --batch-size 32,512; None when the flag was not given."""
    if value is None:
        return None
    try:
        values = tuple(kind(part.strip()) for part in value.split(",") if part.strip())
    except ValueError:
        raise CliError(f"{flag}: {value!r} is not a comma list of {kind.__name__}s; e.g. {flag} "
                       f"{'32,512' if kind is int else '1e-3,3e-3' if kind is float else 'highest,default'}") from None
    if not values:
        raise CliError(f"{flag}: empty list")
    return values


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
             "learning_rates": parse_list("--lr", args.lr, float),
             "precisions": parse_list("--precision", args.precision, str)}
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


def cmd_sweep(args) -> int:
    """Run a grid of trials here or on a Ray cluster; write the sweep folder, print its table."""
    from benchmarks.harness import default_run_dir
    from benchmarks.sweep import SweepInterrupted, format_summary, load_sweep, run_sweep, write_sweep_report

    if args.trials_per_node < 1:
        raise CliError(f"--trials-per-node: {args.trials_per_node}; expected an integer >= 1")
    if not args.trial_timeout > 0:
        raise CliError(f"--trial-timeout: {args.trial_timeout}; expected seconds > 0")
    if args.resume:
        if args.grid or args.out or any(getattr(args, name) is not None for name in SWEEP_AXIS_FLAGS):
            raise CliError("--resume: runs the saved grid as it was started; drop --grid, --out and the grid flags")
        grid, sweep_dir = load_sweep(args.resume).grid, Path(args.resume)
    else:
        grid, sweep_dir = grid_from_args(args), Path(args.out) if args.out else default_run_dir("sweep-")
    if args.dry_run:
        for trial in grid.trials():
            print(trial.id)
        print(f"{len(grid.trials())} trials", file=sys.stderr)
        return EXIT_OK
    try:
        with first_interrupt_only():
            index = run_sweep(None if args.resume else grid, sweep_dir, args.executor, resume=bool(args.resume),
                              ray_address=args.ray_address, trials_per_node=args.trials_per_node,
                              timeout_s=args.trial_timeout, quiet=args.quiet)
    except SweepInterrupted as interrupted:
        print(format_summary(write_sweep_report(interrupted.sweep_dir)))
        print(f"\ninterrupted: finished trials kept in {interrupted.sweep_dir}; run the rest with "
              f"`mnist-bench sweep --resume {interrupted.sweep_dir}`", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(format_summary(write_sweep_report(sweep_dir)))
    print(f"\nsweep:  {sweep_dir / 'sweep.json'}\nreport: {sweep_dir / 'summary.md'}\nplots:  {sweep_dir / 'plots'}")
    return EXIT_OK if all(record.status == "ok" for record in index.trials) else EXIT_FAILED


SWEEP_AXIS_FLAGS = ("backend", "batch_size", "seeds", "devices", "lr", "precision", *SHARED_SETTINGS)


def load_runs(paths: list[str]) -> list:
    """Results of run folders, results.json files and sweep folders (every trial of a sweep)."""
    from benchmarks.sweep import is_sweep, sweep_results
    from common.results import load_results

    results = []
    for path in paths:
        results.extend(sweep_results(path) if is_sweep(path) else [load_results(path)])
    return results


def cmd_show(args) -> int:
    """Print a saved run's table, or a sweep's."""
    from benchmarks.report import text_report
    from benchmarks.sweep import format_summary, is_sweep, summary_rows
    from common.results import load_results

    if is_sweep(args.run):
        print(format_summary(summary_rows(Path(args.run))))
    else:
        print(text_report([load_results(args.run)]))
    return EXIT_OK


def cmd_compare(args) -> int:
    """Re-render the table and plots from saved runs, without training."""
    from benchmarks.harness import default_run_dir
    from benchmarks.report import text_report, write_report
    from common.atomic import prepare_output_directory

    results_list = load_runs(args.runs)
    if not results_list:
        raise CliError(f"compare: no saved results in {', '.join(args.runs)}")
    out = prepare_output_directory(Path(args.out) if args.out else default_run_dir("compare-"))
    summary = write_report(results_list, out, title="mnist-bench comparison: " + ", ".join(args.runs))
    print(text_report(results_list))
    print(f"\nreport: {summary}")
    return EXIT_OK


def cmd_suite(args) -> int:
    """Run the pytest-benchmark suite per backend, merge the JSON, plot step time and GFLOP/s."""
    import json

    from benchmarks.harness import default_run_dir
    from benchmarks.suite import Regression, run_suite, suite_table
    from common.atomic import prepare_output_directory
    from common.plots import plot_suite

    backends = parse_backends(args.backend or ["all"])  # the suite trains the MLP on the CPU
    if args.fail_over is not None and args.baseline is None:
        raise CliError("--fail-over: needs --baseline OLD.json, the suite to compare with")
    if args.fail_over is not None and not args.fail_over > 0:
        raise CliError(f"--fail-over: {args.fail_over}; expected a percentage > 0, e.g. --fail-over 10")
    if args.baseline is not None:
        try:
            json.loads(Path(args.baseline).read_text(encoding="utf-8"))["benchmarks"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise CliError(f"--baseline: {args.baseline} is not a readable pytest-benchmark JSON file ({error}); "
                           "pass the benchmarks.json of an earlier `mnist-bench suite`") from None
    out = prepare_output_directory(Path(args.out) if args.out else default_run_dir("suite-"))
    code = EXIT_OK
    try:
        merged_path = run_suite(backends, out, quick=args.quick, quiet=args.quiet,
                                precision=args.precision or Job(backends=DEFAULT_BACKENDS).precision,
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


def cmd_roofline(args) -> int:
    """Measure the fp32 GEMM peak and memory bandwidth, and the training floor they imply."""
    from benchmarks.roofline import ROOFLINE_BATCH_SIZES, describe, measure_limits, measure_step_floor

    try:
        config = ExperimentConfig(**given_settings(args, ExperimentConfig))
        job = Job(backends=DEFAULT_BACKENDS, config=config, **given_settings(args, Job))
    except ConfigError as error:
        raise CliError(f"{flag_for(error.field)}: {error}") from None
    limits = measure_limits(job)  # measures in this process, with JAX, configured as the job's workers are
    step_floors = [limits["step_floor"]] + [measure_step_floor(config.replace(batch_size=size))
                                            for size in ROOFLINE_BATCH_SIZES if size != config.batch_size]
    print(describe(limits, config, step_floors))
    return EXIT_OK


def cmd_info(args) -> int:
    """The machine, installed backends with versions, and the devices each framework sees."""
    from benchmarks.info import machine_info

    print(machine_info())
    return EXIT_OK


def cmd_data(args) -> int:
    """Locate (or download), verify and summarise MNIST."""
    import numpy as np

    from common.mnist import load_mnist

    data = load_mnist(args.data_dir)
    print(f"source:    {data.source} ({'canonical, sha256 verified' if data.canonical else 'not the canonical files'})")
    print(f"train:     {data.train_images.shape} images, label counts {np.bincount(data.train_labels).tolist()}")
    print(f"test:      {data.test_images.shape} images, label counts {np.bincount(data.test_labels).tolist()}")
    return EXIT_OK


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
    """The argument parser for every subcommand; --help shows every default."""
    parser = _Parser(prog="mnist-bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    fmt = _DefaultsHelp

    run = commands.add_parser("run", help="train and compare backends (default: the reference three, CPU, seed 0, "
                                          "full MNIST)", formatter_class=fmt)
    run.add_argument("--backend", action="append", metavar="NAME", help=backend_help("reference"))
    default_job = Job(backends=DEFAULT_BACKENDS)
    add_setting_flags(run, ExperimentConfig, default_job.config)
    add_setting_flags(run, Job, default_job)
    run.add_argument("--seeds", default=None, help="seeds, e.g. 0,1,2 or 0-4: one run per seed and backend "
                                                   f"(default: {','.join(map(str, default_job.seeds))})")
    run.add_argument("--out", default=None, help="run folder (default: runs/<UTC timestamp>)")
    run.add_argument("--resume", default=None, metavar="RUN",
                     help="finish an interrupted or partly failed run: keep its ok runs, train the rest with its "
                          "own saved settings (other flags must agree with them)")
    run.add_argument("--quiet", action="store_true", help="no progress bars, only the final table")
    run.set_defaults(handler=cmd_run)

    verify = commands.add_parser("verify", help="prove that the backends compute the same thing, on this machine",
                                 formatter_class=fmt)
    verify.add_argument("--backend", action="append", metavar="NAME", help=backend_help("all"))
    add_setting_flags(verify, ExperimentConfig, default_job.config, only=("model", "batch_size"))
    add_setting_flags(verify, Job, Job(backends=DEFAULT_BACKENDS), only=("device", "precision", "data_dir"))
    verify.add_argument("--steps", type=int, default=100, help="training steps compared, one per call")
    verify.add_argument("--out", default=None, help="folder for verify.json and plots (default: runs/verify-<UTC timestamp>)")
    verify.add_argument("--quiet", action="store_true", help="no progress lines")
    verify.set_defaults(handler=cmd_verify)

    show = commands.add_parser("show", help="print a saved run's (or sweep's) table")
    show.add_argument("run", help="run folder, results.json or sweep folder")
    show.set_defaults(handler=cmd_show)

    compare = commands.add_parser("compare", help="tables and plots from saved runs, e.g. CPU vs GPU machines",
                                  formatter_class=fmt)
    compare.add_argument("runs", nargs="+", metavar="RUN", help="run folders, results.json files or sweep folders")
    compare.add_argument("--out", default=None, help="report folder (default: runs/compare-<UTC timestamp>)")
    compare.set_defaults(handler=cmd_compare)

    suite = commands.add_parser("suite", help="pytest-benchmark suite, one process per backend (default: all), "
                                              "merged JSON + plot; can gate a regression against a baseline",
                                formatter_class=fmt)
    suite.add_argument("--backend", action="append", metavar="NAME", help=backend_help("all"))
    add_setting_flags(suite, Job, Job(backends=DEFAULT_BACKENDS), only=("precision",))
    suite.add_argument("--quick", action="store_true", help="quick mode: batch 32 and 512, 3 rounds, 1/10 epoch")
    suite.add_argument("--out", default=None, help="folder (default: runs/suite-<UTC timestamp>)")
    suite.add_argument("--baseline", default=None, metavar="OLD.json",
                       help="compare with the benchmarks.json of an earlier suite (pytest-benchmark's compare)")
    suite.add_argument("--fail-over", type=float, default=None, metavar="PCT",
                       help="with --baseline: exit 1 when a benchmark's mean got slower by more than PCT percent")
    suite.add_argument("--quiet", action="store_true", help="hide pytest's output")
    suite.set_defaults(handler=cmd_suite)

    sweep = commands.add_parser("sweep", help="a grid of runs (backends x batch sizes x seeds x devices x learning "
                                              "rates x precision), here or on a Ray cluster", formatter_class=fmt)
    sweep.add_argument("--grid", default=None, metavar="SWEEP.toml",
                       help="the grid as a TOML file (axes: backends, batch_sizes, seeds, devices, learning_rates, "
                            "precisions; shared [settings]); flags below override it")
    sweep.add_argument("--backend", action="append", metavar="NAME", help=backend_help("reference"))
    sweep.add_argument("--batch-size", default=None, help="comma list, e.g. 32,512 (default: 32)")
    sweep.add_argument("--seeds", default=None, help="e.g. 0,1,2 or 0-4 (default: 0)")
    sweep.add_argument("--devices", default=None, help="comma list of data-parallel device counts, e.g. 1,2 "
                                                       "(default: 1)")
    sweep.add_argument("--lr", default=None, help="comma list of Adam learning rates (default: 0.001)")
    sweep.add_argument("--precision", default=None, help="comma list: highest, default (default: highest)")
    add_setting_flags(sweep, ExperimentConfig, default_job.config, only=("model", "dropout", "epochs", "train_limit", "test_limit"))
    add_setting_flags(sweep, Job, default_job, only=("device", "target_accuracy", "data_dir"))
    sweep.add_argument("--executor", choices=("local", "ray"), default="local",
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
    sweep.add_argument("--quiet", action="store_true", help="no per-trial lines")
    sweep.set_defaults(handler=cmd_sweep)

    roofline = commands.add_parser("roofline", help="measure this machine's GEMM peak, bandwidth and training floor",
                                   formatter_class=fmt)
    add_setting_flags(roofline, ExperimentConfig, default_job.config, only=("model", "batch_size"))
    add_setting_flags(roofline, Job, default_job, only=("device", "devices", "precision"))
    roofline.set_defaults(handler=cmd_roofline)

    info = commands.add_parser("info", help="machine, installed backends and versions, visible devices")
    info.set_defaults(handler=cmd_info)

    data = commands.add_parser("data", help="find or download MNIST, verify it and print a summary",
                               formatter_class=fmt)
    data.add_argument("--data-dir", default=None,
                      help="folder with the MNIST files (default: $MNIST_BENCH_DATA, then the caches, then download)")
    data.set_defaults(handler=cmd_data)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mnist-bench` console script."""
    return guarded(lambda: (lambda args: args.handler(args))(build_parser().parse_args(argv)))


def guarded(action: Callable[[], int]) -> int:
    """Run `action`; an MnistBenchError becomes one line on stderr and its exit code, Ctrl-C exit 130."""
    try:
        code = action()
        sys.stdout.flush()  # a reader that left raises here, inside the handlers, not at interpreter exit
        return code
    except MnistBenchError as error:
        print(f"mnist-bench: error: {error.prefix}{error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("mnist-bench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `mnist-bench show RUN | head`: the reader has all it wanted. Stop quietly, as Unix tools do; stdout
        # goes to /dev/null so that the interpreter's final flush cannot raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
