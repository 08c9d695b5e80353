"""The workloads by name: everything model-specific that is framework-free, behind one interface.

A workload (AlgoPerf's framework-free `Workload`, big_vision's models by name) owns its reference's
defaults and their validation, its portable weights, its FLOP counts and the matrix products of one
step (for the roofline), its float64 reference and the tolerances `verify` holds it to. Nothing outside
this package and the backends' builders branches on a model's name: the rest of mnist-bench asks the
workload. Adding a model is one module here plus one builder per framework family
(docs/contributing.md).
"""

from __future__ import annotations


import numpy as np

from common.errors import MnistBenchError
from common.weights import Weights
from common.workloads import cnn, mlp
from common.workloads.base import EARLY_STEPS, ModelSettings, Tolerance, Workload


__all__ = ["EARLY_STEPS", "MODELS", "ModelSettings", "WORKLOADS", "Tolerance", "UnknownModelError", "Workload", "cnn", "describe_model",
           "forward_flops_per_sample", "get_workload", "initial_weights", "mlp", "model_inputs",
           "training_flops_per_sample", "weight_shapes", "workload"]


class UnknownModelError(MnistBenchError, ValueError):
    """A model name no workload has."""


# Every model by name; a new model is one module, imported above, and one entry here.
WORKLOADS: dict[str, Workload] = {workload.name: workload for workload in (
    mlp.MlpWorkload(),
    cnn.ConvNetWorkload(),
)}
MODELS = tuple(WORKLOADS)


def get_workload(model: str) -> Workload:
    """The workload named `model`; an unknown name lists the valid ones (the same error everywhere)."""
    try:
        return WORKLOADS[model]
    except (KeyError, TypeError):
        raise UnknownModelError(f"unknown model {model!r}; valid models: {', '.join(MODELS)}") from None


def workload(config: ModelSettings) -> Workload:
    """The workload `config` trains."""
    return get_workload(config.model)


def weight_shapes(config: ModelSettings) -> dict[str, tuple[int, ...]]:
    """Names and shapes of `config`'s model's portable weights, in Keras' `get_weights()` order."""
    return workload(config).weight_shapes(config)


def initial_weights(config: ModelSettings, seed: int) -> Weights:
    """The shared initial weights of `config`'s model for `seed`."""
    return workload(config).initial_weights(config, seed)


def training_flops_per_sample(config: ModelSettings) -> int:
    """Analytic FLOPs of one training sample (forward and backward) of `config`'s model."""
    return workload(config).training_flops(config)


def forward_flops_per_sample(config: ModelSettings) -> int:
    """Analytic FLOPs of one inference sample of `config`'s model."""
    return workload(config).forward_flops(config)


def describe_model(config: ModelSettings) -> str:
    """The model in a few words, for reports: 'MLP 784-256-128-10'."""
    return workload(config).describe(config)


def model_inputs(config: ModelSettings, x: np.ndarray) -> np.ndarray:
    """The shared flat rows in the shape `config`'s model takes (a view, no copy)."""
    return x.reshape(len(x), *workload(config).input_shape)
