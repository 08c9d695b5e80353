"""Train and evaluate one job (one backend, its seeds), measuring as it goes. Runs inside a worker process.

Every epoch is timed here, the same way for every backend: the clock covers the whole
`trainer.train_epoch` call, host-side preparation of the epoch's batches included (gathering rows,
one-hot labels, uploads), because a user of that framework pays for it too. Backends only report
when each step finished, which only they can see.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from backends.base import EpochLog
from backends.frameworks import current_settings, profiling_framework
from backends.registry import backend_spec, create_trainer, load_backend
from benchmarks.harness.costs import StartupClock, peak_rss_mib, rss_mib
from common.data import epoch_batches, make_splits
from common.flops import gflops_per_s
from common.job import Job
from common.mnist import NUM_CLASSES, load_mnist
from common.results import RunResult
from common.workloads import initial_weights, training_flops_per_sample

# Adam's normalized steps keep a blown-up model's loss finite (huge logits, not NaN), so a run also
# counts as diverged when an epoch's loss is 100x that of guessing (ln 10 ~ 2.3): no sane run gets there.
DIVERGED_LOSS = 100 * math.log(NUM_CLASSES)

PROFILE_STEPS = 10  # steady-state steps a --profile trace covers (a fused epoch: the whole epoch call)

# on_event(kind, payload): "step" after each observed step, "epoch" after each validation.
EventCallback = Callable[[str, dict], None]


@dataclasses.dataclass
class TimedEpoch:
    """One seed's epoch and the clock readings around the call that trained it."""

    log: EpochLog
    start_s: float
    end_s: float

    @property
    def seconds(self) -> float:
        """Wall-clock time of the whole epoch call."""
        return self.end_s - self.start_s

    @property
    def step_s(self) -> np.ndarray:
        """Seconds per step, the first measured from the epoch's start; evenly shared without a per-step clock."""
        steps = len(self.log.losses)
        if self.log.step_end_s is None:
            return np.full(steps, self.seconds / steps)
        return np.diff(np.concatenate([[self.start_s], self.log.step_end_s]))


class Trace:
    """The framework's profiler around a stretch of training; stop() is safe to call when not running."""

    def __init__(self, frameworks: tuple[str, ...]):
        self.framework, self.directory, self.running = profiling_framework(frameworks), None, False

    def start(self, directory: Path) -> None:
        """Start tracing into `directory`."""
        directory.mkdir(parents=True, exist_ok=True)
        self.framework.start_trace(directory)
        self.directory, self.running = directory, True

    def stop(self) -> None:
        """Stop tracing, if it runs."""
        if self.running:
            self.running = False
            self.framework.stop_trace()


class RunStopped(Exception):
    """Training ended early, by Ctrl-C or an error; carries the runs with every epoch they completed."""

    def __init__(self, runs: list[RunResult], interrupted: bool):
        super().__init__(runs[0].error if runs else "stopped")
        self.runs, self.interrupted = runs, interrupted


