"""The job: everything one benchmark run is asked to do, as one frozen, validated object.

`mnist-bench run` builds one from its flags; the harness stores it in results.json and hands each
worker process the same object narrowed to one backend and its seeds (`for_backend`), as JSON.
Every default lives here or in `ExperimentConfig`, once.
"""

from __future__ import annotations

import dataclasses

from common.config import ExperimentConfig
from common.validation import ConfigError, check, flag, is_finite_number, is_positive_int, known_fields
from common.data import train_sample_count

DEVICES = ("cpu", "gpu")
# "highest": float32 matrix products at full float32 precision in every framework (no TF32 on NVIDIA
# GPUs since Ampere, which both TensorFlow and JAX use by default there); "default": each framework's own.
PRECISIONS = ("highest", "default")
# Validation accuracy that time-to-accuracy waits for (DAWNBench / MLPerf style).
TARGET_ACCURACY = 0.97
# A job trains every backend fully once (`rounds`) unless asked for more. `mnist-bench run` adds timing rounds
# (RUN_TIMING_ROUNDS): accuracy and curves need one full training per backend, a speed ratio needs many processes,
# since two processes of the same code differ by more than the epochs inside one do. Why these counts and this
# length: docs/results/2026-12-08-timing-rounds.md.
DEFAULT_ROUNDS = 1
RUN_TIMING_ROUNDS = 15
# A timing process trains warm-up epochs and then timed ones, all full epochs of the same trainer: the first epoch
# compiles, and the second was still ~15% slower than the later ones (steady state found from the third epoch in the
# full runs), so two warm up. One timed epoch a process: the noise is mostly between processes, so time buys
# more precision as more processes. docs/results/2026-12-08-timing-rounds.md.
TIMING_WARMUP_EPOCHS = 2
TIMING_EPOCHS = 1


CURRENT_STACK = "current"  # the running environment, as a stack (`flax@current`)


def stack_of(label: str) -> str | None:
    """The stack a backend label names (`flax@jax09` -> `jax09`), None for a plain label."""
    name, at, stack = label.rpartition("@")
    return stack if at and name else None


