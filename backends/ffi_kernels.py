"""`flax-ffi`'s two XLA FFI kernels: matrix products in NumPy's BLAS and Keras' Adam in one pass.

The C++ source (`ffi_kernels.cc`) is compiled on first use with the machine's C++ compiler against
jaxlib's FFI headers (`jax.ffi.include_dir()`) into the user cache, keyed by source, jaxlib version,
compiler, flags and CPU, so each machine builds its own once. Both kernels split their work over XLA's
own intra-op thread pool; the BLAS they call (the one NumPy loaded, found with threadpoolctl) is held
to one thread so that no second pool competes for the cores.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from backends.base import BackendError
from backends.keras_adam import KerasAdamState, keras_step_size

SOURCE = Path(__file__).with_name("ffi_kernels.cc")
# -ffp-contract=off: every product and sum rounded as written (no FMA), as the Adam formula reads;
# -fno-math-errno: lets sqrt vectorize; -march=native: the library is built for, and kept on, this machine.
COMPILE_FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-ffp-contract=off", "-std=c++17", "-shared", "-fPIC")
GEMM_TARGET = "mnist_bench_gemm"
ADAM_TARGET = "mnist_bench_adam"
# cblas_sgemm under the names NumPy's bundled OpenBLAS (scipy-openblas, ILP64 or not) or a system BLAS export.
SGEMM_SYMBOLS = ("scipy_cblas_sgemm64_", "cblas_sgemm64_", "scipy_cblas_sgemm", "cblas_sgemm")


_HELD: list = []  # the BLAS thread limit, held while the process lives


class FfiBuildError(BackendError):
    """The FFI kernels could not be compiled or loaded on this machine."""


def compiler() -> str:
    """The C++ compiler to build with: $CXX, else c++ on the PATH."""
    name = os.environ.get("CXX", "c++")
    path = shutil.which(name)
    if path is None:
        raise FfiBuildError(f"flax-ffi compiles its XLA FFI kernels with a C++17 compiler, and {name!r} (from $CXX "
                            "or the default c++) is not on PATH: install one (e.g. apt-get install g++) or set CXX, "
                            "or pick another backend")
    return path


def _cpu_signature() -> str:
    """What -march=native depends on: the CPU's model and feature flags (Linux), else the architecture."""
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        return platform.machine()
    wanted = [line for line in lines if line.startswith(("model name", "flags", "Features"))]
    return platform.machine() + "".join(sorted(set(wanted)))


def library_path(cache_dir: Path | None = None) -> Path:
    """The compiled kernels for this source, jaxlib, compiler and CPU; built into the user cache if missing."""
    from common.mnist import user_cache_dir
    import jaxlib

    cxx = compiler()
    source = SOURCE.read_bytes()
    key = hashlib.sha256(b"\0".join([source, jaxlib.__version__.encode(), cxx.encode(), " ".join(COMPILE_FLAGS).encode(),
                                     _cpu_signature().encode()])).hexdigest()[:16]
    folder = (cache_dir or user_cache_dir()) / "ffi"
    target = folder / f"ffi_kernels-{key}.so"
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    # Built beside its final name and renamed: a concurrent or interrupted build never leaves a partial library.
    handle, scratch = tempfile.mkstemp(prefix=target.stem + ".", suffix=".tmp", dir=folder)
    os.close(handle)
    try:
        command = [cxx, *COMPILE_FLAGS, "-I", jax.ffi.include_dir(), str(SOURCE), "-o", scratch]
        built = subprocess.run(command, capture_output=True, text=True)
        if built.returncode != 0:
            detail = [line for line in built.stderr.splitlines() if "error" in line][:1] or built.stderr.splitlines()[-1:]
            raise FfiBuildError(f"compiling {SOURCE.name} failed ({' '.join(detail)}); command: {' '.join(command)}")
        os.replace(scratch, target)
    finally:
        Path(scratch).unlink(missing_ok=True)
    return target


def numpy_sgemm() -> tuple[int, bool]:
    """Address of cblas_sgemm in the BLAS NumPy loaded, and whether it takes 64-bit integers."""
    from threadpoolctl import threadpool_info

    for entry in threadpool_info():
        if entry.get("user_api") != "blas":
            continue
        library = ctypes.CDLL(entry["filepath"])
        for symbol in SGEMM_SYMBOLS:
            function = getattr(library, symbol, None)
            if function is not None:
                return ctypes.cast(function, ctypes.c_void_p).value, "64_" in symbol
    raise FfiBuildError("flax-ffi needs the BLAS NumPy uses, and threadpoolctl found none exporting cblas_sgemm; "
                        "install NumPy from its wheels (they bundle OpenBLAS) or pick another backend")


