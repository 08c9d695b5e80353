"""`mnist-bench roofline`: this machine's fp32 GEMM peak, bandwidth and training floors."""

from __future__ import annotations

from benchmarks.commands.flags import DEFAULT_JOB, CliError, add_setting_flags, flag_for, given_settings
from backends.registry import DEFAULT_BACKENDS
from common.config import ExperimentConfig
from common.validation import ConfigError
from common.errors import EXIT_OK
from common.job import Job


def cmd_roofline(args) -> int:
    """Measure the fp32 GEMM peak and memory bandwidth, and the training floor they imply."""
    from benchmarks.harness.parent import measure_limits_in_child
    from benchmarks.measure.roofline import ROOFLINE_BATCH_SIZES, describe

    try:
        config = ExperimentConfig(**given_settings(args, ExperimentConfig))
        job = Job(backends=DEFAULT_BACKENDS, config=config, **given_settings(args, Job))
    except ConfigError as error:
        raise CliError(f"{flag_for(error.field)}: {error}") from None
    # In a child, as a run measures them: JAX configured as the job's workers are, OpenBLAS on its fastest kernel.
    limits, log = measure_limits_in_child(job, ROOFLINE_BATCH_SIZES)
    if limits is None:
        raise CliError(f"the measurement failed: {log.strip().splitlines()[-1] if log.strip() else 'no output'}")
    step_floors = [floor for floor in [limits["step_floor"], *limits.get("other_step_floors", [])] if floor]
    print(describe(limits, config, step_floors))
    return EXIT_OK


def add_parser(commands, formatter) -> None:
    """Add this command and its flags to the CLI's subcommands."""
    roofline = commands.add_parser("roofline", help="measure this machine's GEMM peak, bandwidth and training floor",
                                   formatter_class=formatter)
    add_setting_flags(roofline, ExperimentConfig, DEFAULT_JOB.config, only=("model", "batch_size"))
    add_setting_flags(roofline, Job, DEFAULT_JOB, only=("device", "devices", "precision"))
    roofline.set_defaults(handler=cmd_roofline)
