"""Keras 3's Adam update rule as an Optax GradientTransformation.

optax.adam divides by sqrt(v_hat) + eps with bias-corrected moments; Keras 3 folds both bias
corrections into the step size and adds eps to the *uncorrected* sqrt(v) ("epsilon hat" of
Kingma & Ba, Adam, section 2, final paragraph). Source: keras/src/optimizers/adam.py,
`Adam.update_step` (Keras 3.x):

    t = iterations + 1
    alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)
    m += (g - m) * (1 - beta_1)
    v += (g**2 - v) * (1 - beta_2)
    w -= (m * alpha) / (sqrt(v) + epsilon)

The two rules differ most in the first steps: at t = 1 Keras' eps of 1e-7 acts like optax's
eps = 1e-7 / sqrt(1 - 0.999) ~ 3.2e-6.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class KerasAdamState(NamedTuple):
    """Step count and the two moment estimates, shaped like the parameters."""

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates


def keras_step_size(count, learning_rate: float, beta_1: float, beta_2: float):
    """alpha of step count + 1: the learning rate with both bias corrections folded in, as Keras computes it."""
    step = (count + 1).astype(jnp.float32)
    return learning_rate * jnp.sqrt(1 - beta_2 ** step) / (1 - beta_1 ** step)


def keras_adam(learning_rate: float, beta_1: float = 0.9, beta_2: float = 0.999,
               epsilon: float = 1e-7) -> optax.GradientTransformation:
    """Adam exactly as Keras 3 applies it; `updates` are to be added to the parameters."""

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return KerasAdamState(count=jnp.zeros([], jnp.int32), mu=zeros, nu=jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params=None):
        del params
        alpha = keras_step_size(state.count, learning_rate, beta_1, beta_2)
        mu = jax.tree.map(lambda m, g: m + (g - m) * (1 - beta_1), state.mu, grads)
        nu = jax.tree.map(lambda v, g: v + (jnp.square(g) - v) * (1 - beta_2), state.nu, grads)
        updates = jax.tree.map(lambda m, v: -(m * alpha) / (jnp.sqrt(v) + epsilon), mu, nu)
        return updates, KerasAdamState(count=state.count + 1, mu=mu, nu=nu)

    return optax.GradientTransformation(init, update)
