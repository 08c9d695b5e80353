"""`mnist-bench verify`: prove, on this machine, that the backends compute the same thing."""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks.commands.flags import (DEFAULT_JOB, CliError, add_setting_flags, backend_help, flag_for,
                                       given_settings, parse_backends)
from common.config import ExperimentConfig
from common.validation import ConfigError
from common.errors import EXIT_FAILED, EXIT_OK
from common.job import Job


def cmd_verify(args) -> int:
    """Train every chosen backend and a float64 reference on the same batches; judge every difference."""
    from benchmarks.harness.parent import check_job_can_start
    from benchmarks.harness.verify import VerifyError, verify
    from benchmarks.report.verification import text_table, write_verification
    from common.atomic import claim_output_directory, new_output_directory

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
    from benchmarks.harness.stacks import stacked_job

    job = stacked_job(job, args.stack, quiet=args.quiet)
    out = claim_output_directory(Path(args.out) if args.out else new_output_directory("verify-"))
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


def add_parser(commands, formatter) -> None:
    """Add this command and its flags to the CLI's subcommands."""
    verify = commands.add_parser("verify", help="prove that the backends compute the same thing, on this machine",
                                 formatter_class=formatter)
    verify.add_argument("--backend", action="append", metavar="NAME", help=backend_help("all"))
    add_setting_flags(verify, ExperimentConfig, DEFAULT_JOB.config, only=("model", "batch_size"))
    add_setting_flags(verify, Job, DEFAULT_JOB, only=("device", "precision", "data_dir", "xla_flags"))
    verify.add_argument("--steps", type=int, default=100, help="training steps compared, one per call")
    verify.add_argument("--out", default=None, help="folder for verify.json and plots (default: runs/verify-<UTC timestamp>)")
    verify.add_argument("--stack", action="append", metavar="NAME=REQ[,REQ...]",
                        help="also verify every backend on another stack (as `run --stack`): each against the float64 "
                             "reference, and each pair, the same backend on two stacks included; repeatable")
    verify.add_argument("--quiet", action="store_true", help="no progress lines")
    verify.set_defaults(handler=cmd_verify)