def train_and_evaluate(job: Job, on_event: EventCallback | None = None, entered_at: float | None = None,
                       profile_dir: Path | None = None) -> list[RunResult]:
    """Whole runs of `job.backend`, one per seed: data, shared weights, epochs with validation, test, timing.

    `entered_at` (time.monotonic()) is when the worker's own code started: start-up phases count from
    there (and from the parent's spawn time, when it passed one). With `job.profile`, the framework's
    profiler traces the first PROFILE_STEPS steps of the second epoch into `profile_dir`. Raises
    RunStopped, with the completed epochs kept, when interrupted or when training fails.
    """
    emit = on_event or (lambda kind, payload: None)
    startup = StartupClock(entered_at if entered_at is not None else time.monotonic())
    total_start = time.perf_counter()
    config = job.config
    load_backend(job)  # imports the framework
    startup.lap("framework_import_s")
    splits = make_splits(load_mnist(job.data_dir, progress=False), config)
    startup.lap("data_load_s")
    trainer = create_trainer(job, {seed: initial_weights(config, seed) for seed in job.seeds})
    startup.lap("model_build_s")
    settings = current_settings()
    results = [RunResult(backend=job.backend, seed=seed, device=job.device, devices=job.devices, device_name=trainer.device_name(),
                         versions=trainer.versions(), settings=settings) for seed in job.seeds]
    epochs: list[list[TimedEpoch]] = [[] for _ in job.seeds]
    time_to_target: list[float | None] = [None] * len(job.seeds)

    def finish():
        for index, result in enumerate(results):
            result.timing = {**result.timing, **summarize_timing(
                epochs[index], len(splits.x_train), time.perf_counter() - total_start, time_to_target[index])}
            if result.timing["epoch_s_median"]:
                # With K seeds in one program the clock is shared: the epoch time is K seeds' worth of work.
                result.timing["gflops_per_s"] = gflops_per_s(
                    training_flops_per_sample(config) * len(splits.x_train) * len(job.seeds),
                    result.timing["epoch_s_median"])
            result.timing.update(seeds_in_program=len(job.seeds), train_samples=len(splits.x_train))
            result.step_ms = [round(ms, 4) for ms in steady_step_seconds(epochs[index]) * 1e3]
            # float32 is what the backends computed; 7 significant digits keep results.json small.
            result.step_losses = [float(f"{loss:.7g}") for epoch in epochs[index] for loss in epoch.log.losses]
            if trace.directory is not None:
                result.timing["profiled_epoch"] = 2  # slower than unprofiled ones: no speed comparison
                result.costs["profile_dir"] = str(trace.directory)
            result.costs.update(startup.summary(), rss_end_of_training_mib=rss_at_training_end,
                                peak_rss_mib=peak_rss_mib(), device_memory=trainer.device_memory(),
                                first_step_is_whole_call=first_step_is_whole_call)

    rss_at_training_end, first_step_is_whole_call = None, None
    trace = Trace(backend_spec(job.backend).frameworks)
    try:
        train_start = time.perf_counter()
        for epoch in range(config.epochs):
            batches = [epoch_batches(len(splits.x_train), config.batch_size, seed, epoch) for seed in job.seeds]

            def on_step(step, loss, accuracy, epoch=epoch, steps=len(batches[0])):
                emit("step", dict(epoch=epoch + 1, step=step + 1, steps=steps, loss=loss, accuracy=accuracy))
                if trace.running and step + 1 >= PROFILE_STEPS:
                    trace.stop()

            if job.profile and profile_dir is not None and epoch == 1:
                trace.start(profile_dir)  # steady state: the first epoch compiled everything
            start = time.perf_counter()
            logs = trainer.train_epoch(splits.x_train, splits.y_train, batches, on_step)
            end = time.perf_counter()
            trace.stop()  # a backend that reports once per epoch (a fused scan) is traced for the whole call
            if epoch == 0:
                # Trace, compile and run of the first step; a backend without a per-step clock (a fused
                # epoch) reports its whole first call.
                first_step_is_whole_call = logs[0].step_end_s is None
                startup.phases["first_step_s"] = (end if first_step_is_whole_call else logs[0].step_end_s[0]) - start
            for index, (result, log) in enumerate(zip(results, logs)):
                if result.status != "ok":
                    continue  # a diverged seed of a vmapped program rides along, unrecorded
                epochs[index].append(TimedEpoch(log, start, end))
                val_start = time.perf_counter()
                val_loss, val_accuracy = (trainer.seed_model(index).evaluate(splits.x_val, splits.y_val)
                                          if len(splits.x_val) else (math.nan, math.nan))
                val_end = time.perf_counter()
                entry = dict(epoch=epoch + 1, loss=log.loss, accuracy=log.accuracy, val_loss=val_loss,
                             val_accuracy=val_accuracy, epoch_s=end - start, val_s=val_end - val_start)
                result.history.append(entry)
                emit("epoch", {**entry, "seed": job.seeds[index], "epochs": config.epochs})
                if not np.all(np.isfinite(log.losses)) or log.loss > DIVERGED_LOSS:
                    result.status = "diverged"
                    result.error = (f"training loss {log.loss:.4g} in epoch {epoch + 1} is non-finite or above "
                                    f"{DIVERGED_LOSS:.0f} (learning_rate={config.learning_rate})")
                elif time_to_target[index] is None and val_accuracy >= job.target_accuracy:
                    time_to_target[index] = val_end - train_start
            if all(result.status != "ok" for result in results):
                break
        rss_at_training_end = rss_mib()
        for index, result in enumerate(results):
            if result.status == "ok":
                test_start = time.perf_counter()
                model = trainer.seed_model(index)
                result.test = dict(zip(("loss", "accuracy"), model.evaluate(splits.x_test, splits.y_test)))
                predictions = model.predict(splits.x_test).argmax(axis=1)
                result.timing["test_s"] = time.perf_counter() - test_start
                result.test_predictions = predictions.astype(int).tolist()
                result.confusion = confusion_matrix(splits.y_test, predictions).tolist()
    except KeyboardInterrupt:
        trace.stop()
        stop(results, "interrupted", "interrupted by the user (Ctrl-C)")
        finish()
        raise RunStopped(results, interrupted=True) from None
    except Exception as error:
        trace.stop()
        stop(results, "failed", f"{type(error).__name__}: {error}".strip().splitlines()[0])
        finish()
        raise RunStopped(results, interrupted=False) from error
    finish()
    return results


