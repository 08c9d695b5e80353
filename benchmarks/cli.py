"""mnist-bench: train one MNIST MLP in several frameworks from identical weights and batches, and compare."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from backends.registry import BACKENDS, DEFAULT_BACKENDS
from common.config import ExperimentConfig

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
DEFAULTS = ExperimentConfig()


BACKEND_HELP = (f"backend(s), repeatable or comma-separated: reference (= {', '.join(DEFAULT_BACKENDS)}; the "
                f"default), all (every registered backend), or names: {', '.join(BACKENDS)}")


class CliError(Exception):
    """A bad flag value or input file: one line on stderr, exit code 2."""


BACKEND_GROUPS = {"reference": DEFAULT_BACKENDS, "all": tuple(BACKENDS)}


def parse_backends(values: list[str] | None) -> tuple[str, ...]:
    """--backend given repeatedly and/or as comma lists; 'reference' (the default) and 'all' name groups."""
    names = [name.strip() for value in (values or ["reference"]) for name in value.split(",") if name.strip()]
    names = [expanded for name in names for expanded in BACKEND_GROUPS.get(name, (name,))]
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


def cmd_run(args) -> int:
    """Train every (backend, seed), print the table, write results.json, plots and summary.md."""
    from benchmarks.harness import Interrupted, RunPlan, run_benchmark
    from benchmarks.report import text_report, write_report
    from common.config import ConfigError

    if not 0 < args.target_accuracy <= 1:
        raise CliError(f"--target-accuracy: {args.target_accuracy}; expected a number in (0, 1]")
    try:
        config = DEFAULTS.replace(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
                                  train_limit=args.train_limit, test_limit=args.test_limit)
    except ConfigError as error:
        flag = {"epochs": "--epochs", "batch_size": "--batch-size", "learning_rate": "--lr",
                "train_limit": "--train-limit", "test_limit": "--test-limit"}
        name = str(error).split(":", 1)[1].split("=", 1)[0].strip()
        raise CliError(f"{flag.get(name, name)}: {error}") from None
    plan = RunPlan(config=config, backends=parse_backends(args.backend), seeds=parse_seeds(args.seeds),
                   device=args.device, data_dir=args.data_dir, out_dir=Path(args.out) if args.out else None,
                   quiet=args.quiet, target_accuracy=args.target_accuracy)
    try:
        results, run_dir = run_benchmark(plan)
    except Interrupted as interrupted:
        write_report([interrupted.results], interrupted.run_dir)
        print(text_report([interrupted.results]))
        print(f"\ninterrupted: completed runs kept in {interrupted.run_dir}", file=sys.stderr)
        return EXIT_INTERRUPTED
    summary = write_report([results], run_dir)
    print(text_report([results]))
    print(f"\nresults: {run_dir / 'results.json'}\nreport:  {summary}\nplots:   {run_dir / 'plots'}")
    return 0 if all(run.status == "ok" for run in results.runs) else 1


def cmd_show(args) -> int:
    """Print a saved run's table."""
    from benchmarks.report import text_report
    from common.results import load_results

    print(text_report([load_results(args.run)]))
    return 0


def cmd_compare(args) -> int:
    """Re-render the table and plots from saved runs, without training."""
    from benchmarks.harness import default_run_dir
    from benchmarks.report import text_report, write_report
    from common.atomic import prepare_output_directory
    from common.results import load_results

    results_list = [load_results(run) for run in args.runs]
    out = prepare_output_directory(Path(args.out) if args.out else default_run_dir("compare-"))
    summary = write_report(results_list, out, title="mnist-bench comparison: " + ", ".join(args.runs))
    print(text_report(results_list))
    print(f"\nreport: {summary}")
    return 0


def cmd_suite(args) -> int:
    """Run the pytest-benchmark suite per backend, merge the JSON, plot step time and GFLOP/s."""
    import json

    from benchmarks.harness import default_run_dir
    from benchmarks.suite import run_suite, suite_table
    from common.atomic import prepare_output_directory
    from common.plots import plot_suite

    backends = parse_backends(args.backend)
    out = prepare_output_directory(Path(args.out) if args.out else default_run_dir("suite-"))
    try:
        merged_path = run_suite(backends, out, quick=args.quick, quiet=args.quiet)
        code = 0
    except RuntimeError as error:
        print(f"mnist-bench: {error}", file=sys.stderr)
        merged_path, code = out / "benchmarks.json", 1
    merged = json.loads(merged_path.read_text(encoding="utf-8"))
    plot = plot_suite(merged, out / "suite.png")
    print(suite_table(merged))
    print(f"\nbenchmark JSON: {merged_path}\nplot:           {plot}\n"
          f"compare:        pytest-benchmark compare {merged_path} OTHER.json --group-by=group")
    return code


