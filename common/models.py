"""The workloads by name: each one's weights, FLOP counts and float64 reference behind one interface.

Everything model-specific that is framework-free goes through here, chosen by `config.model`, so the
harness, the reports, `verify` and the roofline never branch on the model themselves. The backends build
the model in their framework from the same names and shapes (`weight_shapes`).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from common import convnet, flops, reference
from common.config import MODELS, ExperimentConfig
from common.weights import Weights, init_weights
from common.weights import weight_shapes as mlp_weight_shapes


@dataclasses.dataclass(frozen=True)
class Workload:
    """One model: its portable weights, its FLOPs per sample and its float64 reference (dropout off)."""

    name: str
    weight_shapes: Callable[[ExperimentConfig], dict[str, tuple[int, ...]]]
    initial_weights: Callable[[ExperimentConfig, int], Weights]
    forward_flops: Callable[[ExperimentConfig], int]
    training_flops: Callable[[ExperimentConfig], int]
    # Both take the flat (N, 784) float rows of the shared data layer.
    reference_logits: Callable[[Weights, np.ndarray], np.ndarray]
    reference_loss_and_grads: Callable[[Weights, np.ndarray, np.ndarray], tuple[float, Weights]]
    describe: Callable[[ExperimentConfig], str]


def _describe_mlp(config: ExperimentConfig) -> str:
    return "MLP " + "-".join(map(str, config.layer_sizes))


def _describe_cnn(config: ExperimentConfig) -> str:
    return (f"convnet conv{convnet.CONV_FILTERS[0]}-pool-conv{convnet.CONV_FILTERS[1]}-pool-dropout "
            f"{config.dropout:g}-dense{convnet.NUM_CLASSES}")


WORKLOADS = {workload.name: workload for workload in (
    Workload("mlp",
             weight_shapes=lambda config: mlp_weight_shapes(config.layer_sizes),
             initial_weights=lambda config, seed: init_weights(config.layer_sizes, seed),
             forward_flops=lambda config: flops.forward_flops_per_sample(config.layer_sizes),
             training_flops=lambda config: flops.training_flops_per_sample(config.layer_sizes),
             reference_logits=lambda weights, x: reference.forward(weights, x)[0],
             reference_loss_and_grads=reference.loss_and_grads,
             describe=_describe_mlp),
    Workload("cnn",
             weight_shapes=lambda config: convnet.cnn_weight_shapes(),
             initial_weights=lambda config, seed: convnet.init_cnn_weights(seed),
             forward_flops=lambda config: flops.cnn_forward_flops_per_sample(),
             training_flops=lambda config: flops.cnn_training_flops_per_sample(),
             reference_logits=lambda weights, x: convnet.cnn_forward(weights, convnet.as_images(x))[0],
             reference_loss_and_grads=lambda weights, x, y: convnet.cnn_loss_and_grads(weights, convnet.as_images(x), y),
             describe=_describe_cnn),
)}
assert tuple(WORKLOADS) == MODELS, "every model of common.config needs a workload here"


def workload(config: ExperimentConfig) -> Workload:
    """The workload `config` trains."""
    return WORKLOADS[config.model]


def weight_shapes(config: ExperimentConfig) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the model's portable weights, in Keras' `get_weights()` order."""
    return workload(config).weight_shapes(config)


def initial_weights(config: ExperimentConfig, seed: int) -> Weights:
    """The shared initial weights of `config`'s model for `seed`."""
    return workload(config).initial_weights(config, seed)


def training_flops_per_sample(config: ExperimentConfig) -> int:
    """Analytic FLOPs of one training sample (forward and backward) of `config`'s model."""
    return workload(config).training_flops(config)


def forward_flops_per_sample(config: ExperimentConfig) -> int:
    """Analytic FLOPs of one inference sample of `config`'s model."""
    return workload(config).forward_flops(config)


def describe_model(config: ExperimentConfig) -> str:
    """The model in a few words, for reports: 'MLP 784-256-128-10'."""
    return workload(config).describe(config)
