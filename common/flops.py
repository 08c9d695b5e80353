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


def cnn_layer_macs_per_sample() -> list[int]:
    """Multiply-adds per sample of each layer of the convnet (common/convnet.py), in order: conv, conv, dense.

    A 'valid' 3x3 conv producing an S x S x O map from C channels does S*S*O*9*C of them.
    """
    from common.convnet import KERNEL, NUM_CLASSES, conv_stages, flat_features

    macs = [size * size * filters * KERNEL * KERNEL * channels for size, channels, filters in conv_stages()]
    return macs + [flat_features() * NUM_CLASSES]


def cnn_forward_flops_per_sample() -> int:
    """Convolutions and the dense layer at 2 FLOPs per multiply-add (biases, ReLU, pooling ignored).

    26*26*32*9*1 + 11*11*64*9*32 + 1600*10 = 194,688 + 2,230,272 + 16,000 multiply-adds: 4,881,920 FLOPs.
    """
    return 2 * sum(cnn_layer_macs_per_sample())


def cnn_training_flops_per_sample() -> int:
    """Forward + weight gradients (the same again) + input gradients of every layer but the first.

    4,881,920 + 4,881,920 + 2 * (2,230,272 + 16,000) = 14,256,384 FLOPs per training sample.
    """
    macs = cnn_layer_macs_per_sample()
    return 2 * sum(macs) + 2 * sum(macs) + 2 * sum(macs[1:])
