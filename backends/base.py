"""The one interface every backend implements, and the bookkeeping they share.

A trainer trains the models of one or more seeds (`seeds`): one epoch of all of them per
`train_epoch`, each seed on its own batch order, and `seed_model(i)` is an independent view of seed
i's model for evaluation, prediction and weights. Backends that train one model per process derive
from `SingleSeedTrainer`, which supplies that shape; `flax-vmap` trains several in one program. From
outside the two look the same.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Callable, Protocol

import numpy as np

from common.errors import MnistBenchError
from common.config import ExperimentConfig
from common.weights import Weights

StepCallback = Callable[[int, float, float], None]
# A framework family's way to build one model (backends/registry.py names one per model and family); what it
# takes and returns is the family's own: an NNX module class, a list of Keras layers, a TensorFlow function.
ModelBuilder = Callable[..., object]
# Rows per evaluation / prediction call in every backend, so inference is compared like for like.
INFERENCE_BATCH = 1000
# How often a loop without per-step syncs reads its metrics back for the progress bar; the worker's event
# stream shows a step at most every 0.25 s, so reading more often would only cost syncs.
PROGRESS_INTERVAL_S = 0.25


class BackendError(MnistBenchError, RuntimeError):
    """A backend cannot be created as asked (unknown name, device missing, wrong process)."""


@dataclasses.dataclass
class EpochLog:
    """What one training epoch of one seed produced, as NumPy arrays (never framework tensors).

    The epoch's clock is read by the caller (`benchmarks.harness.training`), the same way for every backend;
    a backend reports only what only it can see: when each step finished.
    """

    losses: np.ndarray  # per-step training loss (mean over the batch, before the update)
    accuracies: np.ndarray  # per-step training accuracy
    batch_sizes: np.ndarray  # samples in each step
    # perf_counter() after each step, taken once the device had finished it; None unless the epoch was
    # trained with time_steps (and never for a backend that runs the whole epoch as one program).
    step_end_s: np.ndarray | None = None
    # perf_counter() once the epoch's first step had finished (one wait per epoch, for the start-up table's
    # first step); None for a backend that runs the whole epoch as one program.
    first_step_end_s: float | None = None

    @property
    def loss(self) -> float:
        """Epoch loss as `model.fit` reports it: the sample-weighted mean of the step losses."""
        return float(np.average(self.losses, weights=self.batch_sizes))

    @property
    def accuracy(self) -> float:
        """Epoch accuracy as `model.fit` reports it: correct predictions over samples seen."""
        return float(np.average(self.accuracies, weights=self.batch_sizes))


class SeedModel(Protocol):
    """One seed's model inside a trainer, behind framework-free methods."""

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


