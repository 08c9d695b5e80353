"""Train and evaluate one backend for one seed, measuring as it goes. Runs inside a worker process."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from backends.base import EpochLog
from backends.registry import get_factory
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


class Diverged(RuntimeError):
    """Training produced a non-finite loss."""


def train_and_evaluate(config: ExperimentConfig, backend: str, device: str = "cpu", data_dir: str | None = None,
                       on_event: EventCallback | None = None,
                       target_accuracy: float = TARGET_ACCURACY) -> RunResult:
    """The whole run: data, shared weights, `config.epochs` epochs with validation, test evaluation, timing."""
    emit = on_event or (lambda kind, payload: None)
    total_start = time.perf_counter()
    splits = make_splits(load_mnist(data_dir, progress=False), config)
    trainer = get_factory(backend)(config, init_weights(config.layer_sizes, config.seed), device)
    result = RunResult(backend=backend, seed=config.seed, device=device, device_name=trainer.device_name(),
                       versions=trainer.versions())
    logs: list[EpochLog] = []
    time_to_target = None
    train_start = time.perf_counter()
    try:
        for epoch in range(config.epochs):
            batches = epoch_batches(len(splits.x_train), config.batch_size, config.seed, epoch)

            def on_step(step, loss, accuracy, epoch=epoch, steps=len(batches)):
                emit("step", dict(epoch=epoch + 1, step=step + 1, steps=steps, loss=loss, accuracy=accuracy))

            log = trainer.train_epoch(splits.x_train, splits.y_train, batches, on_step)
            logs.append(log)
            val_start = time.perf_counter()
            val_loss, val_accuracy = (trainer.evaluate(splits.x_val, splits.y_val) if len(splits.x_val)
                                      else (math.nan, math.nan))
            val_end = time.perf_counter()
            entry = dict(epoch=epoch + 1, loss=log.loss, accuracy=log.accuracy, val_loss=val_loss,
                         val_accuracy=val_accuracy, epoch_s=log.end_s - log.start_s, val_s=val_end - val_start)
            result.history.append(entry)
            emit("epoch", entry)
            if not np.all(np.isfinite(log.losses)) or log.loss > DIVERGED_LOSS:
                raise Diverged(f"training loss {log.loss:.4g} in epoch {epoch + 1} is non-finite or above "
                               f"{DIVERGED_LOSS:.0f} (learning_rate={config.learning_rate})")
            if time_to_target is None and val_accuracy >= target_accuracy:
                time_to_target = val_end - train_start
        test_start = time.perf_counter()
        result.test = dict(zip(("loss", "accuracy"), trainer.evaluate(splits.x_test, splits.y_test)))
        predictions = trainer.predict(splits.x_test).argmax(axis=1)
        test_s = time.perf_counter() - test_start
        result.test_predictions = predictions.astype(int).tolist()
        result.confusion = confusion_matrix(splits.y_test, predictions).tolist()
    except Diverged as error:
        result.status, result.error = "diverged", str(error)
        test_s = None
    result.timing = summarize_timing(logs, len(splits.x_train), total_start, time_to_target, target_accuracy)
    if result.timing["epoch_s_median"]:
        result.timing["gflops_per_s"] = gflops_per_s(
            training_flops_per_sample(config.layer_sizes) * len(splits.x_train), result.timing["epoch_s_median"])
    result.timing["test_s"] = test_s
    result.step_ms = [round(ms, 4) for ms in steady_step_seconds(logs) * 1e3]
    return result


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
