"""The fast Flax variant: a whole epoch as one compiled program.

Same model, loss and Keras-rule Adam as `backends.flax_mlp`, but the training set lives on the device,
the epoch is one `jax.lax.scan` over the shared batch order (a final partial batch is padded and
masked, so every epoch has one shape and compiles once), parameters and optimizer state are donated,
and the host synchronizes once per epoch instead of once per step.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from backends.base import EpochLog, StepCallback, check_batches
from backends.flax_mlp import FlaxTrainer, make_train_step
from common.config import ExperimentConfig
from common.data import one_hot
from common.weights import Weights


def create_trainer(config: ExperimentConfig, weights: Weights, device: str = "cpu") -> FusedFlaxTrainer:
    """A fused-epoch Flax trainer on `device`, starting from the shared `weights`."""
    return FusedFlaxTrainer(config, weights, device)


def padded_batch_matrix(batches: Sequence[np.ndarray], batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(steps, batch_size) indices and a 0/1 mask; a short last batch is padded with index 0, mask 0."""
    indices = np.zeros((len(batches), batch_size), np.int32)
    mask = np.zeros((len(batches), batch_size), np.float32)
    for row, batch in enumerate(batches):
        indices[row, : len(batch)] = batch
        mask[row, : len(batch)] = 1.0
    return indices, mask


def scanned_epoch_log(losses, accuracies, mask: np.ndarray, start: float, end: float) -> EpochLog:
    """An EpochLog from one scanned epoch: per-step outputs, batch sizes from the mask, one shared clock."""
    return EpochLog(np.asarray(losses, np.float64), np.asarray(accuracies, np.float64),
                    mask.sum(axis=1).astype(int), None, start, end)


def make_epoch_fn(graphdef, optimizer):
    """jit(scan(train_step)) over the epoch's batches, gathering each batch from device-resident data."""
    import jax

    train_step = make_train_step(graphdef, optimizer)

    def epoch(params, opt_state, x, y, indices, mask):
        def body(carry, step_inputs):
            batch_indices, batch_mask = step_inputs
            params, opt_state, loss, accuracy = train_step(*carry, x[batch_indices], y[batch_indices], batch_mask)
            return (params, opt_state), (loss, accuracy)

        (params, opt_state), (losses, accuracies) = jax.lax.scan(body, (params, opt_state), (indices, mask))
        return params, opt_state, losses, accuracies

    return jax.jit(epoch, donate_argnums=(0, 1))


class FusedFlaxTrainer(FlaxTrainer):
    """FlaxTrainer whose train_epoch is a single compiled call per epoch."""

    name = "flax-fused"

    def __init__(self, config: ExperimentConfig, weights: Weights, device: str = "cpu"):
        super().__init__(config, weights, device)
        self._epoch = make_epoch_fn(self.graphdef, self.optimizer)
        self._resident = None  # (x, y, x on device, one-hot y on device)

    def _device_data(self, x: np.ndarray, y: np.ndarray):
        # Kept on the device across epochs; the host arrays are held so their identity stays valid.
        if self._resident is None or self._resident[0] is not x or self._resident[1] is not y:
            self._resident = (x, y, self._to_device(x), self._to_device(one_hot(y)))
        return self._resident[2], self._resident[3]

    def train_epoch(self, x: np.ndarray, y: np.ndarray, batches: Sequence[np.ndarray],
                    on_step: StepCallback | None = None) -> EpochLog:
        """The whole epoch in one call; per-step losses come back together at the end."""
        import jax

        check_batches(batches, self.config.batch_size)
        x_device, y_device = self._device_data(x, y)
        indices, mask = padded_batch_matrix(batches, self.config.batch_size)
        start = time.perf_counter()
        self.params, self.opt_state, losses, accuracies = self._epoch(
            self.params, self.opt_state, x_device, y_device, indices, mask)
        losses, accuracies = jax.device_get((losses, accuracies))  # the one synchronization
        end = time.perf_counter()
        log = scanned_epoch_log(losses, accuracies, mask, start, end)
        if on_step is not None:
            on_step(len(batches) - 1, log.loss, log.accuracy)
        return log


def create_multi_seed_trainer(config: ExperimentConfig, weights_per_seed: Sequence[Weights],
                              device: str = "cpu") -> MultiSeedFusedTrainer:
    """K seeds of the fused trainer trained together by one `jax.vmap`-ed program."""
    return MultiSeedFusedTrainer(config, weights_per_seed, device)


class MultiSeedFusedTrainer:
    """K independent models (own weights, own batch order) stacked on a leading axis and vmapped.

    The data set is shared and stays unbatched; only parameters, optimizer state and batch indices
    carry the seed axis, so each model computes exactly what a separate FusedFlaxTrainer would.
    """

    name = "flax-vmap"

    def __init__(self, config: ExperimentConfig, weights_per_seed: Sequence[Weights], device: str = "cpu"):
        import jax

        singles = [FusedFlaxTrainer(config, weights, device) for weights in weights_per_seed]
        self.config, self.count = config, len(singles)
        self._single = singles[0]
        self.params = jax.tree.map(lambda *leaves: jax.numpy.stack(leaves), *[s.params for s in singles])
        self.opt_state = jax.tree.map(lambda *leaves: jax.numpy.stack(leaves), *[s.opt_state for s in singles])
        epoch = make_epoch_fn(self._single.graphdef, self._single.optimizer).__wrapped__
        self._epoch = jax.jit(jax.vmap(epoch, in_axes=(0, 0, None, None, 0, 0)), donate_argnums=(0, 1))

    def train_epoch(self, x: np.ndarray, y: np.ndarray, batches_per_seed: Sequence[Sequence[np.ndarray]],
                    on_step: StepCallback | None = None) -> list[EpochLog]:
        """One epoch for every seed at once; returns one EpochLog per seed (they share the clock)."""
        import jax

        for batches in batches_per_seed:
            check_batches(batches, self.config.batch_size)
        x_device, y_device = self._single._device_data(x, y)
        matrices = [padded_batch_matrix(batches, self.config.batch_size) for batches in batches_per_seed]
        indices = np.stack([m[0] for m in matrices])
        mask = np.stack([m[1] for m in matrices])
        start = time.perf_counter()
        self.params, self.opt_state, losses, accuracies = self._epoch(
            self.params, self.opt_state, x_device, y_device, indices, mask)
        losses, accuracies = jax.device_get((losses, accuracies))
        end = time.perf_counter()
        logs = [scanned_epoch_log(losses[k], accuracies[k], mask[k], start, end) for k in range(self.count)]
        if on_step is not None:
            on_step(len(batches_per_seed[0]) - 1, logs[0].loss, logs[0].accuracy)
        return logs

    def seed_trainer(self, index: int) -> FusedFlaxTrainer:
        """A single-seed view for evaluation and prediction: the shared trainer with seed `index`'s parameters."""
        import jax

        self._single.params = jax.tree.map(lambda leaf: leaf[index], self.params)
        return self._single

    def device_name(self) -> str:
        """JAX's description of the device."""
        return self._single.device_name()

    def versions(self) -> dict[str, str]:
        """jax, jaxlib, flax and optax versions."""
        return self._single.versions()
