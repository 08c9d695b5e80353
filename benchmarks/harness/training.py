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
from benchmarks.measure.stats import steady_state_start
from benchmarks.harness.children import stop_exit_status, stop_reason
from benchmarks.harness.costs import StartupClock, peak_rss_mib, rss_mib
from common.data import epoch_batches, make_splits
from common.errors import EXIT_FAILED
from common.job import TIMING_EPOCHS, TIMING_WARMUP_EPOCHS, Job
from common.mnist import NUM_CLASSES, load_mnist
from common.results import PROGRAM_FILE, RunResult
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
    def step_s(self) -> np.ndarray | None:
        """Seconds per step, the first measured from the epoch's start; None without a per-step clock."""
        if self.log.step_end_s is None:
            return None
        return np.diff(np.concatenate([[self.start_s], self.log.step_end_s]))

    @property
    def mean_step_s(self) -> float:
        """The epoch call's time over its steps."""
        return self.seconds / len(self.log.losses)


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
    """Training ended early, by Ctrl-C, SIGTERM or an error; carries the runs with every epoch they completed and the
    exit status the worker ends with."""

    def __init__(self, runs: list[RunResult], interrupted: bool, exit_code: int):
        super().__init__(runs[0].error if runs else "stopped")
        self.runs, self.interrupted, self.exit_code = runs, interrupted, exit_code


def train_and_evaluate(job: Job, on_event: EventCallback | None = None, entered_at: float | None = None,
                       profile_dir: Path | None = None) -> list[RunResult]:
    """Whole runs of `job.backend`, one per seed: data, shared weights, epochs with validation, test, timing.

    `entered_at` (time.monotonic()) is when the worker's own code started: start-up phases count from
    there (and from the parent's spawn time, when it passed one). With `job.profile`, the framework's
    profiler traces the first PROFILE_STEPS steps of the second epoch into `profile_dir`. Raises
    RunStopped, with the completed epochs kept, when interrupted or when training fails.
    """
    session = TrainingSession(job, on_event, entered_at, profile_dir)
    try:
        session.train()
        if not job.timing_only:  # a timing round's process only times its epochs
            session.test()
            session.record_routes()
    except KeyboardInterrupt as stopped:
        session.trace.stop()
        stop(session.results, "interrupted", stop_reason(stopped))
        session.finish()
        raise RunStopped(session.results, interrupted=True, exit_code=stop_exit_status(stopped)) from None
    except Exception as error:
        session.trace.stop()
        stop(session.results, "failed", f"{type(error).__name__}: {error}".strip().splitlines()[0])
        session.finish()
        raise RunStopped(session.results, interrupted=False, exit_code=EXIT_FAILED) from error
    session.finish()
    return session.results


