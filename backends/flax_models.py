"""The JAX/Flax backend: Flax NNX for the model, Optax (Keras' Adam rule) for the update.

NNX is used in the functional style: the module is split once into a static graph definition and a
pytree of parameters, the train step is a pure `jax.jit` function of (params, optimizer state, batch)
that merges the module only while tracing, so no Python object graph is walked per step.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from backends.base import (PROGRESS_INTERVAL_S, EpochLog, ModelBuilder, Placement, SingleSeedTrainer, StepCallback,
                           check_batches, padded_chunks, single_seed)
from backends.devices import describe_jax_devices, jax_device_memory, jax_devices
from backends.frameworks import framework_versions
from backends.keras_adam import keras_adam
from backends.routes import (CONV_INPUT_GRADIENT_SCOPE, CONV_WEIGHT_GRADIENT_SCOPE, OPTIMIZER_SCOPE, POOL_SCOPE,
                             kernel_routes)
from common.config import ExperimentConfig
from common.data import one_hot
from common.mnist import NUM_CLASSES
from common.weights import Weights, check_weights
from common.workloads import cnn, mlp, weight_shapes

DATA_AXIS = "data"  # the mesh axis batches are split over


def create_trainer(config: ExperimentConfig, initial_weights: Mapping[int, Weights], placement: Placement, *,
                   build: ModelBuilder, backend: str) -> FlaxTrainer:
    """A Flax trainer on the placement's devices for one seed, starting from its initial weights."""
    seed, weights = single_seed(initial_weights, backend)
    return FlaxTrainer(config, weights, placement, build, seed=seed)


# The model builders (backends/registry.py names them per model). Each is an NNX module class called as
# `Model(config, rngs, conv_general_dilated=..., dot_general=..., max_pool=...)`: the products and the pooling its
# layers use, so a variant swaps a kernel without knowing the model (the fused variants' convolutions and pooling,
# flax-ffi's dense products).
# The module is then called as `model(x, dropout_key)` on the flat (N, 784) rows; without a key dropout is
# off (evaluation). Its random init is overwritten by the shared weights.


NHWC = ("NHWC", "HWIO", "NHWC")


@jax.custom_vjp
def _valid_conv(x, kernel):
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=NHWC)


def _valid_conv_forward(x, kernel):
    return _valid_conv(x, kernel), (x, kernel)


def _valid_conv_backward(residuals, d_out):
    # Both gradients written as convolutions already in the (batch, spatial, feature) x (spatial, in, out)
    # form XLA's CPU runtime hands to Eigen. Left to autodiff, inside a lax.scan body XLA keeps them in a
    # transposed form (dim_labels f01b_i01o->01bf, b01f_01oi->b01f) that runs as a generic loop nest, 5x
    # slower than the same step outside the loop (docs/models.md).
    x, kernel = residuals
    kh, kw = kernel.shape[:2]
    # Weight gradient: correlate the inputs with the output gradients, input channels as the batch and
    # images as the contracted features.
    with jax.named_scope(CONV_WEIGHT_GRADIENT_SCOPE):
        d_kernel = jax.lax.conv_general_dilated(x.transpose(3, 1, 2, 0), d_out.transpose(1, 2, 0, 3), (1, 1),
                                                "VALID", dimension_numbers=NHWC).transpose(1, 2, 0, 3)
    # Input gradient: the 'full' convolution of the output gradients with the flipped kernel.
    with jax.named_scope(CONV_INPUT_GRADIENT_SCOPE):
        d_x = jax.lax.conv_general_dilated(d_out, kernel[::-1, ::-1].transpose(0, 1, 3, 2), (1, 1),
                                           ((kh - 1, kh - 1), (kw - 1, kw - 1)), dimension_numbers=NHWC)
    return d_x, d_kernel


_valid_conv.defvjp(_valid_conv_forward, _valid_conv_backward)


