"""TensorFlow without Keras, fused like the fastest JAX row: the whole epoch as one XLA program.

The model (the MLP, or the convnet written with tf.nn) is a list of `tf.Variable`s loaded from the shared
weights; Keras 3's Adam rule is written out
in TensorFlow (the same formula as `backends/keras_adam.py`); the training set lives on the device and
the epoch is one `tf.function(jit_compile=True)` whose `tf.range` loop gathers each batch of the shared
order, so the host synchronizes once per epoch. A final partial batch is padded and masked, as in
`flax-fused`, so every epoch has one shape and compiles once. Tells TensorFlow's cost apart from
Keras' `fit` machinery.
"""

from __future__ import annotations

import functools

from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

from backends.base import (EpochLog, ModelBuilder, Placement, SingleSeedTrainer, StepCallback, check_batches,
                           padded_batch_matrix, padded_chunks, single_seed)
from backends.devices import configure_tensorflow, tensorflow_device_memory, tensorflow_platform
from backends.frameworks import framework_versions
from backends.routes import kernel_routes
from common.config import ExperimentConfig
from common.data import one_hot
from common.mnist import NUM_CLASSES
from common.weights import Weights, as_layer_list, check_weights, from_layer_list
from common.workloads import cnn, weight_shapes


def create_trainer(config: ExperimentConfig, initial_weights: Mapping[int, Weights], placement: Placement, *,
                   build: ModelBuilder, backend: str) -> FusedTensorFlowTrainer:
    """A fused-epoch TensorFlow trainer on one device (the registry admits no more) for one seed."""
    seed, weights = single_seed(initial_weights, backend)
    return FusedTensorFlowTrainer(config, weights, placement, build, seed=seed)


# The model builders (backends/registry.py names them per model): logits of a batch of flat rows, as
# `logits(trainer, x, training)`, from the trainer's variables (kernel, bias per layer, in the portable order).


def mlp_logits(trainer: FusedTensorFlowTrainer, x, training: bool):
    """The dense ReLU stack."""
    layers = trainer.layers()
    for kernel, bias in layers[:-1]:
        x = tf.nn.relu(tf.matmul(x, kernel) + bias)
    kernel, bias = layers[-1]
    return tf.matmul(x, kernel) + bias


def cnn_logits(trainer: FusedTensorFlowTrainer, x, training: bool):
    """Keras' MNIST convnet (common/workloads/cnn.py), written with tf.nn: NHWC, HWIO kernels, 'VALID' padding."""
    layers = trainer.layers()
    x = tf.reshape(x, (-1, *cnn.IMAGE_SHAPE))
    for kernel, bias in layers[:-1]:
        x = tf.nn.relu(valid_conv(x, tf.convert_to_tensor(kernel)) + bias)
        x = first_max_pool(x, cnn.POOL)
    x = tf.reshape(x, (tf.shape(x)[0], -1))
    if training and trainer.config.dropout > 0:
        # Step t's mask from the stateless (seed, t) pair: reproducible, no RNG state to carry.
        seed = tf.stack([tf.constant(trainer.seeds[0], tf.int64), trainer.iterations])
        x = tf.nn.experimental.stateless_dropout(x, trainer.config.dropout, seed=seed)
    kernel, bias = layers[-1]
    return tf.matmul(x, kernel) + bias


def first_max_pool(x, window: int):
    """window x window max pooling, stride `window` (trailing rows and columns that fill no window dropped), its
    gradient to each window's first maximum.

    `tf.nn.max_pool2d`'s gradient compiles, under XLA, to `select_and_scatter`, a scatter loop on a CPU; the same
    pool as flax-fused's (backends/flax_models.py): the maximum of each window's corners, and a select on the
    winning corner saved in the forward pass.
    """
    height, width = x.shape[1] // window * window, x.shape[2] // window * window
    return _even_max_pool(window)(x[:, :height, :width])


