"""Train and evaluate one backend for one seed, measuring as it goes. Runs inside a worker process."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence

import numpy as np

from backends.base import EpochLog, Trainer
from backends.registry import backend_spec, get_factory
from common.config import NUM_CLASSES, ExperimentConfig
from common.data import epoch_batches, make_splits
from common.flops import gflops_per_s, training_flops_per_sample
from common.mnist import load_mnist
from common.results import RunResult
from common.weights import init_weights

TARGET_ACCURACY = 0.97  # validation accuracy for time-to-accuracy (DAWNBench / MLPerf style)
# Adam's normalized steps keep a blown-up model's loss finite (huge logits, not NaN), so a run also
# counts as diverged when an epoch's loss is 100x that of guessing (ln 10 ~ 2.3): no sane run gets there.
DIVERGED_LOSS = 100 * math.log(NUM_CLASSES)

# on_event(kind, payload): "step" after each observed step, "epoch" after each validation.
EventCallback = Callable[[str, dict], None]


class SeedGroup:
    """The seeds one child trains: one ordinary trainer (a group of one) or a vmapped multi-seed trainer."""

    def __init__(self, backend: str, config: ExperimentConfig, seeds: Sequence[int], device: str):
        factory = get_factory(backend)
        self.multi_seed = backend_spec(backend).multi_seed
        if self.multi_seed:
            self.trainer = factory(config, [init_weights(config.layer_sizes, seed) for seed in seeds], device)
            self.members = [functools.partial(self.trainer.seed_trainer, index) for index in range(len(seeds))]
        else:
            if len(seeds) != 1:
                raise ValueError(f"backend {backend!r} trains one seed per process, got {tuple(seeds)}")
            self.trainer = factory(config.replace(seed=seeds[0]), init_weights(config.layer_sizes, seeds[0]), device)
            self.members = [lambda: self.trainer]

    def train_epoch(self, x, y, batches_per_seed, on_step) -> list[EpochLog]:
        """One epoch of every seed; one EpochLog per seed."""
        if self.multi_seed:
            return self.trainer.train_epoch(x, y, batches_per_seed, on_step)
        return [self.trainer.train_epoch(x, y, batches_per_seed[0], on_step)]

    def member(self, index: int) -> Trainer:
        """A trainer view of seed `index`, for evaluation and prediction."""
        return self.members[index]()


def train_and_evaluate(config: ExperimentConfig, backend: str, device: str = "cpu", data_dir: str | None = None,
                       on_event: EventCallback | None = None, target_accuracy: float = TARGET_ACCURACY,
                       seeds: Sequence[int] | None = None) -> list[RunResult]:
    """Whole runs: data, shared weights, `config.epochs` epochs with validation, test evaluation, timing.

    `seeds` defaults to (config.seed,); several seeds need a multi-seed backend (one program for all).
    """
    emit = on_event or (lambda kind, payload: None)
    seeds = tuple(seeds) if seeds is not None else (config.seed,)
    total_start = time.perf_counter()
    splits = make_splits(load_mnist(data_dir, progress=False), config)
    group = SeedGroup(backend, config, seeds, device)
    results = [RunResult(backend=backend, seed=seed, device=device, device_name=group.trainer.device_name(),
                         versions=group.trainer.versions()) for seed in seeds]
    logs: list[list[EpochLog]] = [[] for _ in seeds]
    time_to_target: list[float | None] = [None] * len(seeds)
    train_start = time.perf_counter()
    for epoch in range(config.epochs):
        batches = [epoch_batches(len(splits.x_train), config.batch_size, seed, epoch) for seed in seeds]

        def on_step(step, loss, accuracy, epoch=epoch, steps=len(batches[0])):
            emit("step", dict(epoch=epoch + 1, step=step + 1, steps=steps, loss=loss, accuracy=accuracy))

        epoch_logs = group.train_epoch(splits.x_train, splits.y_train, batches, on_step)
        for index, (result, log) in enumerate(zip(results, epoch_logs)):
            if result.status != "ok":
                continue  # a diverged seed of a vmapped group rides along, unrecorded
            logs[index].append(log)
            val_start = time.perf_counter()
            val_loss, val_accuracy = (group.member(index).evaluate(splits.x_val, splits.y_val)
                                      if len(splits.x_val) else (math.nan, math.nan))
            val_end = time.perf_counter()
            entry = dict(epoch=epoch + 1, loss=log.loss, accuracy=log.accuracy, val_loss=val_loss,
                         val_accuracy=val_accuracy, epoch_s=log.end_s - log.start_s, val_s=val_end - val_start)
            result.history.append(entry)
            emit("epoch", {**entry, "seed": seeds[index], "epochs": config.epochs})
            if not np.all(np.isfinite(log.losses)) or log.loss > DIVERGED_LOSS:
                result.status = "diverged"
                result.error = (f"training loss {log.loss:.4g} in epoch {epoch + 1} is non-finite or above "
                                f"{DIVERGED_LOSS:.0f} (learning_rate={config.learning_rate})")
            elif time_to_target[index] is None and val_accuracy >= target_accuracy:
                time_to_target[index] = val_end - train_start
        if all(result.status != "ok" for result in results):
            break
    for index, result in enumerate(results):
        test_s = None
        if result.status == "ok":
            test_start = time.perf_counter()
            member = group.member(index)
            result.test = dict(zip(("loss", "accuracy"), member.evaluate(splits.x_test, splits.y_test)))
            predictions = member.predict(splits.x_test).argmax(axis=1)
            test_s = time.perf_counter() - test_start
            result.test_predictions = predictions.astype(int).tolist()
            result.confusion = confusion_matrix(splits.y_test, predictions).tolist()
        result.timing = summarize_timing(logs[index], len(splits.x_train), total_start, time_to_target[index],
                                         target_accuracy)
        if result.timing["epoch_s_median"]:
            result.timing["gflops_per_s"] = gflops_per_s(
                training_flops_per_sample(config.layer_sizes) * len(splits.x_train) * len(seeds),
                result.timing["epoch_s_median"])
        # With K seeds in one program the clock is shared: the epoch time is K seeds' worth of work.
        result.timing.update(test_s=test_s, seeds_in_program=len(seeds))
        result.step_ms = [round(ms, 4) for ms in steady_step_seconds(logs[index]) * 1e3]
    return results


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Counts with true classes as rows and predicted classes as columns."""
    return np.bincount(labels * NUM_CLASSES + predictions, minlength=NUM_CLASSES ** 2).reshape(NUM_CLASSES, -1)


