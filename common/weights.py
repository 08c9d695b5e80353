"""Portable weights: named float32 NumPy arrays in a fixed order, the one form every backend takes and returns
(each workload draws its own)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

Weights = dict[str, np.ndarray]


def parameter_count(weights: Weights) -> int:
    """Total number of scalars across all arrays."""
    return int(sum(array.size for array in weights.values()))


def as_layer_list(weights: Weights, shapes: Mapping[str, tuple[int, ...]]) -> list[np.ndarray]:
    """The arrays in the order of `shapes` (a model's `weight_shapes`): the order of Keras' `get_weights()`."""
    return [weights[name] for name in shapes]


def from_layer_list(arrays: Sequence[np.ndarray], shapes: Mapping[str, tuple[int, ...]]) -> Weights:
    """Inverse of `as_layer_list`, copying into float32 NumPy arrays."""
    if len(arrays) != len(shapes):
        raise ValueError(f"{len(arrays)} arrays for the {len(shapes)} of {list(shapes)}")
    return {name: np.array(array, dtype=np.float32) for name, array in zip(shapes, arrays)}


def check_weights(weights: Weights, expected: Mapping[str, tuple[int, ...]]) -> None:
    """Raise ValueError naming the first array whose name, shape or dtype is not in `expected` (name -> shape)."""
    if set(weights) != set(expected):
        raise ValueError(f"weights have arrays {sorted(weights)}, expected {sorted(expected)}")
    for name, shape in expected.items():
        array = weights[name]
        if array.shape != shape or array.dtype != np.float32:
            raise ValueError(f"weights[{name!r}] is {array.dtype}{array.shape}, expected float32{shape}")