def cmd_roofline(args) -> int:
    """Measure the fp32 GEMM peak and memory bandwidth, and the training floor they imply."""
    from benchmarks.roofline import describe, measure

    config = DEFAULTS.replace(batch_size=args.batch_size)
    print(describe(measure(args.device), config, 48_000))
    return 0


def cmd_info(args) -> int:
    """The machine, installed backends with versions, and the devices each framework sees."""
    from benchmarks.info import machine_info

    print(machine_info())
    return 0


def cmd_data(args) -> int:
    """Locate (or download), verify and summarise MNIST."""
    import numpy as np

    from common.mnist import load_mnist

    data = load_mnist(args.data_dir)
    print(f"source:    {data.source} ({'canonical, sha256 verified' if data.canonical else 'not the canonical files'})")
    print(f"train:     {data.train_images.shape} images, label counts {np.bincount(data.train_labels).tolist()}")
    print(f"test:      {data.test_images.shape} images, label counts {np.bincount(data.test_labels).tolist()}")
    return 0


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
    run.add_argument("--backend", action="append", metavar="NAME", help=BACKEND_HELP)
    run.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help="where to train")
    run.add_argument("--epochs", type=int, default=DEFAULTS.epochs, help="training epochs")
    run.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="samples per step")
    run.add_argument("--lr", type=float, default=DEFAULTS.learning_rate, help="Adam learning rate")
    run.add_argument("--seeds", default=str(DEFAULTS.seed),
                     help="seeds, e.g. 0,1,2 or 0-4: one run per seed and backend")
    run.add_argument("--data-dir", default=None, help="MNIST folder (default: $MNIST_BENCH_DATA, caches, download)")
    run.add_argument("--out", default=None, help="run folder (default: runs/<UTC timestamp>)")
    run.add_argument("--train-limit", type=int, default=None,
                     help="quick runs: use only the first N training images (split 80/20 as usual)")
    run.add_argument("--test-limit", type=int, default=None, help="quick runs: use only the first N test images")
    run.add_argument("--target-accuracy", type=float, default=0.97,
                     help="validation accuracy that time-to-accuracy waits for")
    run.add_argument("--quiet", action="store_true", help="no progress bars, only the final table")
    run.set_defaults(handler=cmd_run)

    show = commands.add_parser("show", help="print a saved run's table")
    show.add_argument("run", help="run folder or results.json")
    show.set_defaults(handler=cmd_show)

    compare = commands.add_parser("compare", help="tables and plots from saved runs, e.g. CPU vs GPU machines",
                                  formatter_class=fmt)
    compare.add_argument("runs", nargs="+", metavar="RUN", help="run folders or results.json files")
    compare.add_argument("--out", default=None, help="report folder (default: runs/compare-<UTC timestamp>)")
    compare.set_defaults(handler=cmd_compare)

    suite = commands.add_parser("suite", help="pytest-benchmark suite, one process per backend, merged JSON + plot",
                                formatter_class=fmt)
    suite.add_argument("--backend", action="append", metavar="NAME", help=BACKEND_HELP)
    suite.add_argument("--quick", action="store_true", help="quick mode: batch 32 and 512, 3 rounds, 1/10 epoch")
    suite.add_argument("--out", default=None, help="folder (default: runs/suite-<UTC timestamp>)")
    suite.add_argument("--quiet", action="store_true", help="hide pytest's output")
    suite.set_defaults(handler=cmd_suite)

    roofline = commands.add_parser("roofline", help="measure this machine's GEMM peak, bandwidth and training floor",
                                   formatter_class=fmt)
    roofline.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help="device to measure")
    roofline.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="batch size for the floors")
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
    from backends.base import BackendError
    from benchmarks.harness import HarnessError
    from common.atomic import UnusableOutputError
    from common.config import ConfigError
    from common.mnist import MnistDataError
    from common.results import ResultsError

    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except UnusableOutputError as error:
        print(f"mnist-bench: error: --out: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (CliError, MnistDataError, ConfigError, ResultsError, HarnessError, BackendError) as error:
        print(f"mnist-bench: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("mnist-bench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