class TrainingSession:
    """One worker's training of its job's seeds: built (framework, data, model: the start-up phases) when made,
    then trained epoch by epoch, tested, and summed up into its RunResults."""

    def __init__(self, job: Job, on_event: EventCallback | None, entered_at: float | None, profile_dir: Path | None):
        self.job, self.config, self.profile_dir = job, job.config, profile_dir
        self.emit = on_event or (lambda kind, payload: None)
        self.startup = StartupClock(entered_at if entered_at is not None else time.monotonic())
        self.total_start = time.perf_counter()
        load_backend(job)  # imports the framework
        self.startup.lap("framework_import_s")
        self.splits = make_splits(load_mnist(job.data_dir, progress=False), self.config)
        self.startup.lap("data_load_s")
        self.trainer = create_trainer(job, {seed: initial_weights(self.config, seed) for seed in job.seeds})
        self.startup.lap("model_build_s")
        settings = current_settings()
        self.results = [RunResult(backend=job.backend, seed=seed, device=job.device, devices=job.devices,
                                  device_name=self.trainer.device_name(), versions=self.trainer.versions(),
                                  settings=settings, timing_only=job.timing_only) for seed in job.seeds]
        self.epochs: list[list[TimedEpoch]] = [[] for _ in job.seeds]
        self.time_to_target: list[float | None] = [None] * len(job.seeds)
        self.rss_at_training_end, self.first_step_is_whole_call = None, None
        self.traced_steps = None  # steps of epoch 2 the trace covers, when progress stopped it (else the whole epoch)
        self.trace = Trace(backend_spec(job.backend).frameworks)

    @property
    def epoch_count(self) -> int:
        """Epochs this process trains: the config's, or a timing round's warm-up and timed epochs."""
        return TIMING_WARMUP_EPOCHS + TIMING_EPOCHS if self.job.timing_only else self.config.epochs

    def train(self) -> None:
        """Every epoch, each followed by validation, until the last or until every seed has diverged."""
        train_start = time.perf_counter()
        for epoch in range(self.epoch_count):
            self.train_epoch(epoch, train_start)
            if all(result.status != "ok" for result in self.results):
                break
        self.rss_at_training_end = rss_mib()

    def train_epoch(self, epoch: int, train_start: float) -> None:
        """One epoch of every seed, timed around the one trainer call, then each seed's validation."""
        x_train = self.splits.x_train
        batches = [epoch_batches(len(x_train), self.config.batch_size, seed, epoch) for seed in self.job.seeds]

        def on_step(step, loss, accuracy, steps=len(batches[0])):
            self.emit("step", dict(epoch=epoch + 1, step=step + 1, steps=steps, loss=loss, accuracy=accuracy))
            if self.trace.running and step + 1 >= PROFILE_STEPS:
                self.trace.stop()
                self.traced_steps = step + 1  # progress arrives every 0.25 s: the trace may hold more steps

        if self.job.profile and self.profile_dir is not None and epoch == 1:
            self.trace.start(self.profile_dir)  # steady state: the first epoch compiled everything
        start = time.perf_counter()
        logs = self.trainer.train_epoch(x_train, self.splits.y_train, batches, on_step, self.job.step_times)
        end = time.perf_counter()
        self.trace.stop()  # a backend that reports once per epoch (a fused scan) is traced for the whole call
        if epoch == 0:
            # Trace, compile and run of the first step; a backend that runs the epoch as one program (a fused
            # epoch) reports its whole first call.
            self.first_step_is_whole_call = logs[0].first_step_end_s is None
            first_end = end if self.first_step_is_whole_call else logs[0].first_step_end_s
            self.startup.phases["first_step_s"] = first_end - start
        for index, (result, log) in enumerate(zip(self.results, logs)):
            if result.status == "ok":  # a diverged seed of a vmapped program rides along, unrecorded
                self.validate(index, TimedEpoch(log, start, end), epoch, train_start)

    def validate(self, index: int, timed: TimedEpoch, epoch: int, train_start: float) -> None:
        """Seed `index`'s epoch into its history: validation, divergence, time to target."""
        result, log, config = self.results[index], timed.log, self.config
        self.epochs[index].append(timed)
        val_start = time.perf_counter()
        validating = len(self.splits.x_val) and not self.job.timing_only
        val_loss, val_accuracy = (self.trainer.seed_model(index).evaluate(self.splits.x_val, self.splits.y_val)
                                  if validating else (math.nan, math.nan))
        val_end = time.perf_counter()
        entry = dict(epoch=epoch + 1, loss=log.loss, accuracy=log.accuracy, val_loss=val_loss,
                     val_accuracy=val_accuracy, epoch_s=timed.seconds, val_s=val_end - val_start)
        result.history.append(entry)
        self.emit("epoch", {**entry, "seed": self.job.seeds[index], "epochs": self.epoch_count})
        if not np.all(np.isfinite(log.losses)) or log.loss > DIVERGED_LOSS:
            result.status = "diverged"
            result.error = (f"training loss {log.loss:.4g} in epoch {epoch + 1} is non-finite or above "
                            f"{DIVERGED_LOSS:.0f} (learning_rate={config.learning_rate})")
        elif self.time_to_target[index] is None and validating and val_accuracy >= self.job.target_accuracy:
            self.time_to_target[index] = val_end - train_start

    def test(self) -> None:
        """Test-set loss, accuracy, predictions and confusion matrix of every seed still ok."""
        for index, result in enumerate(self.results):
            if result.status == "ok":
                test_start = time.perf_counter()
                model = self.trainer.seed_model(index)
                result.test = dict(zip(("loss", "accuracy"), model.evaluate(self.splits.x_test, self.splits.y_test)))
                predictions = model.predict(self.splits.x_test).argmax(axis=1)
                result.timing["test_s"] = time.perf_counter() - test_start
                result.test_predictions = predictions.astype(int).tolist()
                result.confusion = confusion_matrix(self.splits.y_test, predictions).tolist()

    def record_routes(self) -> None:
        """Each run's kernel routes as the trainer reads them from its compiled program, after every clock stopped."""
        try:
            routes = self.trainer.kernel_routes()
        except Exception as error:  # a route we cannot read never costs the run its results
            routes = {"note": f"could not be read: {type(error).__name__}: {error}".splitlines()[0]}
        routes.setdefault("xla_flags", self.results[0].settings.get("XLA_FLAGS", ""))
        hlo = routes.pop("hlo", None)
        if hlo and self.trace.directory is not None:
            # Beside the trace: `mnist-bench breakdown` reads what each traced op was from the program's text.
            (self.trace.directory / PROGRAM_FILE).write_text(hlo)
        for result in self.results:
            result.kernel_routes = routes

    def finish(self) -> None:
        """Every run's timing, per-step record and costs, from whatever epochs it completed."""
        train_samples = len(self.splits.x_train)
        for index, result in enumerate(self.results):
            result.timing = {**result.timing, **summarize_timing(
                self.epochs[index], train_samples, time.perf_counter() - self.total_start, self.time_to_target[index],
                TIMING_WARMUP_EPOCHS if self.job.timing_only else None)}
            if result.timing["epoch_s_median"]:
                # With K seeds in one program the clock is shared: the epoch time is K seeds' worth of work.
                flops = training_flops_per_sample(self.config) * train_samples * len(self.job.seeds)
                result.timing["gflops_per_s"] = flops / result.timing["epoch_s_median"] / 1e9
            result.timing.update(seeds_in_program=len(self.job.seeds), train_samples=train_samples)
            result.step_ms = [round(ms, 4) for ms in steady_step_seconds(self.epochs[index], result.timing.get("steady_from_epoch")) * 1e3]
            # float32 is what the backends computed; 7 significant digits keep results.json small.
            result.step_losses = [float(f"{loss:.7g}") for epoch in self.epochs[index] for loss in epoch.log.losses]
            if self.trace.directory is not None:
                result.timing["profiled_epoch"] = 2  # slower than unprofiled ones: no speed comparison
                result.costs["profile_dir"] = str(self.trace.directory)
                # Steps the trace covers: the first PROFILE_STEPS of epoch 2, or a fused backend's whole epoch.
                result.costs["profile_steps"] = self.traced_steps or (
                    len(self.epochs[index][1].log.losses) if len(self.epochs[index]) > 1 else None)
            result.costs.update(self.startup.summary(), rss_end_of_training_mib=self.rss_at_training_end,
                                peak_rss_mib=peak_rss_mib(), device_memory=self.trainer.device_memory(),
                                first_step_is_whole_call=self.first_step_is_whole_call)


