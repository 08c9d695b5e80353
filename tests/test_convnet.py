"""The convnet's framework-free parts: its shape and parameter count, its shared weights, its FLOP count, and
a float64 reference whose gradients agree with finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from common.config import ExperimentConfig
from common.weights import parameter_count
from common.workloads.cnn import (as_images, cnn_forward, cnn_loss_and_grads, cnn_weight_shapes, conv2d,
                                  feature_map_sizes, init_cnn_weights, max_pool)
from common.workloads import workload
from common.workloads.mlp import init_weights

CNN = ExperimentConfig(model="cnn")


def test_shapes_and_parameter_count_are_keras_examples():
    assert feature_map_sizes() == [13, 5]
    assert cnn_weight_shapes() == {"conv_0/kernel": (3, 3, 1, 32), "conv_0/bias": (32,),
                                   "conv_1/kernel": (3, 3, 32, 64), "conv_1/bias": (64,),
                                   "dense_0/kernel": (1600, 10), "dense_0/bias": (10,)}
    assert parameter_count(init_cnn_weights(0)) == 34_826  # model.summary() of the Keras example


def test_shared_weights_are_glorot_uniform_and_reproducible():
    weights = init_cnn_weights(3)
    assert all(np.array_equal(weights[name], init_cnn_weights(3)[name]) for name in weights)
    assert not np.array_equal(weights["conv_1/kernel"], init_cnn_weights(4)["conv_1/kernel"])
    # Keras' fans for a conv kernel: receptive field x channels in / out.
    for name, fan_in, fan_out in (("conv_0", 9, 9 * 32), ("conv_1", 9 * 32, 9 * 64), ("dense_0", 1600, 10)):
        limit = np.sqrt(6 / (fan_in + fan_out))
        kernel = weights[f"{name}/kernel"]
        assert kernel.dtype == np.float32 and np.abs(kernel).max() <= limit
        assert np.abs(kernel).max() > 0.95 * limit  # uniform over the whole range, not a narrower one
        assert not weights[f"{name}/bias"].any()
    # The MLP's weights are untouched by the convnet's stream.
    assert init_weights((784, 256, 128, 10), 3)["dense_0/kernel"][0, 0] != weights["dense_0/kernel"][0, 0]


def test_flop_counts_match_a_hand_count():
    conv_0 = 26 * 26 * 32 * 3 * 3 * 1
    conv_1 = 11 * 11 * 64 * 3 * 3 * 32
    dense = 1600 * 10
    assert workload(CNN).forward_flops(CNN) == 2 * (conv_0 + conv_1 + dense) == 4_881_920
    assert workload(CNN).training_flops(CNN) == 2 * 2 * (conv_0 + conv_1 + dense) + 2 * (conv_1 + dense) == 14_256_384


def test_conv_and_pool_against_loops():
    rng = np.random.default_rng(0)
    x, kernel, bias = rng.normal(size=(2, 7, 6, 3)), rng.normal(size=(3, 3, 3, 4)), rng.normal(size=4)
    out = conv2d(x, kernel, bias)
    expected = np.zeros((2, 5, 4, 4))
    for n, row, col, o in np.ndindex(expected.shape):
        expected[n, row, col, o] = np.sum(x[n, row:row + 3, col:col + 3, :] * kernel[..., o]) + bias[o]
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    pooled, _ = max_pool(out)  # 5 x 4 -> 2 x 2: the odd last row dropped
    assert pooled.shape == (2, 2, 2, 4)
    np.testing.assert_array_equal(pooled[1, 1, 0], out[1, 2:4, 0:2].max(axis=(0, 1)))


def test_reference_gradients_match_finite_differences():
    rng = np.random.default_rng(1)
    weights = {name: array.astype(np.float64) for name, array in init_cnn_weights(0).items()}
    weights = {name: array + (0.05 * rng.normal(size=array.shape) if name.endswith("bias") else 0)
               for name, array in weights.items()}  # nonzero biases, so their gradients are exercised too
    images = as_images(rng.random((3, 784)))
    labels = np.eye(10)[rng.integers(0, 10, 3)]
    loss, grads = cnn_loss_and_grads(weights, images, labels)
    assert set(grads) == set(weights) and all(grads[name].shape == weights[name].shape for name in weights)
    step, checked = 1e-6, []
    for name in weights:
        for index in [tuple(rng.integers(0, size) for size in weights[name].shape) for _ in range(4)]:
            moved = {key: array.copy() for key, array in weights.items()}
            moved[name][index] += step
            up = cnn_loss_and_grads(moved, images, labels)[0]
            moved[name][index] -= 2 * step
            down = cnn_loss_and_grads(moved, images, labels)[0]
            assert grads[name][index] == pytest.approx((up - down) / (2 * step), abs=1e-7, rel=1e-4), (name, index)
            checked.append(abs(grads[name][index]))
    assert sorted(checked)[len(checked) // 2] > 1e-4  # most checked entries carry a real gradient
    logits, _ = cnn_forward(weights, images)
    assert logits.shape == (3, 10) and np.isfinite(loss)
