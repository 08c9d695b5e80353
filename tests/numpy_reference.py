"""A float64 NumPy reference of the MLP: forward, backward and Keras' Adam step, written from the math."""

from __future__ import annotations

import numpy as np


def forward(weights, x):
    """Logits and the hidden activations (needed by backward)."""
    activations = [x]
    n_layers = len(weights) // 2
    for index in range(n_layers):
        z = activations[-1] @ weights[f"dense_{index}/kernel"] + weights[f"dense_{index}/bias"]
        activations.append(np.maximum(z, 0.0) if index < n_layers - 1 else z)
    return activations[-1], activations


def softmax(logits):
    """Row-wise softmax, stable."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def loss_and_grads(weights, x, y_one_hot):
    """Mean softmax cross-entropy and its gradient for every array."""
    logits, activations = forward(weights, x)
    probs = softmax(logits)
    loss = -np.mean(np.sum(y_one_hot * np.log(probs), axis=1))
    delta = (probs - y_one_hot) / len(x)
    grads = {}
    for index in reversed(range(len(weights) // 2)):
        grads[f"dense_{index}/kernel"] = activations[index].T @ delta
        grads[f"dense_{index}/bias"] = delta.sum(axis=0)
        if index:
            delta = (delta @ weights[f"dense_{index}/kernel"].T) * (activations[index] > 0)
    return loss, grads


def keras_adam_step(weights, grads, state, step, lr=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """One Keras 3 Adam update (keras/src/optimizers/adam.py); `step` counts from 0."""
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