def stop(results: list[RunResult], status: str, error: str) -> None:
    """Mark every run that was still going as stopped, keeping what it recorded."""
    for result in results:
        if result.status == "ok":
            result.status, result.error = status, error


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Counts with true classes as rows and predicted classes as columns."""
    return np.bincount(labels * NUM_CLASSES + predictions, minlength=NUM_CLASSES ** 2).reshape(NUM_CLASSES, -1)


def steady_start(epochs: list[TimedEpoch]) -> tuple[int, bool]:
    """(index of the first steady epoch, whether steady state was found in the data).

    A changepoint on the epoch times (`stats.steady_state_start`), never before the second epoch (the first
    compiles); where the times never settle (or there are too few epochs to tell), every epoch after the first,
    and False.
    """
    start = steady_state_start([epoch.seconds for epoch in epochs])
    if start is None:
        return min(1, max(len(epochs) - 1, 0)), False
    return max(1, start), True


def steady_step_seconds(epochs: list[TimedEpoch], start: int | None = None) -> np.ndarray:
    """Clocked step times in steady state (the epochs from `start`, found from the data when not given, or the
    first epoch without its compiling step); empty when the steps were not clocked one by one (no --step-times)."""
    if not epochs or epochs[0].step_s is None:
        return np.array([])
    if len(epochs) >= 2:
        start = steady_start(epochs)[0] if start is None else start
        return np.concatenate([epoch.step_s for epoch in epochs[start:]])
    return epochs[0].step_s[1:]


def summarize_timing(epochs: list[TimedEpoch], train_samples: int, total_s: float,
                     time_to_target: float | None, steady_from: int | None = None) -> dict:
    """The timing block of results.json: compile separate from steady state, units in the key names. `steady_from`:
    where steady state starts when it is known beforehand (a timing process' timed epochs), else found from the data."""
    start, found = (steady_from, True) if steady_from is not None and len(epochs) > steady_from else steady_start(epochs)
    steps = steady_step_seconds(epochs, start)
    steady = epochs[start:] or epochs
    epoch_s = [epoch.seconds for epoch in steady]
    epoch_s_median = float(np.median(epoch_s)) if epoch_s else None
    if len(epochs) >= 2:
        # What the first epoch cost beyond a steady one: tracing, compilation, first-touch allocation.
        # Measured per epoch, so it is the same definition for per-step and whole-epoch backends.
        compile_s = max(0.0, epochs[0].seconds - epoch_s_median)
    elif epochs and epochs[0].step_s is not None:
        compile_s = float(epochs[0].step_s[0] - np.median(epochs[0].step_s))
    else:
        compile_s = None  # one epoch without a per-step clock: nothing steady to set its first step against
    return dict(
        compile_s=compile_s,
        warmup_epoch_s=epochs[0].seconds if epochs else None,
        epoch_s_median=epoch_s_median,
        # Without a per-step clock: the steady epochs' median time per step (no distribution, no p90).
        step_ms_median=(float(np.median(steps) * 1e3) if len(steps) else
                        float(np.median([epoch.mean_step_s for epoch in steady]) * 1e3) if steady else None),
        step_ms_p90=float(np.percentile(steps, 90) * 1e3) if len(steps) else None,
        steps_clocked=bool(len(steps)),
        samples_per_s=train_samples / epoch_s_median if epoch_s_median else None,
        total_s=total_s,
        time_to_target_s=time_to_target,
        steady_from_epoch=start if epochs else None,  # 0-based index into the history
        steady_state_found=found,
        steady_epochs=len(steady),
    )