@dataclasses.dataclass(frozen=True)
class Job:
    """Which backends and seeds to train with one config, on which device, from which data."""

    backends: tuple[str, ...]
    config: ExperimentConfig = dataclasses.field(default_factory=ExperimentConfig)
    seeds: tuple[int, ...] = (0,)
    device: str = dataclasses.field(default="cpu", metadata=flag("--device", "where to train", choices=DEVICES))
    devices: int = dataclasses.field(default=1, metadata=flag(
        "--devices", "data-parallel devices per run: the batch is split over N devices of --device (on CPU, N "
        "virtual devices sharing the host's cores)", type=int))
    rounds: int = dataclasses.field(default=DEFAULT_ROUNDS, metadata=flag(
        "--rounds", "interleaved rounds: every backend trains once per round, each time in a fresh process, the "
        "order rotated from round to round, so that the machine's drift hits every backend alike; speed ratios "
        "get a 95%% CI over the rounds (1: no CI)", type=int))
    timing_rounds: int = dataclasses.field(default=0, metadata=flag(
        "--timing-rounds", "speed-only rounds after the full ones: every backend again in a fresh process (the order "
        "rotated), two warm-up epochs and one timed epoch of the same trainer, no validation or test; speed ratios and "
        f"epoch times use every process, accuracy and curves the full rounds (default: {RUN_TIMING_ROUNDS}; 0: none)",
        type=int))
    timing_only: bool = False  # a worker's job: one timing round's process (set by the harness, never a flag)
    target_accuracy: float = dataclasses.field(default=TARGET_ACCURACY, metadata=flag(
        "--target-accuracy", "validation accuracy that time-to-accuracy waits for", type=float))
    data_dir: str | None = dataclasses.field(default=None, metadata=flag(
        "--data-dir", "MNIST folder (default: $MNIST_BENCH_DATA, caches, download)"))
    profile: bool = dataclasses.field(default=False, metadata=flag(
        "--profile", "trace a few steady-state steps of every run with the framework's profiler (profiled runs "
        "are left out of speed comparisons)", action="store_true"))
    step_times: bool = dataclasses.field(default=False, metadata=flag(
        "--step-times", "clock every step (p50/p90 step times, the step-time plot): a host sync after each step, "
        "which stops the framework from running ahead, so epochs get slower; off, steps are timed per epoch",
        action="store_true"))
    precision: str = dataclasses.field(default="highest", metadata=flag(
        "--precision", "float32 matmul precision: highest (pinned, no TF32) or each framework's default",
        choices=PRECISIONS))
    xla_flags: str | None = dataclasses.field(default=None, metadata=flag(
        "--xla-flags", "XLA flags for the JAX workers, in place of the backend's own kernel route (write "
        "--xla-flags='--xla_a=1 --xla_b' with an equals sign; '' for XLA's defaults); default: each backend's route "
        "(docs/performance.md)"))

    compile_cache: str | None = dataclasses.field(default=None, metadata=flag(
        "--compile-cache", "a folder for JAX's persistent compilation cache, shared by the JAX workers (every "
        "program cached, however fast it compiled): a second run loads its programs instead of compiling them"))
    # The other stacks a job's `BACKEND@STACK` labels train on (harness/stacks.py: `--stack NAME=REQ`): per name,
    # its requirements, its interpreter, what it resolved to and what moved from the running stack.
    stacks: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "backends", tuple(self.backends))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        check(self.backends and all(isinstance(name, str) and name for name in self.backends)
              and len(set(self.backends)) == len(self.backends),
              "backends", self.backends, "a non-empty tuple of distinct backend names")
        check(isinstance(self.config, ExperimentConfig), "config", self.config, "an ExperimentConfig")
        check(self.seeds and all(isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0
                                 for seed in self.seeds) and len(set(self.seeds)) == len(self.seeds),
              "seeds", self.seeds, "a non-empty tuple of distinct integers >= 0")
        check(self.device in DEVICES, "device", self.device, f"one of {', '.join(DEVICES)}")
        check(is_positive_int(self.devices), "devices", self.devices, "an integer >= 1")
        check(is_positive_int(self.rounds), "rounds", self.rounds, "an integer >= 1")
        check(isinstance(self.timing_rounds, int) and not isinstance(self.timing_rounds, bool)
              and self.timing_rounds >= 0, "timing_rounds", self.timing_rounds, "an integer >= 0")
        check(isinstance(self.timing_only, bool), "timing_only", self.timing_only, "true or false")
        check(not (self.timing_rounds and self.profile), "timing_rounds", self.timing_rounds,
              "0 with --profile (a profiled run is left out of speed comparisons, so timing rounds would measure "
              "nothing); add --timing-rounds 0")
        check(self.config.batch_size % self.devices == 0, "devices", self.devices,
              f"a divisor of --batch-size {self.config.batch_size} (the global batch is split evenly over the "
              "devices); choose a batch size divisible by it")
        last_batch = train_sample_count(self.config) % self.config.batch_size
        check(last_batch % self.devices == 0, "devices", self.devices,
              f"a divisor of the epoch's last batch too ({last_batch} samples: {train_sample_count(self.config)} "
              f"training samples in batches of {self.config.batch_size}); change --train-limit or --batch-size")
        check(is_finite_number(self.target_accuracy) and 0 < self.target_accuracy <= 1,
              "target_accuracy", self.target_accuracy, "a number in (0, 1]")
        check(self.data_dir is None or isinstance(self.data_dir, str), "data_dir", self.data_dir,
              "None or a folder path")
        check(self.precision in PRECISIONS, "precision", self.precision, f"one of {', '.join(PRECISIONS)}")
        check(isinstance(self.profile, bool), "profile", self.profile, "true or false")
        check(isinstance(self.step_times, bool), "step_times", self.step_times, "true or false")
        check(self.compile_cache is None or (isinstance(self.compile_cache, str) and self.compile_cache),
              "compile_cache", self.compile_cache, "None or a folder path")
        check(self.xla_flags is None or (isinstance(self.xla_flags, str) and all(
            flag.startswith("--xla_") for flag in self.xla_flags.split())), "xla_flags", self.xla_flags,
            "XLA flags separated by spaces, each starting with --xla_ (or '' for XLA's defaults)")
        check(isinstance(self.stacks, dict) and all(
            label.rpartition("@")[2] in (*self.stacks, CURRENT_STACK) for label in self.backends if "@" in label),
            "stacks", self.stacks, "an entry for every stack a BACKEND@STACK label names")
        check(not self.profile or self.config.epochs >= 2, "profile", self.profile,
              "--epochs >= 2 with --profile: the trace is taken after the first, compiling epoch")

    @property
    def backend(self) -> str:
        """The one backend of a worker's job."""
        if len(self.backends) != 1:
            raise ConfigError(f"a worker trains one backend, this job has {list(self.backends)}", "backends")
        return self.backends[0]

    def for_backend(self, backend: str, seeds: tuple[int, ...], timing_only: bool = False) -> Job:
        """The part of this job one worker process does: one backend, some of the seeds, one round (a full one, or
        with `timing_only` a timing round's)."""
        return dataclasses.replace(self, backends=(backend,), seeds=tuple(seeds), rounds=1, timing_rounds=0,
                                   timing_only=timing_only)

    def replace(self, **changes) -> Job:
        """A copy with some fields changed (validated like a new job)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain-JSON form: for results.json and for the worker's job file."""
        return {"backends": list(self.backends), "config": self.config.to_dict(), "seeds": list(self.seeds),
                "device": self.device, "devices": self.devices, "rounds": self.rounds,
                "timing_rounds": self.timing_rounds, "timing_only": self.timing_only, "target_accuracy": self.target_accuracy,
                "data_dir": self.data_dir,
                "precision": self.precision, "profile": self.profile, "step_times": self.step_times,
                "xla_flags": self.xla_flags, "compile_cache": self.compile_cache,
                **({"stacks": self.stacks} if self.stacks else {})}

    @classmethod
    def from_dict(cls, data: dict) -> Job:
        """Inverse of `to_dict`, validated; unknown keys are an error."""
        data = dict(known_fields(cls, data, "job"))
        data.setdefault("rounds", 1)  # written before rounds existed: every backend ran once
        data["config"] = ExperimentConfig.from_dict(data.get("config", {}))
        return cls(**data)
