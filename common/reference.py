"""The float64 training loop every workload's reference shares: Keras' Adam step, written from the math.

What every backend is checked against (`mnist-bench verify` and the tests): no framework, double
precision, the update rule of keras/src/optimizers/adam.py (`Adam.update_step`, Keras 3.x). Each model's
own forward and backward live with its workload (common/workloads/).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from common.weights import Weights
from common.workloads.base import softmax

if TYPE_CHECKING:
    from common.config import ExperimentConfig

__all__ = ["LossAndGrads", "keras_adam_step", "softmax", "train_reference"]

LossAndGrads = Callable[[Weights, np.ndarray, np.ndarray], tuple[float, Weights]]


def keras_adam_step(weights: Weights, grads: Weights, state: dict, step: int, lr: float = 1e-3, beta_1: float = 0.9,
                    beta_2: float = 0.999, epsilon: float = 1e-7) -> Weights:
    """One Keras 3 Adam update; `step` counts from 0; `state` holds the moments and is updated in place.

    t = step + 1; alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t); m += (g - m)(1 - beta_1);
    v += (g^2 - v)(1 - beta_2); w -= m * alpha / (sqrt(v) + epsilon). Unlike optax.adam, epsilon is
    added to the uncorrected sqrt(v): the rules differ most in the first steps.
    """
    t = step + 1
    alpha = lr * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
    new_weights = {}
    for name, w in weights.items():
        m, v = state.setdefault(name, (np.zeros_like(w), np.zeros_like(w)))
        m = m + (grads[name] - m) * (1 - beta_1)
        v = v + (grads[name] ** 2 - v) * (1 - beta_2)
        state[name] = (m, v)
        new_weights[name] = w - m * alpha / (np.sqrt(v) + epsilon)
    return new_weights


def train_reference(weights: Weights, x: np.ndarray, y_one_hot: np.ndarray, batches: Sequence[np.ndarray],
                    config: ExperimentConfig, loss_and_grads_fn: LossAndGrads):
    """Train in float64 on each batch in turn; yield (loss before the step, weights after it) per step.

    `loss_and_grads_fn(weights, x, y_one_hot)` is the model's (its workload's `reference_loss_and_grads`).
    """
    weights = {name: np.asarray(array, np.float64) for name, array in weights.items()}
    x, y_one_hot, state = np.asarray(x, np.float64), np.asarray(y_one_hot, np.float64), {}
    for step, index in enumerate(batches):
        loss, grads = loss_and_grads_fn(weights, x[index], y_one_hot[index])
        weights = keras_adam_step(weights, grads, state, step, config.learning_rate, config.beta_1, config.beta_2,
                                  config.epsilon)
        yield loss, weights
