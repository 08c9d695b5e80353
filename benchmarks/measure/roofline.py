"""This machine's limits: float32 GEMM peak and memory bandwidth (JAX), and two training floors.

The large-GEMM floor divides an epoch's FLOPs by the 2048^3 GEMM peak, a rate no batch-32 step reaches.
The step floor times the configured batch size's own GEMM shapes (forward, weight and input gradients)
with a framework-neutral BLAS, NumPy's, at 1 thread and at every usable thread, and adds the Adam
update's memory traffic at the bandwidth of a working set that size: what one step needs at least. The
convnet's convolutions enter as the GEMMs of their im2col form (the kernel cuDNN, oneDNN and XLA's CPU
backend lower a small convolution to), with the im2col copies, pooling and ReLU left out, so its floor
is a lower bound too.

Child usage (benchmarks/harness/children.py): python -m benchmarks.measure.roofline JOB.json LIMITS.json (the harness' probe; `mnist-bench roofline` prints)
"""

from __future__ import annotations

import json
import os
import sys
import time

from common.config import ExperimentConfig
from common.data import steps_per_epoch, train_sample_count
from common.job import Job
from common.workloads import training_flops_per_sample, workload

# Variables with which some machines' set-up pins OpenBLAS to an older kernel family (env notes: older
# OpenBLAS builds crash on newer CPUs). They slow a current NumPy, so the measuring child runs without them.
BLAS_FORCING_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
GEMM_SIZE = 2048  # large enough to reach the BLAS/XLA peak, small enough to take ~0.1 s a call on a CPU
BANDWIDTH_MIB = 256  # far beyond any cache
ROOFLINE_BATCH_SIZES = (32, 512, 2048)  # step floors `mnist-bench roofline` prints beside the configured one


def _best_seconds(function, *args, repeats: int) -> float:
    function(*args).block_until_ready()  # compile and warm up, untimed
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function(*args).block_until_ready()  # synchronized before the clock is read
        best = min(best, time.perf_counter() - start)
    return best


def blas_forcing(environment=None) -> dict[str, str]:
    """What `environment` (default: this process') forces on OpenBLAS, {variable: value}; empty when nothing."""
    environment = os.environ if environment is None else environment
    return {name: environment[name] for name in BLAS_FORCING_VARIABLES if name in environment}


def measuring_environment(environment: dict[str, str]) -> dict[str, str]:
    """A measuring child's environment: `environment` without the variables that force slower BLAS kernels."""
    return {name: value for name, value in environment.items() if name not in BLAS_FORCING_VARIABLES}


def numpy_gemm_gflops(repeats: int) -> float | None:
    """NumPy's BLAS at GEMM_SIZE^3 on every usable thread, GFLOP/s (the peak's second candidate; on the CPU)."""
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = (rng.random((GEMM_SIZE, GEMM_SIZE), dtype=np.float32) for _ in range(2))
    out = np.empty_like(a)
    return 2 * GEMM_SIZE ** 3 / _best_of(lambda: np.matmul(a, b, out=out), repeats, 1) / 1e9


def measure(device: str, repeats: int = 7) -> dict:
    """GEMM GFLOP/s and copy bandwidth GB/s on `device` (best of `repeats`, after warm-up): the GEMM peak is the
    faster of XLA's dot and, on the CPU, NumPy's BLAS, named in `gemm_peak_by`.

    JAX's process settings must be in force already (`backends.frameworks.configure_process`).
    """
    from backends.devices import describe_jax_devices, jax_device

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
    peaks = {"xla": 2 * GEMM_SIZE ** 3 / gemm_s / 1e9}
    if device == "cpu":
        peaks["numpy"] = numpy_gemm_gflops(repeats)
    peak_by = max(peaks, key=peaks.get)
    return {
        "device": describe_jax_devices([target]),
        "gemm_size": GEMM_SIZE,
        "gemm_peak_gflops": peaks[peak_by],
        "gemm_peak_by": peak_by,
        "gemm_peak_candidates_gflops": peaks,
        "bandwidth_gb_s": 2 * elements * 4 / copy_s / 1e9,  # one read and one write per element
    }


def step_gemm_shapes(config: ExperimentConfig) -> list[tuple[int, int, int]]:
    """(m, k, n) of every matrix product in one training step: forward, weight gradients, and the input
    gradients of every layer but the first (the MLP at batch 32: eight products); the workload says which."""
    return workload(config).step_gemm_shapes(config)


