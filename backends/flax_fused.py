"""The fast Flax variants: a whole epoch as one compiled program, for one seed or for several at once.

Same model, loss and Keras-rule Adam as `backends.flax_models`, but the training set lives on the device,
the epoch is one `jax.lax.scan` over the shared batch order (a final partial batch is padded and
masked, so every epoch has one shape and compiles once), parameters and optimizer state are donated,
and the host synchronizes once per epoch instead of once per step. `flax-vmap` runs that epoch for
K seeds in one `jax.vmap`-ed program.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import numpy as np

from backends.base import (EpochLog, ModelBuilder, Placement, StepCallback, check_batches, padded_batch_matrix,
                           single_seed)
from backends.devices import jax_devices
from backends.flax_models import (FlaxDeviceInfo, FlaxModelOps, FlaxTrainer, conv_with_canonical_grads,
                                  first_max_pool, make_train_step)
from backends.keras_adam import keras_adam
from common.config import ExperimentConfig
from common.data import one_hot
from common.weights import Weights


def create_trainer(config: ExperimentConfig, initial_weights: Mapping[int, Weights], placement: Placement, *,
                   build: ModelBuilder, backend: str) -> FusedFlaxTrainer:
    """A fused-epoch Flax trainer on the placement's devices for one seed, starting from its initial weights."""
    seed, weights = single_seed(initial_weights, backend)
    return FusedFlaxTrainer(config, weights, placement, build, seed=seed)


def create_ffi_trainer(config: ExperimentConfig, initial_weights: Mapping[int, Weights], placement: Placement, *,
                       build: ModelBuilder, backend: str) -> FfiFlaxTrainer:
    """flax-fused with its products and Adam update as XLA FFI kernels (the registry admits the MLP on one CPU)."""
    seed, weights = single_seed(initial_weights, backend)
    return FfiFlaxTrainer(config, weights, placement, build, seed=seed)


def create_vmapped_trainer(config: ExperimentConfig, initial_weights: Mapping[int, Weights], placement: Placement, *,
                           build: ModelBuilder, backend: str) -> VmappedFlaxTrainer:
    """All seeds of `initial_weights` trained together by one `jax.vmap`-ed fused epoch."""
    return VmappedFlaxTrainer(config, initial_weights, placement, build)


def scanned_epoch_log(losses, accuracies, mask: np.ndarray) -> EpochLog:
    """An EpochLog from one scanned epoch: per-step outputs, batch sizes from the mask, no per-step clock."""
    return EpochLog(np.asarray(losses, np.float64), np.asarray(accuracies, np.float64), mask.sum(axis=1).astype(int))


def make_epoch(graphdef, optimizer, apply_gradients=None):
    """scan(train_step) over the epoch's batches, gathering each batch from device-resident data (not jitted)."""
    train_step = make_train_step(graphdef, optimizer, apply_gradients)

    def epoch(params, opt_state, dropout_key, x, y, indices, mask):
        def body(carry, step_inputs):
            batch_indices, batch_mask = step_inputs
            params, opt_state, loss, accuracy = train_step(*carry, dropout_key, x[batch_indices], y[batch_indices],
                                                           batch_mask)
            return (params, opt_state), (loss, accuracy)

        (params, opt_state), (losses, accuracies) = jax.lax.scan(body, (params, opt_state), (indices, mask))
        return params, opt_state, losses, accuracies

    return epoch


class ResidentData:
    """The training set on the device (on several, a copy on each), uploaded once and kept across epochs."""

    def __init__(self, device):
        self.device = device  # a device or a sharding
        self._held = None  # (host x, host y, device x, device one-hot y)

    def get(self, x: np.ndarray, y: np.ndarray):
        """Device copies of x and one-hot y; the host arrays are held so their identity stays valid."""
        if self._held is None or self._held[0] is not x or self._held[1] is not y:
            self._held = (x, y, jax.device_put(x, self.device), jax.device_put(one_hot(y), self.device))
        return self._held[2], self._held[3]


class FusedFlaxTrainer(FlaxTrainer):
    """FlaxTrainer whose epoch is a single compiled call."""

    def __init__(self, config: ExperimentConfig, weights: Weights, placement: Placement, build: ModelBuilder, *,
                 seed: int):
        super().__init__(config, weights, placement, build, seed=seed)
        self._epoch = jax.jit(make_epoch(self.ops.graphdef, self.optimizer, self.apply_gradients()),
                              donate_argnums=(0, 1))
        self._data = ResidentData(self.ops.replicated)

    def train_one_epoch(self, x: np.ndarray, y: np.ndarray, batches: Sequence[np.ndarray],
                        on_step: StepCallback | None = None, time_steps: bool = False) -> EpochLog:
        """The whole epoch in one call; per-step losses come back together at the end."""
        check_batches(batches, self.config.batch_size)
        x_device, y_device = self._data.get(x, y)
        indices, mask = padded_batch_matrix(batches, self.config.batch_size)
        # On several devices each one gathers its share of every batch from its copy of the data.
        arguments = (self.params, self.opt_state, self.dropout_key, x_device, y_device,
                     self.ops.split_batches(indices, 1), self.ops.split_batches(mask, 1))
        self.note_program(self._epoch, "the jitted epoch (lax.scan)", *arguments)
        self.params, self.opt_state, losses, accuracies = self._epoch(*arguments)
        losses, accuracies = jax.device_get((losses, accuracies))  # the one synchronization
        log = scanned_epoch_log(losses, accuracies, mask)
        if on_step is not None:
            on_step(len(batches) - 1, log.loss, log.accuracy)
        return log

    def conv_general_dilated(self):
        """Inside the scanned epoch XLA leaves autodiff's conv gradients in a form its CPU runtime runs slowly."""
        return conv_with_canonical_grads

    def max_pool(self):
        """The reshape-max pool, whose gradient is compares instead of `select_and_scatter`'s scatter loop."""
        return first_max_pool