@functools.cache
def _even_max_pool(window: int):
    """The pool of `window` over an input whose sides it divides, with its custom gradient (one per window size:
    tf.custom_gradient takes tensors only)."""

    @tf.custom_gradient
    def pool(x):
        images, (height, width, channels) = tf.shape(x)[0], x.shape[1:]
        windows = tf.reshape(x, (images, height // window, window, width // window, window, channels))
        corners = [windows[:, :, row, :, column] for row in range(window) for column in range(window)]
        pooled = functools.reduce(tf.maximum, corners)
        first = tf.fill(tf.shape(pooled), tf.constant(len(corners) - 1, tf.int8))
        for index in reversed(range(len(corners) - 1)):
            first = tf.where(corners[index] == pooled, tf.constant(index, tf.int8), first)

        def gradient(d_pooled):
            corner = tf.constant(np.arange(window * window, dtype=np.int8).reshape(1, 1, window, 1, window, 1))
            d_windows = tf.where(first[:, :, None, :, None, :] == corner, d_pooled[:, :, None, :, None, :],
                                 tf.zeros((), d_pooled.dtype))
            return tf.reshape(d_windows, tf.shape(x))

        return pooled, gradient

    return pool


@tf.custom_gradient
def valid_conv(x, kernel):
    """tf.nn.conv2d, stride 1, 'VALID', NHWC x HWIO, with both gradients written as convolutions in that same form.

    Left to autodiff, inside the epoch's XLA while loop the gradients stay in a transposed form that XLA's CPU
    runtime runs as a generic loop nest, several times slower (docs/models.md; flax-fused does the same in JAX).
    """
    def gradients(d_out):
        kh, kw = kernel.shape[0], kernel.shape[1]
        # Weight gradient: input channels as the batch, images as the contracted features.
        d_kernel = tf.transpose(tf.nn.conv2d(tf.transpose(x, (3, 1, 2, 0)), tf.transpose(d_out, (1, 2, 0, 3)),
                                             strides=1, padding="VALID"), (1, 2, 0, 3))
        # Input gradient: the 'full' convolution of the output gradients with the flipped kernel.
        flipped = tf.transpose(tf.reverse(kernel, axis=(0, 1)), (0, 1, 3, 2))
        d_x = tf.nn.conv2d(d_out, flipped, strides=1, padding=((0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1), (0, 0)))
        return d_x, d_kernel

    return tf.nn.conv2d(x, kernel, strides=1, padding="VALID"), gradients


class FusedTensorFlowTrainer(SingleSeedTrainer):
    """Plain TensorFlow 2: variables, a GradientTape step, Keras' Adam rule, one compiled call per epoch."""

    def __init__(self, config: ExperimentConfig, weights: Weights, placement: Placement, build: ModelBuilder, *,
                 seed: int):
        (self._device,) = configure_tensorflow(placement.device, placement.devices)
        self._build = build
        self.shapes = weight_shapes(config)
        check_weights(weights, self.shapes)
        self.seeds = (seed,)
        self.config = config
        with tf.device(self._device):
            self.params = [tf.Variable(array, dtype=tf.float32) for array in as_layer_list(weights, self.shapes)]
            self.mu = [tf.Variable(tf.zeros_like(param)) for param in self.params]
            self.nu = [tf.Variable(tf.zeros_like(param)) for param in self.params]
            self.iterations = tf.Variable(0, dtype=tf.int64)
        self._epoch = tf.function(self._train_epoch_program, jit_compile=True, reduce_retracing=True)
        self._eval_chunk = tf.function(self._eval_chunk_program, jit_compile=True)
        self._resident = None  # (host x, host y, device x, device one-hot y)

    def layers(self) -> list[tuple]:
        """(kernel, bias) variables of each layer, input to output."""
        return list(zip(self.params[0::2], self.params[1::2]))

    def _logits(self, x, training: bool = False):
        return self._build(self, x, training)

    def _apply_keras_adam(self, grads) -> None:
        # keras/src/optimizers/adam.py, Adam.update_step (Keras 3): epsilon on the uncorrected sqrt(v).
        config = self.config
        step = tf.cast(self.iterations + 1, tf.float32)
        alpha = config.learning_rate * tf.sqrt(1 - tf.pow(config.beta_2, step)) / (1 - tf.pow(config.beta_1, step))
        for param, grad, mu, nu in zip(self.params, grads, self.mu, self.nu):
            mu.assign_add((grad - mu) * (1 - config.beta_1))
            nu.assign_add((tf.square(grad) - nu) * (1 - config.beta_2))
            param.assign_sub((mu * alpha) / (tf.sqrt(nu) + config.epsilon))
        self.iterations.assign_add(1)

    def _train_epoch_program(self, x, y, indices, mask):
        steps = tf.shape(indices)[0]
        losses = tf.TensorArray(tf.float32, size=steps)
        accuracies = tf.TensorArray(tf.float32, size=steps)
        for step in tf.range(steps):
            batch_x, batch_y = tf.gather(x, indices[step]), tf.gather(y, indices[step])
            batch_mask = mask[step]
            count = tf.reduce_sum(batch_mask)
            with tf.GradientTape() as tape:
                logits = self._logits(batch_x, training=True)
                per_example = tf.nn.softmax_cross_entropy_with_logits(labels=batch_y, logits=logits)
                loss = tf.reduce_sum(per_example * batch_mask) / count
            self._apply_keras_adam(tape.gradient(loss, self.params))
            correct = tf.cast(tf.equal(tf.argmax(logits, -1), tf.argmax(batch_y, -1)), tf.float32)
            losses = losses.write(step, loss)
            accuracies = accuracies.write(step, tf.reduce_sum(correct * batch_mask) / count)
        return losses.stack(), accuracies.stack()

    def _eval_chunk_program(self, x, y, mask):
        logits = self._logits(x)
        per_example = tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=logits)
        correct = tf.cast(tf.equal(tf.argmax(logits, -1), tf.argmax(y, -1)), tf.float32)
        return tf.reduce_sum(per_example * mask), tf.reduce_sum(correct * mask), tf.nn.softmax(logits)

    def _device_data(self, x: np.ndarray, y: np.ndarray):
        # Kept on the device across epochs; the host arrays are held so their identity stays valid.
        if self._resident is None or self._resident[0] is not x or self._resident[1] is not y:
            with tf.device(self._device):
                self._resident = (x, y, tf.constant(x), tf.constant(one_hot(y)))
        return self._resident[2], self._resident[3]

    def train_one_epoch(self, x: np.ndarray, y: np.ndarray, batches: Sequence[np.ndarray],
                        on_step: StepCallback | None = None, time_steps: bool = False) -> EpochLog:
        """The whole epoch in one compiled call; per-step losses come back together at the end."""
        check_batches(batches, self.config.batch_size)
        x_device, y_device = self._device_data(x, y)
        indices, mask = padded_batch_matrix(batches, self.config.batch_size)
        with tf.device(self._device):
            self._epoch_arguments = (x_device, y_device, tf.constant(indices), tf.constant(mask))
            losses, accuracies = self._epoch(*self._epoch_arguments)
        losses, accuracies = losses.numpy(), accuracies.numpy()  # the one synchronization
        log = EpochLog(losses.astype(np.float64), accuracies.astype(np.float64), mask.sum(axis=1).astype(int))
        if on_step is not None:
            on_step(len(batches) - 1, log.loss, log.accuracy)
        return log

    def _chunks(self, x: np.ndarray, y: np.ndarray):
        """(loss sum, correct sum, probabilities of the real rows) per padded chunk of INFERENCE_BATCH rows."""
        for x_chunk, y_chunk, mask in padded_chunks(x, y):
            with tf.device(self._device):
                loss_sum, correct_sum, probs = self._eval_chunk(x_chunk, y_chunk, mask)
            yield float(loss_sum), float(correct_sum), probs.numpy()[:int(mask.sum())]

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """Mean loss and accuracy over every sample, in padded fixed-size chunks (one compile)."""
        totals = np.sum([(loss, correct) for loss, correct, _ in self._chunks(x, one_hot(y))], axis=0)
        return float(totals[0]) / len(x), float(totals[1]) / len(x)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Softmax probabilities for every row of x."""
        dummy = np.zeros((len(x), NUM_CLASSES), np.float32)
        return np.concatenate([probs for _, _, probs in self._chunks(x, dummy)]).astype(np.float32)

    def get_weights(self) -> Weights:
        """The variables, in the portable names."""
        return from_layer_list([param.numpy() for param in self.params], self.shapes)

    def set_weights(self, weights: Weights) -> None:
        """Assign portable weights to the variables (the optimizer state is kept)."""
        check_weights(weights, self.shapes)
        for param, array in zip(self.params, as_layer_list(weights, self.shapes)):
            param.assign(array)

    def kernel_routes(self) -> dict:
        """The epoch program's kernel routes, from the optimized HLO XLA compiled it to."""
        if getattr(self, "_epoch_arguments", None) is None:
            return {"note": "no training program ran"}
        with tf.device(self._device):
            hlo = self._epoch.experimental_get_compiler_ir(*self._epoch_arguments)(stage="optimized_hlo")
        platform = tensorflow_platform(self._device)
        return {"source": "optimized HLO of the epoch's tf.function(jit_compile=True)", "platform": platform,
                "routes": kernel_routes(hlo, platform), "hlo": hlo}

    def device_name(self) -> str:
        """The TensorFlow device the variables live on."""
        return self._device

    def device_memory(self) -> dict | None:
        """TensorFlow's GPU allocator peak and current bytes (None on CPU)."""
        return tensorflow_device_memory(self._device)

    def versions(self) -> dict[str, str]:
        """tensorflow's version."""
        return framework_versions(("tensorflow",))
