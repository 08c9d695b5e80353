"""Analytic FLOP counts for the MLP: written once, used by the suite, the report and the roofline."""

from __future__ import annotations

from collections.abc import Sequence


def forward_flops_per_sample(layer_sizes: Sequence[int]) -> int:
    """Multiply-adds of every dense layer, counted as 2 FLOPs each (biases and ReLU ignored)."""
    return 2 * sum(fan_in * fan_out for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:]))


def training_flops_per_sample(layer_sizes: Sequence[int]) -> int:
    """Forward + weight gradients (the same again) + input gradients of every layer but the first.

    784-256-128-10: 469,504 + 469,504 + 68,096 = 1,007,104 FLOPs per training sample.
    """
    matmuls = [fan_in * fan_out for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:])]
    return 2 * sum(matmuls) + 2 * sum(matmuls) + 2 * sum(matmuls[1:])


def gflops_per_s(flops: float, seconds: float) -> float:
    """Achieved GFLOP/s."""
    return flops / seconds / 1e9