def conv_with_canonical_grads(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                              dimension_numbers=None, feature_group_count=1, precision=None, out_sharding=None,
                              **options):
    """`lax.conv_general_dilated` for nnx.Conv, with hand-written gradients for the plain case (stride 1, 'VALID',
    NHWC x HWIO, no dilation or groups); any other convolution goes to lax unchanged."""
    plain = (tuple(window_strides) == (1, 1) and padding == "VALID" and feature_group_count == 1
             and precision is None and out_sharding is None and not options
             and all(dilation is None or tuple(dilation) == (1, 1) for dilation in (lhs_dilation, rhs_dilation))
             and dimension_numbers == jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, NHWC))
    if plain:
        return _valid_conv(lhs, rhs)
    return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                        dimension_numbers, feature_group_count, precision=precision,
                                        out_sharding=out_sharding, **options)


def first_max_pool(x, window: int):
    """window x window max pooling, stride `window` (trailing rows and columns that fill no window dropped) as a
    reshape and the maximum of each window's corners, NHWC; its gradient goes to each window's first maximum in
    row-major order, as the float64 reference's.

    `nnx.max_pool` lowers to `reduce_window`, whose gradient is `select_and_scatter`: on XLA's CPU runtime a
    scatter loop that took about half of the convnet's step (docs/models.md). Where window == stride no window
    overlaps another, so the pool is a reshape, and its gradient a select.
    """
    n, h, w, c = x.shape
    with jax.named_scope(POOL_SCOPE):
        # Cropping outside the custom_vjp leaves the crop's gradient (a pad) to autodiff.
        return _even_max_pool(x[:, :h // window * window, :w // window * window], window)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _even_max_pool(x, window: int):
    return _max_and_first_corner(x, window)[0]


def _window_corners(x, window: int):
    """(n, h, w, c) -> the P * P arrays (n, h // P, w // P, c) of each window's elements, in row-major order."""
    n, h, w, c = x.shape
    windows = x.reshape(n, h // window, window, w // window, window, c)
    return [windows[:, :, row, :, column] for row in range(window) for column in range(window)]


def _max_and_first_corner(x, window: int):
    """Each window's maximum, and which of its corners (row-major) holds it first."""
    corners = _window_corners(x, window)
    # The elementwise maximum of the corners, not `.max(axis=(2, 4))` on the window view: XLA's CPU loop emitter
    # vectorizes an elementwise op along the channels, a reduction over non-minor axes it does not (several
    # times slower at the convnet's shapes: docs/performance.md).
    pooled = functools.reduce(jnp.maximum, corners)
    first = jnp.full(pooled.shape, len(corners) - 1, jnp.int8)
    for index in reversed(range(len(corners) - 1)):
        first = jnp.where(corners[index] == pooled, jnp.int8(index), first)
    return pooled, first


def _even_max_pool_forward(x, window: int):
    pooled, first = _max_and_first_corner(x, window)
    # The winning corner, one byte per window, is all the gradient needs: saving it here spares the backward pass
    # from recomputing every window's maximum (and the activations under it) per element.
    return pooled, first


def _even_max_pool_backward(window: int, first, d_pooled):
    n, rows, columns, c = d_pooled.shape
    corner = jnp.arange(window * window, dtype=jnp.int8).reshape(1, 1, window, 1, window, 1)
    with jax.named_scope(POOL_SCOPE):
        d_windows = jnp.where(first[:, :, None, :, None, :] == corner, d_pooled[:, :, None, :, None, :], 0.0)
        return (d_windows.reshape(n, rows * window, columns * window, c),)


_even_max_pool.defvjp(_even_max_pool_forward, _even_max_pool_backward)


def framework_max_pool(x, window: int):
    """Flax's own max pool (`nnx.max_pool`, `reduce_window`), window x window, stride `window`: what the reference
    rows use."""
    return nnx.max_pool(x, (window, window), strides=(window, window))


def dense_options(dot_general) -> dict:
    """nnx.Linear's keyword for a product other than `lax.dot_general` (none for the default)."""
    return {} if dot_general is None else {"dot_general": dot_general}


class MLP(nnx.Module):
    """The dense ReLU stack; logits out (softmax lives in the loss and in predict)."""

    def __init__(self, config: ExperimentConfig, rngs: nnx.Rngs, *, conv_general_dilated=None, dot_general=None,
                 max_pool=None):
        sizes = mlp.layer_sizes(config)
        options = dense_options(dot_general)
        self.layers = nnx.List([nnx.Linear(fan_in, fan_out, rngs=rngs, **options)
                                for fan_in, fan_out in zip(sizes[:-1], sizes[1:])])

    def __call__(self, x, dropout_key=None):
        for layer in self.layers[:-1]:
            x = nnx.relu(layer(x))
        return self.layers[-1](x)

    def named_layers(self) -> dict:
        """Layers by their portable weight names."""
        return dict(zip(mlp.dense_names(len(self.layers)), self.layers))


class ConvNet(nnx.Module):
    """Keras' MNIST convnet (common/workloads/cnn.py): two valid 3x3 conv + 2x2 max-pool stages, dropout, dense."""

    def __init__(self, config: ExperimentConfig, rngs: nnx.Rngs, *, conv_general_dilated=None, dot_general=None,
                 max_pool=None):
        channels = cnn.IMAGE_SHAPE[-1]
        self.max_pool = max_pool or framework_max_pool
        self.convs = nnx.List()
        conv = conv_general_dilated or jax.lax.conv_general_dilated
        for filters in cnn.CONV_FILTERS:
            self.convs.append(nnx.Conv(channels, filters, (cnn.KERNEL, cnn.KERNEL), padding="VALID",
                                       conv_general_dilated=conv, rngs=rngs))
            channels = filters
        self.dropout = nnx.Dropout(config.dropout)
        self.dense = nnx.Linear(cnn.flat_features(), NUM_CLASSES, rngs=rngs, **dense_options(dot_general))

    def __call__(self, x, dropout_key=None):
        x = x.reshape(len(x), *cnn.IMAGE_SHAPE)
        for conv in self.convs:
            x = self.max_pool(nnx.relu(conv(x)), cnn.POOL)
        x = self.dropout(x.reshape(len(x), -1), deterministic=dropout_key is None, rngs=dropout_key)
        return self.dense(x)

    def named_layers(self) -> dict:
        """Layers by their portable weight names."""
        return {**dict(zip(cnn.CONV_NAMES, self.convs)), cnn.DENSE_NAME: self.dense}


def cross_entropy_and_accuracy(logits, labels_one_hot):
    """Per-example softmax cross-entropy from logits (as TF Keras computes it) and correctness."""
    losses = optax.softmax_cross_entropy(logits, labels_one_hot)
    correct = (jnp.argmax(logits, -1) == jnp.argmax(labels_one_hot, -1)).astype(jnp.float32)
    return losses, correct


def make_train_step(graphdef, optimizer, apply_gradients=None):
    """The pure train step: (params, opt_state, dropout_key, x, y[, mask]) -> (params, opt_state, loss, accuracy).

    With a mask (1 for real rows, 0 for padding) the loss and accuracy are means over the real rows
    only, so a padded final batch trains exactly like the short batch it stands for. Step t's dropout
    mask comes from fold_in(dropout_key, t), so the per-step and the fused epochs draw the same masks.
    `apply_gradients(params, grads, opt_state) -> (params, opt_state)` replaces the optimizer's update
    and `optax.apply_updates` when given (flax-ffi's one-pass Adam).
    """

    def loss_fn(params, x, y, mask, dropout_key):
        logits = nnx.merge(graphdef, params)(x, dropout_key)
        losses, correct = cross_entropy_and_accuracy(logits, y)
        if mask is None:
            return losses.mean(), correct.mean()
        count = mask.sum()
        return (losses * mask).sum() / count, (correct * mask).sum() / count

    def train_step(params, opt_state, dropout_key, x, y, mask=None):
        # The optimizer's own step count, whichever optimizer it is (Keras' rule, optax.adam, ...).
        step_key = jax.random.fold_in(dropout_key, optax.tree_utils.tree_get(opt_state, "count"))
        (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y, mask, step_key)
        # The scope names the update's ops in the compiled program: the per-op breakdown's "optimizer update".
        with jax.named_scope(OPTIMIZER_SCOPE):
            if apply_gradients is not None:
                return *apply_gradients(params, grads, opt_state), loss, accuracy
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss, accuracy

    return train_step


class FlaxModelOps:
    """What every Flax backend does with one model's parameters: evaluate, predict, convert weights, place.

    Compiled once per model shape; pure functions of the parameters, so one trainer's seeds (or
    several trainers) share them without sharing state. On several devices, parameters (and the
    resident data set) are replicated and batches are split over a one-axis `data` mesh; the jitted
    step is unchanged and XLA's SPMD partitioner inserts the gradient all-reduce.
    """

    def __init__(self, config: ExperimentConfig, devices: Sequence, build: ModelBuilder, conv_general_dilated=None,
                 dot_general=None, max_pool=None):
        self.config, self.devices, self.device = config, list(devices), devices[0]
        if len(self.devices) == 1:
            self.replicated = jax.sharding.SingleDeviceSharding(self.device)
            self.mesh = None
        else:
            self.mesh = jax.sharding.Mesh(np.array(self.devices), (DATA_AXIS,))
            self.replicated = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())
        self.graphdef, self.template = nnx.split(build(config, nnx.Rngs(0), conv_general_dilated=conv_general_dilated,
                                                             dot_general=dot_general, max_pool=max_pool))
        self._eval_chunk = jax.jit(functools.partial(_eval_chunk, self.graphdef))
        self._predict_chunk = jax.jit(functools.partial(_predict_chunk, self.graphdef))

    def params_from_weights(self, weights: Weights):
        """Portable weights as this model's parameter pytree on the device (same (in, out) kernel layout as Keras)."""
        check_weights(weights, weight_shapes(self.config))
        # A copy: the template must never share a buffer with parameters that a train step donates.
        model = nnx.merge(self.graphdef, self.template, copy=True)
        for name, layer in model.named_layers().items():
            layer.kernel[...] = jnp.asarray(weights[f"{name}/kernel"])
            layer.bias[...] = jnp.asarray(weights[f"{name}/bias"])
        return jax.device_put(nnx.split(model)[1], self.replicated)

    def split_batches(self, array: np.ndarray, batch_axis: int):
        """`array` with axis `batch_axis` split over the devices; on one device, left to jit to place."""
        if self.mesh is None:
            return array
        spec = jax.sharding.PartitionSpec(*[None] * batch_axis, DATA_AXIS)
        return jax.device_put(array, jax.sharding.NamedSharding(self.mesh, spec))

    def weights_from_params(self, params) -> Weights:
        """Parameters as NumPy float32 weights, in the portable names."""
        model = nnx.merge(self.graphdef, params)
        weights = {}
        for name, layer in model.named_layers().items():
            weights[f"{name}/kernel"] = np.array(layer.kernel[...], dtype=np.float32)
            weights[f"{name}/bias"] = np.array(layer.bias[...], dtype=np.float32)
        return {name: weights[name] for name in weight_shapes(self.config)}

    def dropout_key(self, seed: int):
        """The base key of `seed`'s dropout masks, on the devices."""
        return jax.device_put(jax.random.PRNGKey(seed), self.replicated)

    def evaluate(self, params, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """Mean loss and accuracy over every sample, in padded fixed-size chunks (one compile)."""
        total_loss = total_correct = 0.0
        for x_chunk, y_chunk, mask in padded_chunks(x, one_hot(y)):
            loss_sum, correct_sum = self._eval_chunk(params, x_chunk, y_chunk, mask)
            total_loss += float(loss_sum)
            total_correct += float(correct_sum)
        return total_loss / len(x), total_correct / len(x)

    def predict(self, params, x: np.ndarray) -> np.ndarray:
        """Softmax probabilities for every row of x."""
        dummy_labels = np.zeros((len(x), NUM_CLASSES), np.float32)
        parts = [np.asarray(self._predict_chunk(params, x_chunk))[mask.astype(bool)]
                 for x_chunk, _, mask in padded_chunks(x, dummy_labels)]
        return np.concatenate(parts)

    def device_name(self) -> str:
        """JAX's description of the device (all of them, on several)."""
        return describe_jax_devices(self.devices)

    def device_memory(self) -> dict | None:
        """The first device allocator's peak and current bytes (None on CPU)."""
        return jax_device_memory(self.device)


def jax_versions() -> dict[str, str]:
    """jax, jaxlib, flax and optax versions."""
    return framework_versions(("jax", "flax", "optax"))


class FlaxDeviceInfo:
    """The Trainer contract's device and version questions, answered from a trainer's `ops` (FlaxModelOps)."""

    ops: FlaxModelOps

    def device_name(self) -> str:
        """JAX's description of the device."""
        return self.ops.device_name()

    def versions(self) -> dict[str, str]:
        """jax, jaxlib, flax and optax versions."""
        return jax_versions()

    def device_memory(self) -> dict | None:
        """The device allocator's peak and current bytes (None on CPU)."""
        return self.ops.device_memory()

    # (jitted training program, what it does, its arguments' shapes and shardings), noted at its first call.
    _program: tuple | None = None

    def note_program(self, program, source: str, *arguments) -> None:
        """Remember the training program and its argument specs once (before the call: it donates buffers)."""
        if self._program is None:
            self._program = (program, source, jax.tree.map(argument_spec, arguments))

    def kernel_routes(self) -> dict:
        """The training program's kernel routes, from XLA's optimized HLO of it (compiled again, outside any clock)."""
        if self._program is None:
            return {"note": "no training program ran"}
        program, source, specs = self._program
        hlo = program.lower(*specs).compile().as_text()
        return {"source": f"optimized HLO of {source}", "platform": self.ops.device.platform,
                "routes": kernel_routes(hlo, self.ops.device.platform), "hlo": hlo}


def argument_spec(value):
    """A jitted function's argument as its shape, dtype and, for an array committed to a device, its sharding:
    what the call was compiled for, so lowering it again finds that compiled program in JAX's cache."""
    sharding = value.sharding if getattr(value, "committed", False) else None
    return jax.ShapeDtypeStruct(np.shape(value), value.dtype, sharding=sharding)


class FlaxTrainer(FlaxDeviceInfo, SingleSeedTrainer):
    """A Flax model + Keras-rule Adam, one jitted step per batch."""

    def __init__(self, config: ExperimentConfig, weights: Weights, placement: Placement, build: ModelBuilder, *,
                 seed: int):
        self.seeds = (seed,)
        self.config = config
        self.ops = FlaxModelOps(config, jax_devices(placement.device, placement.devices), build,
                                self.conv_general_dilated(), self.dense_dot_general(), self.max_pool())
        self.optimizer = keras_adam(config.learning_rate, config.beta_1, config.beta_2, config.epsilon)
        self.params = self.ops.params_from_weights(weights)
        self.opt_state = jax.device_put(self.optimizer.init(self.params), self.ops.replicated)
        self.dropout_key = self.ops.dropout_key(seed)
        # No buffer donation: the reference row is the step as Flax's and Optax's own training loops write it, and they
        # do not donate (donating made this row faster than that code: docs/results/2026-12-07-harness-vs-plain.md);
        # the fused variants donate, as a tuned program does.
        self._train_step = jax.jit(make_train_step(self.ops.graphdef, self.optimizer, self.apply_gradients()))

    def conv_general_dilated(self):
        """The convolutions' product: None for nnx.Conv's own, the idiomatic reference path (fused variants differ)."""
        return None

    def dense_dot_general(self):
        """The dense layers' product: None for `lax.dot_general` (overridden by flax-ffi)."""
        return None

    def max_pool(self):
        """The convnet's pooling: None for `nnx.max_pool`, the idiomatic reference path (fused variants differ)."""
        return None

    def apply_gradients(self):
        """The update as one function (see `make_train_step`): None for the Optax transformation (flax-ffi's differs)."""
        return None

    def train_one_epoch(self, x: np.ndarray, y: np.ndarray, batches: Sequence[np.ndarray],
                        on_step: StepCallback | None = None, time_steps: bool = False) -> EpochLog:
        """One pass over `batches` as the Flax MNIST example runs one: steps dispatched back to back, metrics
        read from the device only now and then; with `time_steps`, a host sync after every step to clock it."""
        check_batches(batches, self.config.batch_size)
        y_one_hot = one_hot(y)
        metrics, ends = [], []
        progress = ProgressReader(on_step, [len(index) for index in batches])
        for step, index in enumerate(batches):
            arguments = (self.params, self.opt_state, self.dropout_key, *self._device_batch(x, y_one_hot, index))
            if step == 0:
                self.note_program(self._train_step, "the jitted train step", *arguments)
            self.params, self.opt_state, loss, accuracy = self._train_step(*arguments)
            metrics.append((loss, accuracy))
            if time_steps or step == 0:
                jax.block_until_ready(loss)
                ends.append(time.perf_counter())
            progress.maybe_report(step, metrics)
        # One transfer of every step's scalars, after the last step was dispatched: the epoch's only full sync.
        losses, accuracies = np.asarray(jax.device_get(metrics), dtype=np.float64).T.reshape(2, -1)
        progress.report_last(losses, accuracies)
        return EpochLog(losses, accuracies, np.array([len(b) for b in batches]), np.array(ends) if time_steps else None,
                        first_step_end_s=ends[0])

    def _device_batch(self, x: np.ndarray, y_one_hot: np.ndarray, index: np.ndarray) -> tuple:
        """(x, y) of one batch, split over the devices (the job checked that every batch splits evenly)."""
        return self.ops.split_batches(x[index], 0), self.ops.split_batches(y_one_hot[index], 0)

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """Mean loss and accuracy over every sample."""
        return self.ops.evaluate(self.params, x, y)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Softmax probabilities for every row of x."""
        return self.ops.predict(self.params, x)

    def get_weights(self) -> Weights:
        """Weights as NumPy float32, in the portable names."""
        return self.ops.weights_from_params(self.params)

    def set_weights(self, weights: Weights) -> None:
        """Load portable weights (the optimizer state is kept)."""
        self.params = self.ops.params_from_weights(weights)



class ProgressReader:
    """The progress bar's view of a per-step loop that does not sync per step: every PROGRESS_INTERVAL_S it reads
    back the metrics of the steps dispatched since its last read (waiting for the newest): a few syncs a second."""

    def __init__(self, on_step: StepCallback | None, batch_sizes: Sequence[int]):
        self.on_step, self.sizes = on_step, np.asarray(batch_sizes, dtype=np.float64)
        self.read, self.loss_sum, self.correct_sum = 0, 0.0, 0.0
        self.last_read = time.perf_counter() if on_step else 0.0

    def maybe_report(self, step: int, metrics: list) -> None:
        """After dispatching `step`: report the running epoch means when the last report is old enough."""
        if self.on_step is None or time.perf_counter() - self.last_read < PROGRESS_INTERVAL_S:
            return
        losses, accuracies = np.asarray(jax.device_get(metrics[self.read:step + 1]), dtype=np.float64).T
        sizes = self.sizes[self.read:step + 1]
        self.loss_sum += losses @ sizes
        self.correct_sum += accuracies @ sizes
        self.read = step + 1
        seen = self.sizes[:step + 1].sum()
        self.on_step(step, self.loss_sum / seen, self.correct_sum / seen)
        self.last_read = time.perf_counter()

    def report_last(self, losses: np.ndarray, accuracies: np.ndarray) -> None:
        """The epoch's final running means, from all of its read-back metrics."""
        if self.on_step is not None:
            total = self.sizes.sum()
            self.on_step(len(losses) - 1, float(losses @ self.sizes / total), float(accuracies @ self.sizes / total))


def _eval_chunk(graphdef, params, x, y, mask):
    losses, correct = cross_entropy_and_accuracy(nnx.merge(graphdef, params)(x), y)
    return (losses * mask).sum(), (correct * mask).sum()


def _predict_chunk(graphdef, params, x):
    return jax.nn.softmax(nnx.merge(graphdef, params)(x))
