"""Achieved FLOP rates; each workload counts its own FLOPs (common/workloads/)."""

from __future__ import annotations


def gflops_per_s(flops: float, seconds: float) -> float:
    """Achieved GFLOP/s."""
    return flops / seconds / 1e9
