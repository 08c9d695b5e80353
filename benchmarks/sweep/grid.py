"""A sweep's grid: its axes, the settings its trials share, and one Trial (a one-backend, one-seed job) per point."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import tomllib
from pathlib import Path

from benchmarks.sweep.errors import SweepError
from common.config import ExperimentConfig
from common.validation import ConfigError
from common.job import Job

AXES = (("backends", "backend"), ("batch_sizes", "batch_size"), ("seeds", "seed"), ("devices", "devices"),
        ("learning_rates", "learning_rate"), ("precisions", "precision"), ("xla_flags", "xla_flags"))
# Settings shared by every trial that a TOML grid may set under [settings].
SHARED_SETTINGS = ("model", "dropout", "epochs", "train_limit", "test_limit", "device", "rounds", "target_accuracy",
                   "data_dir", "compile_cache")


@dataclasses.dataclass(frozen=True)
class Grid:
    """Every combination of the axes is one trial; `base` holds the settings the trials share."""

    backends: tuple[str, ...]
    batch_sizes: tuple[int, ...] | None = None  # None: the model's default batch size
    # Each axis defaults to the one value `run` would use: the Job's and the config's own defaults.
    seeds: tuple[int, ...] = Job.seeds
    devices: tuple[int, ...] = (Job.devices,)
    learning_rates: tuple[float, ...] = (ExperimentConfig.learning_rate,)
    precisions: tuple[str, ...] = (Job.precision,)
    # Kernel routes, one trial each: XLA flags for the JAX workers ("": XLA's defaults; None: each backend's own).
    xla_flags: tuple[str | None, ...] = (Job.xla_flags,)
    base: Job = dataclasses.field(default_factory=lambda: Job(backends=("flax",)))

    def __post_init__(self):
        if self.batch_sizes is None:
            object.__setattr__(self, "batch_sizes", (self.base.config.batch_size,))
        for axis, _ in AXES:
            values = tuple(getattr(self, axis))
            if not values or len(set(values)) != len(values):
                raise SweepError(f"grid axis {axis}: {list(values)}; expected a non-empty list of distinct values")
            object.__setattr__(self, axis, values)

    def trials(self) -> list[Trial]:
        """One Trial per combination, backends varying slowest; an impossible combination is a SweepError."""
        trials = []
        for backend, batch_size, seed, devices, learning_rate, precision, xla_flags in itertools.product(
                *(getattr(self, axis) for axis, _ in AXES)):
            try:
                job = self.base.replace(backends=(backend,), seeds=(seed,), devices=devices, precision=precision,
                                        xla_flags=xla_flags,
                                        config=self.base.config.replace(batch_size=batch_size,
                                                                        learning_rate=learning_rate))
            except ConfigError as error:
                raise SweepError(f"trial {backend} batch {batch_size} devices {devices} lr {learning_rate:g} "
                                 f"{precision} seed {seed}: {error}") from None
            trials.append(Trial(trial_id(job), job))
        return trials

    def to_dict(self) -> dict:
        """Plain-JSON form, stored in sweep.json."""
        return {**{axis: list(getattr(self, axis)) for axis, _ in AXES}, "base": self.base.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> Grid:
        """Inverse of `to_dict`."""
        # A sweep saved before routes were an axis ran every backend's own route.
        return cls(**{axis: tuple(data[axis]) for axis, _ in AXES if axis in data}, base=Job.from_dict(data["base"]))


@dataclasses.dataclass(frozen=True)
class Trial:
    """One run of the grid: a one-backend, one-seed job and its folder name."""

    id: str
    job: Job


def trial_id(job: Job) -> str:
    """A readable, file-name-safe name that tells the trial's grid point."""
    # Ids from before models existed name no model: the default model keeps them.
    model = "" if job.config.model == ExperimentConfig.model else f"{job.config.model}-"
    # Ids from before routes existed name none: a backend's own route keeps them; a given one is named by a digest.
    route = ("" if job.xla_flags is None else "-xla-defaults" if not job.xla_flags else
             f"-xla-{hashlib.sha1(job.xla_flags.encode()).hexdigest()[:8]}")
    return (f"{model}{job.backend}-b{job.config.batch_size}-d{job.devices}-lr{job.config.learning_rate:g}-"
            f"{job.precision}{route}-s{job.seeds[0]}")


def grid_from_toml(path: Path) -> dict:
    """The axes and [settings] of a TOML grid file, as keyword arguments of `Grid` (base settings separate)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise SweepError(f"--grid: cannot read {path} ({error}); pass a TOML file") from None
    except tomllib.TOMLDecodeError as error:
        raise SweepError(f"--grid: {path} is not valid TOML ({error})") from None
    axes = {axis for axis, _ in AXES}
    unknown = sorted(set(data) - axes - {"settings"})
    settings = data.get("settings", {})
    unknown += [f"settings.{key}" for key in sorted(set(settings) - set(SHARED_SETTINGS))]
    if unknown:
        raise SweepError(f"--grid: {path}: unknown keys {', '.join(unknown)}; axes: {', '.join(sorted(axes))}; "
                         f"[settings]: {', '.join(SHARED_SETTINGS)}")
    grid = {axis: data[axis] if isinstance(data[axis], list) else [data[axis]] for axis in axes if axis in data}
    return {**grid, "settings": settings}


def base_job(settings: dict) -> Job:
    """The settings every trial shares, as a Job (the axes are filled in per trial)."""
    config_fields = {field.name for field in dataclasses.fields(ExperimentConfig)}
    config = ExperimentConfig(**{k: v for k, v in settings.items() if k in config_fields})
    return Job(backends=("flax",), config=config, **{k: v for k, v in settings.items() if k not in config_fields})