def stop(results: list[RunResult], status: str, error: str) -> None:
    """Mark every run that was still going as stopped, keeping what it recorded."""
    for result in results:
        if result.status == "ok":
            result.status, result.error = status, error


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Counts with true classes as rows and predicted classes as columns."""
    return np.bincount(labels * NUM_CLASSES + predictions, minlength=NUM_CLASSES ** 2).reshape(NUM_CLASSES, -1)


def steady_step_seconds(epochs: list[TimedEpoch]) -> np.ndarray:
    """Step times after warm-up: every epoch but the first, or the first without its compiling step."""
    if len(epochs) >= 2:
        return np.concatenate([epoch.step_s for epoch in epochs[1:]])
    return epochs[0].step_s[1:] if epochs else np.array([])


def summarize_timing(epochs: list[TimedEpoch], train_samples: int, total_s: float,
                     time_to_target: float | None) -> dict:
    """The timing block of results.json: compile separate from steady state, units in the key names."""
    steps = steady_step_seconds(epochs)
    epoch_s = [epoch.seconds for epoch in epochs[1:]] or [epoch.seconds for epoch in epochs]
    epoch_s_median = float(np.median(epoch_s)) if epoch_s else None
    if len(epochs) >= 2:
        # What the first epoch cost beyond a steady one: tracing, compilation, first-touch allocation.
        # Measured per epoch, so it is the same definition for per-step and whole-epoch backends.
        compile_s = max(0.0, epochs[0].seconds - epoch_s_median)
    else:
        compile_s = float(epochs[0].step_s[0] - np.median(epochs[0].step_s)) if epochs else None
    return dict(
        compile_s=compile_s,
        warmup_epoch_s=epochs[0].seconds if epochs else None,
        epoch_s_median=epoch_s_median,
        step_ms_median=float(np.median(steps) * 1e3) if len(steps) else None,
        step_ms_p90=float(np.percentile(steps, 90) * 1e3) if len(steps) else None,
        samples_per_s=train_samples / epoch_s_median if epoch_s_median else None,
        total_s=total_s,
        time_to_target_s=time_to_target,
        steady_epochs=max(len(epochs) - 1, 0) if len(epochs) >= 2 else len(epochs),
    )
