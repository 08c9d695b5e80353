"""The one interface every backend implements, and the bookkeeping they share."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Callable, Protocol

import numpy as np

from common.config import ExperimentConfig
from common.weights import Weights

DEVICES = ("cpu", "gpu")
StepCallback = Callable[[int, float, float], None]


class BackendError(RuntimeError):
    """A backend cannot be created as asked (unknown name, device missing, wrong process)."""


@dataclasses.dataclass
class EpochLog:
    """What one training epoch produced, as NumPy arrays (never framework tensors)."""

    losses: np.ndarray  # per-step training loss (mean over the batch, before the update)
    accuracies: np.ndarray  # per-step training accuracy
    batch_sizes: np.ndarray  # samples in each step
    # perf_counter() after each step, taken once the device had finished it; None when the
    # backend runs the whole epoch as one program and has no per-step clock.
    step_end_s: np.ndarray | None
    start_s: float
    end_s: float

    @property
    def loss(self) -> float:
        """Epoch loss as `model.fit` reports it: the sample-weighted mean of the step losses."""
        return float(np.average(self.losses, weights=self.batch_sizes))

    @property
    def accuracy(self) -> float:
        """Epoch accuracy as `model.fit` reports it: correct predictions over samples seen."""
        return float(np.average(self.accuracies, weights=self.batch_sizes))

    @property
    def step_s(self) -> np.ndarray:
        """Seconds per step (the first measured from the epoch start)."""
        if self.step_end_s is None:
            return np.full(len(self.losses), (self.end_s - self.start_s) / len(self.losses))
        return np.diff(np.concatenate([[self.start_s], self.step_end_s]))


class Trainer(Protocol):
    """One model, its optimizer state and its device, behind framework-free methods."""

    name: str

    def train_epoch(self, x: np.ndarray, y: np.ndarray, batches: Sequence[np.ndarray],
                    on_step: StepCallback | None = None) -> EpochLog:
        """Train on x[b], y[b] for each index array b in order (labels are integers 0..9).

        `on_step(step, loss, accuracy)` is called after each step that the backend observes, with the
        epoch's running (sample-weighted) means so far, as `model.fit`'s progress bar shows them.
        """
        ...

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """Mean cross-entropy loss and accuracy over all of x, y (no update)."""
        ...

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Softmax probabilities (N, 10) as float32."""
        ...

    def get_weights(self) -> Weights:
        """Current weights in the portable format of `common.weights`."""
        ...

    def set_weights(self, weights: Weights) -> None:
        """Replace the weights (optimizer state is kept)."""
        ...

    def device_name(self) -> str:
        """The device the model lives on, in words."""
        ...

    def versions(self) -> dict[str, str]:
        """Versions of the frameworks this backend uses."""
        ...


class TrainerFactory(Protocol):
    """What a registry entry resolves to: build a trainer from the config and initial weights."""

    def __call__(self, config: ExperimentConfig, weights: Weights, device: str = "cpu") -> Trainer:
        ...


def check_batches(batches: Sequence[np.ndarray], batch_size: int) -> None:
    """Every batch but the last must be full: the shared partial-batch policy."""
    sizes = [len(batch) for batch in batches]
    if any(size != batch_size for size in sizes[:-1]) or not 0 < sizes[-1] <= batch_size:
        raise ValueError(f"batches must all hold {batch_size} samples except a smaller last one; got {sizes[:5]}...")
