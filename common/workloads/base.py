"""The Workload interface every model implements, and the tolerance record verify judges it by."""

from __future__ import annotations

import dataclasses
import math

from typing import Protocol

import numpy as np

from common.weights import Weights


# The window in which float32 still tracks float64 step for step: verify's "early" checks.
EARLY_STEPS = 5


class ModelSettings(Protocol):
    """The settings a workload reads of an experiment; `common.config.ExperimentConfig`, which sits above the
    workloads and takes its defaults from them, is one."""

    model: str
    hidden_units: tuple[int, ...]
    batch_size: int
    dropout: float


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """How far a float32 backend may be from the float64 reference, and from another float32 backend, and why."""

    float64: float
    pairwise: float
    why: str


class Workload:
    """One model. Subclasses set the class attributes and implement the methods; instances hold no state."""

    name: str
    # --model's help: the model in a few words.
    summary: str
    # The reference's settings: every ModelSettings field left at None takes these.
    defaults: dict
    # One sample's shape as the model takes it (the shared data layer hands out flat (N, 784) rows).
    input_shape: tuple[int, ...]
    # Where its float64 forward and backward are written (verify's table names it).
    reference_source: str
    # verify's bounds for this model, by check (common.workloads.EARLY_STEPS sets the early window).
    tolerances: dict[str, Tolerance]
    # The side of its square convolution kernels, by which a profile's breakdown tells a convolution's weight
    # gradient (its output has the kernel's shape); 0 for a model without convolutions.
    conv_kernel_size: int = 0

    def validate(self, config: ModelSettings) -> None:
        """Raise ConfigError for a setting this model cannot train with."""

    def weight_shapes(self, config: ModelSettings) -> dict[str, tuple[int, ...]]:
        """Names and shapes of the model's portable weights, in Keras' `get_weights()` order."""
        raise NotImplementedError

    def initial_weights(self, config: ModelSettings, seed: int) -> Weights:
        """The shared initial weights for `seed`."""
        raise NotImplementedError

    def layer_macs_per_sample(self, config: ModelSettings) -> list[int]:
        """Multiply-adds per sample of each weighted layer, input to output (biases, activations ignored)."""
        raise NotImplementedError

    def step_gemm_shapes(self, config: ModelSettings) -> list[tuple[int, int, int]]:
        """(m, k, n) of every matrix product of one training step at `config.batch_size`."""
        return gemm_shapes_of_layers(self.layer_gemms(config))

    def layer_gemms(self, config: ModelSettings) -> list[tuple[int, int, int]]:
        """(rows, fan_in, fan_out) of each layer's forward product; a convolution as its im2col GEMM."""
        raise NotImplementedError

    def reference_logits(self, weights: Weights, x: np.ndarray) -> np.ndarray:
        """float64 logits of flat (N, 784) rows (dropout off)."""
        raise NotImplementedError

    def reference_loss_and_grads(self, weights: Weights, x: np.ndarray, y_one_hot: np.ndarray) -> tuple[float, Weights]:
        """float64 mean cross-entropy and its gradient for every array, on flat rows (dropout off)."""
        raise NotImplementedError

    def describe(self, config: ModelSettings) -> str:
        """The model in a few words, for reports."""
        raise NotImplementedError

    def forward_flops(self, config: ModelSettings) -> int:
        """FLOPs of one inference sample: every layer's multiply-adds at 2 FLOPs each."""
        return 2 * sum(self.layer_macs_per_sample(config))

    def training_flops(self, config: ModelSettings) -> int:
        """Forward + weight gradients (the same again) + input gradients of every layer but the first."""
        macs = self.layer_macs_per_sample(config)
        return 2 * sum(macs) + 2 * sum(macs) + 2 * sum(macs[1:])

    def parameter_count(self, config: ModelSettings) -> int:
        """Scalars in the model's weights."""
        return sum(math.prod(shape) for shape in self.weight_shapes(config).values())


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable: every workload's float64 reference ends in it."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def gemm_shapes_of_layers(layers: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Forward, weight-gradient and (all but the first layer) input-gradient products of a stack of layers."""
    shapes = []
    for index, (rows, fan_in, fan_out) in enumerate(layers):
        shapes.append((rows, fan_in, fan_out))  # forward: x @ W
        shapes.append((fan_in, rows, fan_out))  # weight gradient: x.T @ delta
        if index:
            shapes.append((rows, fan_out, fan_in))  # input gradient: delta @ W.T
    return shapes