def parameter_count(config: ExperimentConfig) -> int:
    """Scalars in the model's weights."""
    return workload(config).parameter_count(config)


def _best_of(function, repeats: int, calls: int) -> float:
    """Best mean seconds per call over `repeats` timings of `calls` calls (after one untimed call)."""
    function()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            function()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


# The step floor's kernels are timed until their best settles, not a fixed number of times: blocks of calls until
# the best has not improved by more than CONVERGED_WITHIN for CONVERGED_AFTER blocks in a row (at least
# CONVERGED_AFTER blocks, at most KERNEL_BUDGET_S seconds a kernel). How long that takes and how well two runs agree:
# docs/results/2026-12-08-timing-rounds.md.
CONVERGED_WITHIN = 0.01
CONVERGED_AFTER = 10
KERNEL_BUDGET_S = 4.0


def converged_best(function, calls: int, within: float = CONVERGED_WITHIN, after: int = CONVERGED_AFTER,
                   budget_s: float = KERNEL_BUDGET_S) -> tuple[float, int]:
    """(best mean seconds per call, blocks timed): blocks of `calls` calls (after one untimed call) until the best
    has not improved by more than `within` for `after` blocks in a row, or `budget_s` has run out."""
    function()
    best, unchanged, blocks = float("inf"), 0, 0
    deadline = time.perf_counter() + budget_s
    while unchanged < after and time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(calls):
            function()
        seconds = (time.perf_counter() - start) / calls
        blocks += 1
        unchanged = 0 if seconds < best * (1 - within) else unchanged + 1
        best = min(best, seconds)
    return best, blocks


