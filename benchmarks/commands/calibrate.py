"""`mnist-bench calibrate`: measure this machine's timing noise with an A/A/B run of `run`'s protocol, say what it
tells apart, and keep the noise threshold that `run` then judges with."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmarks.commands.flags import DEFAULT_JOB, CliError, add_setting_flags, flag_for, given_settings
from common.config import ExperimentConfig
from common.errors import EXIT_OK
from common.job import RUN_TIMING_ROUNDS, Job
from common.validation import ConfigError

CALIBRATION_ROUNDS = 30  # timing rounds the A/A/B run makes: trials of the protocol's length are drawn from them


def cmd_calibrate(args) -> int:
    """Train (or, with --analyze, re-read) the A/A/B run; print and write the calibration; keep it for `run`."""
    from benchmarks.harness.aab import run_aab
    from benchmarks.measure.calibration import save_calibration, usable_threshold
    from benchmarks.harness.parent import Interrupted
    from benchmarks.harness.children import first_stop_only, stop_exit_status, stop_word
    from benchmarks.report.calibration import calibration_text, summarize_calibration
    from common.atomic import write_text_atomic
    from common.results import load_results

    if not 0 < args.slowdown <= 1:
        raise CliError(f"--slowdown: {args.slowdown}; expected a fraction in (0, 1], e.g. 0.15 for 15% slower")
    if args.analyze:
        results, run_dir = load_results(args.analyze), Path(args.analyze)
        slowdown = json.loads((run_dir / "calibration.json").read_text()).get("slowdown", args.slowdown) \
            if (run_dir / "calibration.json").is_file() else args.slowdown
    else:
        try:
            config = ExperimentConfig(**given_settings(args, ExperimentConfig))
            job = Job(backends=(args.backend,), config=config, **{"timing_rounds": CALIBRATION_ROUNDS,
                                                                  **given_settings(args, Job)})
        except ConfigError as error:
            raise CliError(f"{flag_for(error.field)}: {error}") from None
        try:
            with first_stop_only():
                results, run_dir = run_aab(args.backend, args.slowdown, job, Path(args.out) if args.out else None,
                                           quiet=args.quiet)
        except Interrupted as interrupted:
            print(f"{stop_word(interrupted)}: the A/A/B run so far is in {interrupted.run_dir}; judge it with "
                  f"`mnist-bench calibrate --analyze {interrupted.run_dir}`", file=sys.stderr)
            return stop_exit_status(interrupted)
        slowdown = args.slowdown
    try:
        summary = summarize_calibration(results, slowdown, 1 + RUN_TIMING_ROUNDS)
    except ValueError as error:
        raise CliError(f"calibrate: {run_dir}: {error}; run more rounds (--timing-rounds)") from None
    text = calibration_text(summary)
    write_text_atomic(run_dir / "calibration.json", json.dumps(summary, indent=1) + "\n")
    write_text_atomic(run_dir / "calibration.md", text)
    print(text)
    if not args.no_save and not usable_threshold(summary["threshold"]):
        print(f"not kept: the A/A interval reaches {summary['threshold']:.2f} from 1, too wide to judge with (too few "
              "or too noisy rounds); `run` keeps its threshold. Calibrate with more --timing-rounds")
    elif not args.no_save:
        print(f"kept as this machine's calibration: {save_calibration(summary)} (`run` judges ratios with its "
              "threshold from now on)")
    return EXIT_OK


def add_parser(commands, formatter) -> None:
    """Add this command and its flags to the CLI's subcommands."""
    calibrate = commands.add_parser(
        "calibrate", formatter_class=formatter,
        help="measure this machine's timing noise (an A/A/B run of run's protocol) and what differences it tells apart")
    calibrate.add_argument("--backend", default="flax", metavar="NAME",
                           help="the backend trained twice and slowed (flax: the quickest reference row)")
    calibrate.add_argument("--slowdown", type=float, default=0.15,
                           help="how much slower the slowed copy is made, as a fraction")
    add_setting_flags(calibrate, ExperimentConfig, DEFAULT_JOB.config,
                      only=("model", "epochs", "batch_size", "train_limit", "test_limit"))
    add_setting_flags(calibrate, Job, DEFAULT_JOB, only=("device", "data_dir", "rounds"))
    calibrate.add_argument("--timing-rounds", dest="timing_rounds", type=int, default=None,
                           help=f"timing rounds of the A/A/B run (default: {CALIBRATION_ROUNDS}); trials of run's "
                                f"{1 + RUN_TIMING_ROUNDS} rounds are drawn from them")
    calibrate.add_argument("--out", default=None, help="the A/A/B run's folder (default: runs/<UTC timestamp>)")
    calibrate.add_argument("--analyze", default=None, metavar="RUN", help="judge an earlier A/A/B run folder instead")
    calibrate.add_argument("--no-save", action="store_true", help="do not keep the result as this machine's calibration")
    calibrate.add_argument("--quiet", action="store_true", help="no progress bars")
    calibrate.set_defaults(handler=cmd_calibrate)
