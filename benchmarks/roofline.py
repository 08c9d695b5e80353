"""This machine's limits, measured with JAX: float32 GEMM peak, memory bandwidth, and the training floor.

Usage: python -m benchmarks.roofline [--device cpu|gpu] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

from common.config import ExperimentConfig
from common.data import steps_per_epoch, train_sample_count
from common.flops import training_flops_per_sample
from common.weights import weight_shapes

GEMM_SIZE = 2048  # large enough to reach the BLAS/XLA peak, small enough to take ~0.1 s a call on a CPU
BANDWIDTH_MIB = 256  # far beyond any cache


def _best_seconds(function, *args, repeats: int) -> float:
    function(*args).block_until_ready()  # compile and warm up, untimed
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function(*args).block_until_ready()  # synchronized before the clock is read
        best = min(best, time.perf_counter() - start)
    return best


def measure(device: str = "cpu", repeats: int = 7) -> dict:
    """GEMM GFLOP/s and copy bandwidth GB/s on `device` (best of `repeats`, after warm-up).

    JAX's process settings must be in force already (`backends.devices.configure_process`).
    """
    from backends.devices import jax_device

    target = jax_device(device)
    import jax
    import jax.numpy as jnp

    key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
    a = jax.device_put(jax.random.normal(key_a, (GEMM_SIZE, GEMM_SIZE), jnp.float32), target)
    b = jax.device_put(jax.random.normal(key_b, (GEMM_SIZE, GEMM_SIZE), jnp.float32), target)
    gemm_s = _best_seconds(jax.jit(jnp.matmul), a, b, repeats=repeats)
    elements = BANDWIDTH_MIB * 2 ** 20 // 4
    x = jax.device_put(jnp.ones((elements,), jnp.float32), target)
    copy_s = _best_seconds(jax.jit(lambda v: v * 2.0 + 1.0), x, repeats=repeats)
    return {
        "device": f"{target.platform}:{target.id} ({target.device_kind})",
        "gemm_size": GEMM_SIZE,
        "gemm_peak_gflops": 2 * GEMM_SIZE ** 3 / gemm_s / 1e9,
        "bandwidth_gb_s": 2 * elements * 4 / copy_s / 1e9,  # one read and one write per element
    }


def training_floor_s(config: ExperimentConfig, train_samples: int, gemm_peak_gflops: float) -> float:
    """Seconds per epoch if every FLOP of training ran at the measured GEMM peak."""
    return training_flops_per_sample(config.layer_sizes) * train_samples / (gemm_peak_gflops * 1e9)


def adam_traffic_floor_s(config: ExperimentConfig, train_samples: int, bandwidth_gb_s: float) -> float:
    """Seconds per epoch for the optimizer alone if parameters, gradients and moments streamed from memory.

    Each step reads parameter, gradient and both moments and writes parameter and both moments:
    7 float32 per parameter, independent of the batch size.
    """
    parameters = sum(math.prod(shape) for shape in weight_shapes(config.layer_sizes).values())
    steps = steps_per_epoch(train_samples, config.batch_size)
    return steps * parameters * 7 * 4 / (bandwidth_gb_s * 1e9)


def describe(limits: dict, config: ExperimentConfig) -> str:
    """Human-readable limits and floors for the configured training."""
    train_samples = train_sample_count(config)
    floor = training_floor_s(config, train_samples, limits["gemm_peak_gflops"])
    adam = adam_traffic_floor_s(config, train_samples, limits["bandwidth_gb_s"])
    flops = training_flops_per_sample(config.layer_sizes)
    return "\n".join([
        f"device:              {limits['device']}",
        f"fp32 GEMM peak:      {limits['gemm_peak_gflops']:.1f} GFLOP/s ({limits['gemm_size']}^3 matmul, best of runs)",
        f"memory bandwidth:    {limits['bandwidth_gb_s']:.1f} GB/s ({BANDWIDTH_MIB} MiB read + write)",
        f"training FLOPs:      {flops:,} per sample, {flops * train_samples / 1e9:.1f} GFLOP per epoch "
        f"of {train_samples:,} samples",
        f"compute floor:       {floor:.3f} s per epoch at the GEMM peak",
        f"Adam traffic floor:  {adam:.3f} s per epoch at batch {config.batch_size} if the optimizer state "
        "streamed from DRAM (it fits in cache on most CPUs)",
    ])


def main(argv: list[str] | None = None) -> int:
    """Print (or emit as JSON) the measured limits."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.roofline", description=__doc__)
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from backends.devices import configure_process

    configure_process(("jax",), args.device)  # before JAX is imported
    limits = measure(args.device)
    print(json.dumps(limits) if args.json else describe(limits, ExperimentConfig()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