@functools.cache
def load() -> Path:
    """Build (once per machine) and load the kernels, register them with XLA, hold the BLAS to one thread."""
    from threadpoolctl import threadpool_limits

    path = library_path()
    library = ctypes.CDLL(str(path))
    address, ilp64 = numpy_sgemm()
    library.mnist_bench_set_sgemm(ctypes.c_void_p(address), ctypes.c_int(ilp64))
    jax.ffi.register_ffi_target(GEMM_TARGET, jax.ffi.pycapsule(library.MnistBenchGemm), platform="cpu")
    jax.ffi.register_ffi_target(ADAM_TARGET, jax.ffi.pycapsule(library.MnistBenchAdam), platform="cpu")
    # Kept for the life of the process: the kernels bring their own parallelism (XLA's pool).
    _HELD.append(threadpool_limits(limits=1, user_api="blas"))
    return path


def gemm(a, b, transpose_a: bool = False, transpose_b: bool = False):
    """op(a) @ op(b) for 2-D float32 arrays, op = transpose when asked, in the FFI kernel."""
    rows = a.shape[1] if transpose_a else a.shape[0]
    columns = b.shape[0] if transpose_b else b.shape[1]
    return jax.ffi.ffi_call(GEMM_TARGET, jax.ShapeDtypeStruct((rows, columns), jnp.float32))(
        a, b, transpose_a=transpose_a, transpose_b=transpose_b)


@jax.custom_vjp
def matmul(x, kernel):
    """x @ kernel whose forward and both gradients are FFI products (the gradients read the operands transposed)."""
    return gemm(x, kernel)


def _matmul_forward(x, kernel):
    return gemm(x, kernel), (x, kernel)


def _matmul_backward(residuals, d_out):
    x, kernel = residuals
    return gemm(d_out, kernel, transpose_b=True), gemm(x, d_out, transpose_a=True)


matmul.defvjp(_matmul_forward, _matmul_backward)


def ffi_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None, out_sharding=None):
    """`lax.dot_general` for nnx.Linear: a plain float32 (N, in) x (in, out) product goes to the FFI kernel."""
    plain = (lhs.ndim == 2 and rhs.ndim == 2 and lhs.dtype == rhs.dtype == jnp.float32 and precision is None
             and preferred_element_type in (None, jnp.float32) and out_sharding is None
             and tuple(map(tuple, dimension_numbers[0])) == ((1,), (0,)) and not any(dimension_numbers[1]))
    if plain:
        return matmul(lhs, rhs)
    return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision, preferred_element_type,
                               out_sharding=out_sharding)


def adam_update(param, grad, mu, nu, step_size, beta_1: float, beta_2: float, epsilon: float):
    """One parameter's Keras Adam update in the FFI kernel: (parameter, mu, nu), the inputs' buffers reused."""
    shape = jax.ShapeDtypeStruct(param.shape, jnp.float32)
    return jax.ffi.ffi_call(ADAM_TARGET, (shape, shape, shape), input_output_aliases={0: 0, 2: 1, 3: 2})(
        param, grad, mu, nu, jnp.asarray(step_size, jnp.float32).reshape(()),
        one_minus_beta_1=np.float32(1 - beta_1), one_minus_beta_2=np.float32(1 - beta_2), epsilon=np.float32(epsilon))


def keras_adam_apply(learning_rate: float, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7):
    """(params, grads, KerasAdamState) -> (params, state): `keras_adam` followed by `optax.apply_updates`, fused."""

    def apply(params, grads, state: KerasAdamState):
        step_size = keras_step_size(state.count, learning_rate, beta_1, beta_2)
        leaves, structure = jax.tree.flatten(params)
        updated = [adam_update(param, grad, mu, nu, step_size, beta_1, beta_2, epsilon)
                   for param, grad, mu, nu in zip(leaves, structure.flatten_up_to(grads),
                                                  structure.flatten_up_to(state.mu), structure.flatten_up_to(state.nu))]
        params, mu, nu = (jax.tree.unflatten(structure, [leaf[i] for leaf in updated]) for i in range(3))
        return params, KerasAdamState(count=state.count + 1, mu=mu, nu=nu)

    return apply