class FfiFlaxTrainer(FusedFlaxTrainer):
    """FusedFlaxTrainer whose matrix products and Adam update are XLA FFI kernels (backends/ffi_kernels.py)."""

    def dense_dot_general(self):
        """The FFI product for every dense layer."""
        from backends import ffi_kernels

        ffi_kernels.load()
        return ffi_kernels.ffi_dot_general

    def apply_gradients(self):
        """Keras' Adam in one FFI pass per parameter, replacing the Optax transformation and apply_updates."""
        from backends import ffi_kernels

        ffi_kernels.load()
        return ffi_kernels.keras_adam_apply(self.config.learning_rate, self.config.beta_1, self.config.beta_2,
                                            self.config.epsilon)


class VmappedFlaxTrainer(FlaxDeviceInfo):
    """K independent models (own weights, own batch order) stacked on a leading axis and vmapped.

    The data set is shared and stays unbatched; only parameters, optimizer state and batch indices
    carry the seed axis, so each model computes exactly what a separate FusedFlaxTrainer would.
    """

    def __init__(self, config: ExperimentConfig, initial_weights: Mapping[int, Weights], placement: Placement,
                 build: ModelBuilder):
        self.seeds = tuple(initial_weights)
        self.config = config
        # Several devices split every seed's batches (data parallel, like flax-fused), not the seeds:
        # any seed count runs on any device count, and each model computes what it would on one device.
        self.ops = FlaxModelOps(config, jax_devices(placement.device, placement.devices), build,
                                conv_general_dilated=conv_with_canonical_grads, max_pool=first_max_pool)
        self.optimizer = keras_adam(config.learning_rate, config.beta_1, config.beta_2, config.epsilon)
        per_seed = [self.ops.params_from_weights(weights) for weights in initial_weights.values()]
        self.params = jax.tree.map(lambda *leaves: jax.numpy.stack(leaves), *per_seed)
        # Committed to the device like the parameters: an uncommitted input would compile the epoch twice.
        self.opt_state = jax.device_put(jax.vmap(self.optimizer.init)(self.params), self.ops.replicated)
        self.dropout_keys = jax.numpy.stack([self.ops.dropout_key(seed) for seed in self.seeds])
        epoch = make_epoch(self.ops.graphdef, self.optimizer)
        self._epoch = jax.jit(jax.vmap(epoch, in_axes=(0, 0, 0, None, None, 0, 0)), donate_argnums=(0, 1))
        self._data = ResidentData(self.ops.replicated)

    def train_epoch(self, x: np.ndarray, y: np.ndarray, batches: Sequence[Sequence[np.ndarray]],
                    on_step: StepCallback | None = None, time_steps: bool = False) -> list[EpochLog]:
        """One epoch for every seed at once; one EpochLog per seed (they share one clock; no per-step clock)."""
        if len(batches) != len(self.seeds):
            raise ValueError(f"one batch list per seed: {len(self.seeds)} seeds, {len(batches)} batch lists")
        for seed_batches in batches:
            check_batches(seed_batches, self.config.batch_size)
        x_device, y_device = self._data.get(x, y)
        matrices = [padded_batch_matrix(seed_batches, self.config.batch_size) for seed_batches in batches]
        indices = np.stack([m[0] for m in matrices])
        mask = np.stack([m[1] for m in matrices])
        arguments = (self.params, self.opt_state, self.dropout_keys, x_device, y_device,
                     self.ops.split_batches(indices, 2), self.ops.split_batches(mask, 2))
        self.note_program(self._epoch, "the jitted, vmapped epoch (lax.scan)", *arguments)
        self.params, self.opt_state, losses, accuracies = self._epoch(*arguments)
        losses, accuracies = jax.device_get((losses, accuracies))
        logs = [scanned_epoch_log(losses[k], accuracies[k], mask[k]) for k in range(len(self.seeds))]
        if on_step is not None:
            on_step(len(batches[0]) - 1, logs[0].loss, logs[0].accuracy)
        return logs

    def seed_model(self, index: int) -> VmappedSeedModel:
        """Seed `seeds[index]`'s model, read from and written to its slice of the stacked parameters."""
        if not 0 <= index < len(self.seeds):
            raise IndexError(f"no seed index {index}; this trainer trains seeds {list(self.seeds)}")
        return VmappedSeedModel(self, index)



class VmappedSeedModel:
    """One seed of a VmappedFlaxTrainer: always its current parameters, never another seed's."""

    def __init__(self, trainer: VmappedFlaxTrainer, index: int):
        self._trainer, self._index = trainer, index

    def _params(self):
        return jax.tree.map(lambda stacked: stacked[self._index], self._trainer.params)

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """Mean loss and accuracy over every sample."""
        return self._trainer.ops.evaluate(self._params(), x, y)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Softmax probabilities for every row of x."""
        return self._trainer.ops.predict(self._params(), x)

    def get_weights(self) -> Weights:
        """This seed's weights, in the portable names."""
        return self._trainer.ops.weights_from_params(self._params())

    def set_weights(self, weights: Weights) -> None:
        """Replace this seed's weights only (every optimizer state is kept)."""
        new = self._trainer.ops.params_from_weights(weights)
        self._trainer.params = jax.tree.map(lambda stacked, leaf: stacked.at[self._index].set(leaf),
                                            self._trainer.params, new)
