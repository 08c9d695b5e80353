"""The flags every command shares: settings made from the Job's and the config's field metadata, backends and seeds.

A setting's flag, help and argparse options are written once, on its field (`common.config.flag`); a command
takes the fields it needs with `add_setting_flags` (one value) or `add_list_flags` (a sweep's comma list).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import re

from backends.registry import BACKENDS, DEFAULT_BACKENDS, backend_labels, runs
from common.config import ExperimentConfig
from common.validation import ConfigError
from common.errors import MnistBenchError
from common.job import RUN_TIMING_ROUNDS, Job


class CliError(MnistBenchError):
    """A bad flag value or input file: one line on stderr, exit code 2."""


BACKEND_GROUPS = {"reference": DEFAULT_BACKENDS, "all": tuple(BACKENDS)}
# Every setting at its one default: what --help shows; `run` adds its timing rounds to a job's one full round.
DEFAULT_JOB = Job(backends=DEFAULT_BACKENDS, timing_rounds=RUN_TIMING_ROUNDS)
SEEDS_HELP = "seeds, e.g. 0,1,2 or 0-4"


def backend_help(default: str) -> str:
    """--backend's help, naming the groups, the backends and this command's default."""
    return (f"backend(s), repeatable or comma-separated: reference (= {', '.join(DEFAULT_BACKENDS)}), all (every "
            f"registered backend that can train the model on the device), or names: {', '.join(BACKENDS)} (default: {default})")


def parse_backends(values: list[str] | None, model: str = ExperimentConfig.model,
                   device: str = Job.device) -> tuple[str, ...]:
    """--backend given repeatedly and/or as comma lists; 'reference' (the default) and 'all' name groups.

    'all' keeps the backends that can train `model` on `device`; a backend named outright is kept, so that
    the job's checks can refuse it with their reason. A backend named outright twice runs twice, as `name#1`
    and `name#2`: an A/A check of the machine's noise (one that a group names again runs once).
    """
    names = [name.strip() for value in (values or ["reference"]) for name in value.split(",") if name.strip()]
    groups = {**BACKEND_GROUPS, "all": tuple(name for name, spec in BACKENDS.items() if runs(spec, model, device))}
    named_outright = collections.Counter(name for name in names if name not in groups)
    names = [expanded for name in names for expanded in groups.get(name, (name,))]
    unknown = [name for name in names if name not in BACKENDS]
    if unknown or not names:
        raise CliError(f"--backend: unknown backend {', '.join(map(repr, unknown)) or '(empty)'}; "
                       f"valid: {', '.join(BACKEND_GROUPS)}, {', '.join(BACKENDS)}")
    # A backend that a group brings in again is one run; only one named outright twice is an A/A pair.
    kept = [name for position, name in enumerate(names)
            if named_outright[name] > 1 or name not in names[:position]]
    return backend_labels(kept)


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
        if "action" not in options:
            options.setdefault("metavar", _metavar(field))
        parser.add_argument(field.metadata["flag"], dest=field.name, default=None,
                            help=field.metadata["help"] + _default_note(field, default), **options)


def add_list_flags(parser: argparse.ArgumentParser, cls, defaults, only: tuple[str, ...]) -> None:
    """A comma-list flag per field of `cls` named in `only` (a sweep's axes), from the same metadata as
    `add_setting_flags`; parsed by `parse_list`."""
    for field in setting_fields(cls):
        if field.name not in only:
            continue
        choices = field.metadata.get("choices")
        shown = field.metadata["help"] + (f": comma list of {', '.join(choices)}" if choices else ", as a comma list")
        parser.add_argument(field.metadata["flag"], dest=field.name, default=None,
                            help=shown + _default_note(field, getattr(defaults, field.name)),
                            metavar=_metavar(field) + ",...")


def _metavar(field: dataclasses.Field) -> str:
    return field.metadata["flag"].lstrip("-").upper().replace("-", "_")


def _default_note(field: dataclasses.Field, default) -> str:
    """' (default: X)', except where there is none or the help gives its own (per-model) default."""
    if default in (None, False) or "(default:" in field.metadata["help"]:
        return ""
    return f" (default: {default:g})" if isinstance(default, float) else f" (default: {default})"


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
        # A profiled run is left out of speed ratios: it gets no timing rounds unless asked for (and then refused).
        timing_rounds = 0 if job_settings.get("profile") else DEFAULT_JOB.timing_rounds
        return Job(**{"backends": DEFAULT_BACKENDS, "timing_rounds": timing_rounds, **job_settings, "config": config})
    except ConfigError as error:
        raise CliError(f"{flag_for(error.field)}: {error}") from None


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