class Trainer(Protocol):
    """The models of `seeds`, their optimizer states and their device."""

    seeds: tuple[int, ...]

    def train_epoch(self, x: np.ndarray, y: np.ndarray, batches: Sequence[Sequence[np.ndarray]],
                    on_step: StepCallback | None = None, time_steps: bool = False) -> list[EpochLog]:
        """Train each seed's model on x[b], y[b] for each index array b of its batch list, in order.

        `batches` holds one batch list per seed (labels are integers 0..9); one EpochLog per seed comes
        back. `on_step(step, loss, accuracy)` is called now and then with the first seed's running
        (sample-weighted) epoch means, as `model.fit`'s progress bar, without waiting for the device per step.
        `time_steps`: wait for every step and read the clock after it (EpochLog.step_end_s), which costs a
        host sync per step; backends whose epoch is one program have no per-step clock and ignore it.
        """
        ...

    def seed_model(self, index: int) -> SeedModel:
        """Seed `seeds[index]`'s model: a view that neither sees nor changes the other seeds' models."""
        ...

    def device_name(self) -> str:
        """The device the models live on, in words."""
        ...

    def versions(self) -> dict[str, str]:
        """Versions of the frameworks this backend uses."""
        ...

    def device_memory(self) -> dict | None:
        """{"peak_bytes", "in_use_bytes"} of the device's allocator; None where it has none to ask (CPU)."""
        ...

    def kernel_routes(self) -> dict:
        """Which library runs each class of op of the training program it compiled (backends/routes.py), once it
        has trained an epoch: {"source", "platform", "routes", and "hlo": the program's text where XLA compiled it};
        {"note": why not} where it cannot be read."""
        ...


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a trainer's models live: `devices` devices of kind `device` ("cpu" or "gpu"), data parallel when > 1.

    The registry hands it over once it has checked that the backend can run there, so backends never check.
    """

    device: str
    devices: int


class TrainerFactory(Protocol):
    """What a registry entry resolves to: a trainer for these seeds, each from its initial weights, built by
    `build` (the family's builder of `config.model`) on `placement`; `backend` names the entry, for messages."""

    def __call__(self, config: ExperimentConfig, initial_weights: Mapping[int, Weights], placement: Placement, *,
                 build: ModelBuilder, backend: str, **options) -> Trainer:
        ...


class SingleSeedTrainer:
    """Base of backends that train one model per process: the Trainer contract for a single seed.

    Subclasses implement `train_one_epoch` and the SeedModel methods; the model is its own view.
    """

    seeds: tuple[int, ...]

    def train_one_epoch(self, x: np.ndarray, y: np.ndarray, batches: Sequence[np.ndarray],
                        on_step: StepCallback | None = None, time_steps: bool = False) -> EpochLog:
        """One epoch of this trainer's one model."""
        raise NotImplementedError

    def train_epoch(self, x: np.ndarray, y: np.ndarray, batches: Sequence[Sequence[np.ndarray]],
                    on_step: StepCallback | None = None, time_steps: bool = False) -> list[EpochLog]:
        """The Trainer contract: one batch list in, one EpochLog out."""
        if len(batches) != 1:
            raise ValueError(f"this trainer trains one seed; got {len(batches)} batch lists")
        return [self.train_one_epoch(x, y, batches[0], on_step, time_steps)]

    def kernel_routes(self) -> dict:
        """Not read for this backend (the XLA backends override it)."""
        return {"note": "not read for this backend"}

    def seed_model(self, index: int) -> SingleSeedTrainer:
        """The one model, which is this trainer."""
        if index != 0:
            raise IndexError(f"this trainer trains seed {self.seeds[0]} only; no seed index {index}")
        return self


def single_seed(initial_weights: Mapping[int, Weights], backend: str) -> tuple[int, Weights]:
    """The (seed, weights) of a one-seed factory call; more seeds are a BackendError."""
    if len(initial_weights) != 1:
        raise BackendError(f"backend {backend!r} trains one seed per process, got seeds {list(initial_weights)}")
    ((seed, weights),) = initial_weights.items()
    return seed, weights


def check_batches(batches: Sequence[np.ndarray], batch_size: int) -> None:
    """Every batch but the last must be full: the shared partial-batch policy."""
    sizes = [len(batch) for batch in batches]
    if any(size != batch_size for size in sizes[:-1]) or not 0 < sizes[-1] <= batch_size:
        raise ValueError(f"batches must all hold {batch_size} samples except a smaller last one; got {sizes[:5]}...")


def padded_batch_matrix(batches: Sequence[np.ndarray], batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(steps, batch_size) indices and a 0/1 mask; a short last batch is padded with index 0, mask 0."""
    indices = np.zeros((len(batches), batch_size), np.int32)
    mask = np.zeros((len(batches), batch_size), np.float32)
    for row, batch in enumerate(batches):
        indices[row, : len(batch)] = batch
        mask[row, : len(batch)] = 1.0
    return indices, mask


def padded_chunks(x: np.ndarray, y: np.ndarray, size: int = INFERENCE_BATCH):
    """Yield (x, y, mask) chunks of exactly `size` rows, zero-padding the last, so a compiled evaluation
    sees one shape; mask is 1 for real rows."""
    for start in range(0, len(x), size):
        x_chunk, y_chunk = x[start:start + size], y[start:start + size]
        mask = np.ones(size, np.float32)
        if len(x_chunk) < size:
            pad = size - len(x_chunk)
            mask[len(x_chunk):] = 0
            x_chunk = np.concatenate([x_chunk, np.zeros((pad, x.shape[1]), x.dtype)])
            y_chunk = np.concatenate([y_chunk, np.zeros((pad, y.shape[1]), y.dtype)])
        yield x_chunk, y_chunk, mask