def steady_step_seconds(logs: list[EpochLog]) -> np.ndarray:
    """Step times after warm-up: every epoch but the first, or the first without its compiling step."""
    if len(logs) >= 2:
        return np.concatenate([log.step_s for log in logs[1:]])
    return logs[0].step_s[1:] if logs else np.array([])


def summarize_timing(logs: list[EpochLog], train_samples: int, total_start: float,
                     time_to_target: float | None, target_accuracy: float = TARGET_ACCURACY) -> dict:
    """The timing block of results.json: compile separate from steady state, units in the key names."""
    steps = steady_step_seconds(logs)
    epoch_s = [log.end_s - log.start_s for log in logs[1:]] or [log.end_s - log.start_s for log in logs]
    epoch_s_median = float(np.median(epoch_s)) if epoch_s else None
    if len(logs) >= 2:
        # What the first epoch cost beyond a steady one: tracing, compilation, first-touch allocation.
        # Measured per epoch, so it is the same definition for per-step and whole-epoch backends.
        compile_s = max(0.0, (logs[0].end_s - logs[0].start_s) - epoch_s_median)
    else:
        compile_s = float(logs[0].step_s[0] - np.median(logs[0].step_s)) if logs else None
    return dict(
        compile_s=compile_s,
        warmup_epoch_s=float(logs[0].end_s - logs[0].start_s) if logs else None,
        epoch_s_median=epoch_s_median,
        step_ms_median=float(np.median(steps) * 1e3) if len(steps) else None,
        step_ms_p90=float(np.percentile(steps, 90) * 1e3) if len(steps) else None,
        samples_per_s=train_samples / epoch_s_median if epoch_s_median else None,
        total_s=time.perf_counter() - total_start,
        time_to_target_s=time_to_target,
        target_accuracy=target_accuracy,
        steady_epochs=max(len(logs) - 1, 0) if len(logs) >= 2 else len(logs),
    )