def xla_step_gemm_s(config: ExperimentConfig, calls: int) -> float | None:
    """Seconds for one step's GEMMs as one jitted XLA program on the CPU (None where JAX cannot run them)."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    import numpy as np

    try:
        cpu = jax.devices("cpu")[0]
    except RuntimeError:  # JAX limited to other platforms (JAX_PLATFORMS=cuda)
        return None
    rng = np.random.default_rng(0)
    operands = [tuple(jax.device_put(rng.random(shape, dtype=np.float32), cpu) for shape in ((m, k), (k, n)))
                for m, k, n in step_gemm_shapes(config)]
    products = jax.jit(lambda pairs: [jnp.matmul(a, b) for a, b in pairs])  # every product is an output: none elided
    return converged_best(lambda: jax.block_until_ready(products(operands)), calls)[0]


def blas_kernel() -> str:
    """The BLAS NumPy runs here, with the kernel family it picked (threadpoolctl's `architecture`)."""
    from threadpoolctl import threadpool_info

    blas = [f"{entry.get('internal_api')} {entry.get('version')} ({entry.get('architecture')})"
            for entry in threadpool_info() if entry.get("user_api") == "blas"]
    return "; ".join(blas) or "unknown"


def measure_step_floor(config: ExperimentConfig, repeats: int = 7) -> dict:
    """The step floor for `config`'s batch size: its GEMMs with the fastest kernel found (NumPy's BLAS at 1 and
    all threads, XLA's dot), plus Adam's traffic; `floor_gemms_by` names the kernel that set it."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    operands = [(rng.random((m, k), dtype=np.float32), rng.random((k, n), dtype=np.float32), np.empty((m, n), np.float32))
                for m, k, n in step_gemm_shapes(config)]

    def gemms():
        for a, b, out in operands:
            np.matmul(a, b, out=out)

    calls = max(1, 2000 * 1_000_000 // training_flops_per_sample(config) // config.batch_size)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gemm_s, blocks = {}, {}
    for threads in sorted({1, usable}):
        with threadpool_limits(limits=threads, user_api="blas"):
            gemm_s[threads], blocks[threads] = converged_best(gemms, calls)
    # Adam reads parameter, gradient and both moments and writes parameter and both moments: 7 float32 per
    # parameter, timed as a streaming update over a working set of the optimizer state's own size.
    parameters = parameter_count(config)
    state = [rng.random(parameters, dtype=np.float32) for _ in range(4)]

    def adam_like():
        np.multiply(state[0], 0.9, out=state[2])
        np.add(state[2], state[1], out=state[2])
        np.multiply(state[3], 0.999, out=state[3])
        np.subtract(state[0], state[2], out=state[0])

    stream_s = _best_of(adam_like, repeats, 20)
    bytes_streamed = 4 * parameters * 4 * 3  # four updates, each reads two arrays and writes one
    adam_s = 7 * 4 * parameters / (bytes_streamed / stream_s)
    flops = 2 * sum(m * k * n for m, k, n in step_gemm_shapes(config))
    blas = blas_kernel()
    candidates = {f"numpy {blas}, {threads} thread{'s' * (threads > 1)}": seconds for threads, seconds in gemm_s.items()}
    xla_s = xla_step_gemm_s(config, calls)
    if xla_s is not None:
        candidates["xla dot (jax.jit)"] = xla_s
    floor_by = min(candidates, key=candidates.get)
    return {
        "batch_size": config.batch_size,
        "gemm_flops_per_step": flops,
        "gemm_s_1_thread": gemm_s[1],
        "gemm_s_all_threads": gemm_s[usable],
        "gemm_s_xla": xla_s,
        "threads": usable,
        "adam_traffic_s": adam_s,
        "step_floor_s_1_thread": gemm_s[1] + adam_s,
        "step_floor_s": candidates[floor_by] + adam_s,
        "floor_gemms_by": floor_by,
        "blocks_timed": blocks[usable],
        "blas": blas,
        # What the measuring process' own environment forced on OpenBLAS: empty unless the parent's
        # unforced measurement failed and it fell back to the environment as set.
        "blas_forced": blas_forcing(),
    }


def measure_allreduce(config: ExperimentConfig, device: str, devices: int, repeats: int = 7) -> dict:
    """Seconds to sum one gradient per device over `devices` JAX devices: what data parallelism adds per step.

    The payload is the model's parameter count in float32, reduced as the data-parallel backends reduce
    it (XLA's all-reduce over a one-axis mesh). JAX must have been configured for `devices` devices.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from backends.devices import jax_devices

    mesh = jax.sharding.Mesh(np.array(jax_devices(device, devices)), ("data",))
    parameters = parameter_count(config)
    gradients = jax.device_put(jnp.ones((devices, parameters), jnp.float32),
                               jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data")))
    reduce = jax.jit(lambda per_device: per_device.sum(axis=0),
                     out_shardings=jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    seconds = _best_of(lambda: reduce(gradients).block_until_ready(), repeats, 50)
    # One float: the fixed cost of a collective (the devices meeting), paid by every all-reduce in a step.
    scalars = jax.device_put(jnp.ones((devices, 1), jnp.float32), gradients.sharding)
    latency = _best_of(lambda: reduce(scalars).block_until_ready(), repeats, 50)
    return {"devices": devices, "parameters": parameters, "bytes": 4 * parameters, "allreduce_s": seconds,
            "allreduce_latency_s": latency}


def training_floor_s(config: ExperimentConfig, train_samples: int, gemm_peak_gflops: float) -> float:
    """Seconds per epoch if every FLOP of training ran at the measured GEMM peak."""
    return training_flops_per_sample(config) * train_samples / (gemm_peak_gflops * 1e9)


def adam_traffic_floor_s(config: ExperimentConfig, train_samples: int, bandwidth_gb_s: float) -> float:
    """Seconds per epoch for the optimizer alone if parameters, gradients and moments streamed from memory.

    Each step reads parameter, gradient and both moments and writes parameter and both moments:
    7 float32 per parameter, independent of the batch size.
    """
    parameters = parameter_count(config)
    steps = steps_per_epoch(train_samples, config.batch_size)
    return steps * parameters * 7 * 4 / (bandwidth_gb_s * 1e9)


def describe(limits: dict, config: ExperimentConfig, step_floors: list[dict] | None = None) -> str:
    """Human-readable limits and floors for the configured training."""
    train_samples = train_sample_count(config)
    floor = training_floor_s(config, train_samples, limits["gemm_peak_gflops"])
    adam = adam_traffic_floor_s(config, train_samples, limits["bandwidth_gb_s"])
    flops = training_flops_per_sample(config)
    lines = [
        f"model:               {config.model}",
        f"device:              {limits['device']}",
        f"fp32 GEMM peak:      {limits['gemm_peak_gflops']:.1f} GFLOP/s ({limits['gemm_size']}^3 matmul, best of runs, "
        f"by {limits.get('gemm_peak_by', 'xla')}: "
        + ", ".join(f"{name} {value:.1f}" for name, value in limits.get("gemm_peak_candidates_gflops", {}).items()) + ")",
        f"memory bandwidth:    {limits['bandwidth_gb_s']:.1f} GB/s ({BANDWIDTH_MIB} MiB read + write)",
        f"training FLOPs:      {flops:,} per sample, {flops * train_samples / 1e9:.1f} GFLOP per epoch "
        f"of {train_samples:,} samples",
        f"large-GEMM floor:    {floor:.3f} s per epoch if every FLOP ran at the 2048^3 GEMM peak",
        f"Adam traffic floor:  {adam:.3f} s per epoch at batch {config.batch_size} if the optimizer state "
        "streamed from DRAM (it fits in cache on most CPUs)",
    ]
    if limits.get("allreduce"):
        reduce = limits["allreduce"]
        lines.append(f"gradient all-reduce: {reduce['allreduce_s'] * 1e3:.3f} ms per step to sum "
                     f"{reduce['parameters']:,} float32 ({reduce['bytes'] / 2 ** 20:.2f} MiB) over "
                     f"{reduce['devices']} devices; "
                     f"{reduce['allreduce_latency_s'] * 1e3:.3f} ms for one float (the cost of any collective)")
    for step in step_floors or []:
        steps = steps_per_epoch(train_samples, step["batch_size"])
        lines.append(
            f"step floor, batch {step['batch_size']:<5} {step['step_floor_s'] * 1e3:.3f} ms per step = "
            f"{step['step_floor_s'] * steps:.3f} s per epoch ({steps} steps): GEMMs "
            f"{step['gemm_s_1_thread'] * 1e6:.0f} us on 1 thread, {step['gemm_s_all_threads'] * 1e6:.0f} us on "
            f"{step['threads']} ({step['gemm_flops_per_step'] / step['gemm_s_all_threads'] / 1e9:.0f} GFLOP/s)"
            + (f", XLA's dot {step['gemm_s_xla'] * 1e6:.0f} us" if step.get("gemm_s_xla") else "")
            + f"; Adam traffic {step['adam_traffic_s'] * 1e6:.0f} us; set by {step.get('floor_gemms_by', step['blas'])}"
            + (f" (environment forced {step['blas_forced']})" if step.get("blas_forced") else ""))
    return "\n".join(lines)


def floor_key(job: Job) -> tuple:
    """Everything of `job` that its measured limits depend on: the model and its shape settings (the step's GEMMs
    and Adam traffic), the device, the device count (the all-reduce) and the precision the measuring process runs
    at. Two jobs may share one measurement only when their keys are equal."""
    config = job.config
    return (config.model, tuple(config.hidden_units), config.batch_size, job.device, job.devices, job.precision)


def measure_limits(job: Job) -> dict:
    """Every limit a run of `job` is set against, measured in this process: GEMM peak, bandwidth, the step floor
    at the job's batch size and, on several devices, the gradient all-reduce. Configures JAX for the job first."""
    from backends.frameworks import configure_process

    configure_process(("jax",), job)  # before JAX is imported; the job's precision, as its workers train
    try:
        step_floor = measure_step_floor(job.config)
    except ImportError as error:  # a bare JAX machine (the GPU image) has no threadpoolctl: no CPU step floor
        print(f"step floor not measured: {error}", file=sys.stderr)
        step_floor = None
    limits = {**measure(job.device), "step_floor": step_floor}
    if job.devices > 1:
        limits["allreduce"] = measure_allreduce(job.config, job.device, job.devices)
    return limits


def main(argv: list[str] | None = None) -> int:
    """Child entry point: measure the limits of the job in JOB.json and write them to LIMITS.json; with a third
    argument (batch sizes, comma-separated), their step floors too, as `other_step_floors`."""
    job_path, limits_path, *batch_sizes = argv if argv is not None else sys.argv[1:]
    from common.atomic import write_text_atomic

    with open(job_path, encoding="utf-8") as handle:
        job = Job.from_dict(json.load(handle))
    limits = measure_limits(job)
    if batch_sizes and limits["step_floor"] is not None:
        limits["other_step_floors"] = [measure_step_floor(job.config.replace(batch_size=int(size)))
                                       for size in batch_sizes[0].split(",") if int(size) != job.config.batch_size]
    write_text_atomic(limits_path, json.dumps(limits))
    return 0


if __name__ == "__main__":
    sys.exit(main())
