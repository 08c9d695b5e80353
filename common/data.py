"""Preprocessing, the train/validation/test split and the shared batch order (NumPy only)."""

from __future__ import annotations

import dataclasses
import math

from typing import TYPE_CHECKING

import numpy as np

from common.mnist import NUM_CLASSES, TRAIN_COUNT, MnistArrays
from common.seeds import BATCH_ORDER_STREAM

if TYPE_CHECKING:
    from common.config import ExperimentConfig


def to_features(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, 28, 28) -> float32 (N, 784) scaled to [0, 1]."""
    return (np.asarray(images, dtype=np.float32).reshape(len(images), -1) / np.float32(255.0))


def one_hot(labels: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Integer labels (N,) -> float32 one-hot rows (N, num_classes)."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be in 0..{num_classes - 1}, found {labels.min()}..{labels.max()}")
    return np.eye(num_classes, dtype=np.float32)[labels]


def validation_start(num_samples: int, validation_split: float) -> int:
    """Index where validation begins: Keras' `floor(n * (1 - split))`, the tail of the unshuffled data."""
    return int(math.floor(num_samples * (1.0 - validation_split)))


def train_sample_count(config: ExperimentConfig) -> int:
    """Training samples per epoch under `config` (48,000 by default), without loading the data."""
    available = min(config.train_limit or TRAIN_COUNT, TRAIN_COUNT)
    return validation_start(available, config.validation_split)


@dataclasses.dataclass(frozen=True)
class Splits:
    """float32 features (N, 784) and int32 labels (N,) for train, validation and test."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def make_splits(mnist: MnistArrays, config: ExperimentConfig) -> Splits:
    """Split as `model.fit(validation_split=...)` does: validation is the last fraction, before any shuffle."""
    train_images = mnist.train_images[: config.train_limit]
    train_labels = mnist.train_labels[: config.train_limit]
    x = to_features(train_images)
    y = np.asarray(train_labels, dtype=np.int32)
    cut = validation_start(len(x), config.validation_split)
    if cut < 1:
        raise ValueError(f"validation_split={config.validation_split} leaves no training samples "
                         f"out of {len(x)}; lower it or raise train_limit")
    return Splits(
        x_train=x[:cut], y_train=y[:cut], x_val=x[cut:], y_val=y[cut:],
        x_test=to_features(mnist.test_images[: config.test_limit]),
        y_test=np.asarray(mnist.test_labels[: config.test_limit], dtype=np.int32),
    )


def steps_per_epoch(num_samples: int, batch_size: int) -> int:
    """Number of batches per epoch; the final partial batch is kept, as in `model.fit`."""
    return math.ceil(num_samples / batch_size)


def epoch_permutation(num_samples: int, seed: int, epoch: int) -> np.ndarray:
    """The sample order of one epoch: a deterministic function of (seed, epoch) only."""
    sequence = np.random.SeedSequence(seed, spawn_key=(BATCH_ORDER_STREAM, epoch))
    return np.random.default_rng(sequence).permutation(num_samples)


def epoch_batches(num_samples: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Index arrays of every batch of one epoch, in order; the last may be smaller than batch_size."""
    order = epoch_permutation(num_samples, seed, epoch)
    return [order[start:start + batch_size] for start in range(0, num_samples, batch_size)]
