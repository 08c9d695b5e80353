"""flax-ffi's XLA FFI kernels: built on first use, atomically; products and Adam as XLA computes them."""

from __future__ import annotations

import os
import stat

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from backends import ffi_kernels
from backends.base import BackendError, padded_batch_matrix
from backends.keras_adam import keras_adam
from benchmarks.studies import step_ablation
from common.config import ExperimentConfig
from common.data import epoch_batches

ffi_kernels.load()


@pytest.mark.parametrize("transpose_a, transpose_b", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("m, k, n", [(32, 784, 256), (784, 32, 256), (33, 7, 5), (3, 300, 1001)])
def test_gemm_matches_numpy_in_every_orientation_and_split(m, k, n, transpose_a, transpose_b):
    # (32,784,256) and (784,32,256) split over XLA's threads by columns and by rows; (33,7,5) runs whole.
    rng = np.random.default_rng(m + k + n)
    a, b = rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)
    stored_a = np.ascontiguousarray(a.T) if transpose_a else a
    stored_b = np.ascontiguousarray(b.T) if transpose_b else b
    product = jax.jit(ffi_kernels.gemm, static_argnums=(2, 3))(stored_a, stored_b, transpose_a, transpose_b)
    expected = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose(np.asarray(product), expected, rtol=0, atol=2e-5 * np.sqrt(k) * np.abs(expected).max())


def test_ffi_dense_gradients_match_xla():
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((32, 784), dtype=np.float32), rng.standard_normal((784, 256), dtype=np.float32)

    def loss(dot):
        return lambda x, w: jnp.sum(jnp.tanh(dot(x, w, (((1,), (0,)), ((), ())))))

    ffi_grads = jax.jit(jax.grad(loss(ffi_kernels.ffi_dot_general), argnums=(0, 1)))(x, w)
    xla_grads = jax.jit(jax.grad(loss(jax.lax.dot_general), argnums=(0, 1)))(x, w)
    for ours, theirs in zip(ffi_grads, xla_grads):
        np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-4, atol=1e-4)


def test_one_pass_adam_is_keras_adam():
    rng = np.random.default_rng(2)
    params = {"big": jnp.asarray(rng.standard_normal((784, 256), dtype=np.float32)),  # split over threads
              "small": jnp.asarray(rng.standard_normal((10,), dtype=np.float32))}
    optimizer = keras_adam(1e-3)
    fused = jax.jit(ffi_kernels.keras_adam_apply(1e-3))
    xla_params, xla_state = params, optimizer.init(params)
    ffi_params, ffi_state = jax.tree.map(jnp.copy, params), optimizer.init(params)
    for step in range(5):
        grads = jax.tree.map(lambda p: jnp.asarray(rng.standard_normal(p.shape, dtype=np.float32)), params)
        updates, xla_state = optimizer.update(grads, xla_state)
        xla_params = jax.tree.map(lambda p, u: p + u, xla_params, updates)
        ffi_params, ffi_state = fused(ffi_params, grads, ffi_state)
    assert int(ffi_state.count) == 5
    for name in params:
        # The moments are the same float32 expressions; XLA divides with its own (vectorized) division, so the
        # parameters may differ in the last bits of their ~1e-3 updates: 1e-7 is 1e-4 of five steps' movement.
        np.testing.assert_array_equal(np.asarray(ffi_state.mu[name]), np.asarray(xla_state.mu[name]))
        np.testing.assert_array_equal(np.asarray(ffi_state.nu[name]), np.asarray(xla_state.nu[name]))
        np.testing.assert_allclose(np.asarray(ffi_params[name]), np.asarray(xla_params[name]), rtol=0, atol=1e-7)
        assert np.abs(np.asarray(ffi_params[name]) - np.asarray(params[name])).mean() > 1e-4  # they did move


def test_missing_compiler_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", "no-such-compiler")
    with pytest.raises(BackendError, match="^flax-ffi compiles its XLA FFI kernels with a C\\+\\+17 compiler, "
                                           "and 'no-such-compiler'.*install one") as raised:
        ffi_kernels.library_path(tmp_path)
    assert "\n" not in str(raised.value)
    assert not any(tmp_path.iterdir())


def test_a_failed_build_leaves_no_library_behind(monkeypatch, tmp_path):
    failing = tmp_path / "bin" / "c++"
    failing.parent.mkdir()
    failing.write_text("#!/bin/sh\necho 'fake.cc:1: error: it broke' >&2\nexit 1\n")
    failing.chmod(failing.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("CXX", str(failing))
    with pytest.raises(BackendError, match="compiling ffi_kernels.cc failed \\(fake.cc:1: error: it broke\\)"):
        ffi_kernels.library_path(tmp_path / "cache")
    assert os.listdir(tmp_path / "cache" / "ffi") == []


def test_the_library_is_built_once_per_machine():
    # load() at import built it (or found it) in the user cache: asking again neither rebuilds nor leaves scraps.
    first = ffi_kernels.library_path()
    built_at = first.stat().st_mtime_ns
    assert ffi_kernels.library_path() == first and first.stat().st_mtime_ns == built_at
    assert not list(first.parent.glob("*.tmp"))


def test_step_ablation_variants_train_the_same_model():
    # The ablation compares speed only if the four variants compute the same steps.
    config = ExperimentConfig()
    rng = np.random.default_rng(3)
    x, y = rng.random((320, 784), dtype=np.float32), rng.integers(0, 10, 320)
    batches = epoch_batches(len(x), config.batch_size, seed=0, epoch=0)
    trainers = step_ablation.build_trainers(config)
    assert tuple(trainers) == step_ablation.VARIANTS
    losses = {name: trainer.train_one_epoch(x, y, batches).losses for name, trainer in trainers.items()}
    for name in step_ablation.VARIANTS[1:]:
        np.testing.assert_allclose(losses[name], losses["flax-fused"], rtol=1e-5)
    # ... and each runs the kernels its name says, and only those.
    indices, mask = padded_batch_matrix(batches, config.batch_size)
    for name, trainer in trainers.items():
        program = trainer._epoch.lower(trainer.params, trainer.opt_state, trainer.dropout_key, *trainer._data.get(x, y),
                                       indices, mask).as_text()
        assert (ffi_kernels.GEMM_TARGET in program) == (name in ("FFI products", "flax-ffi")), name
        assert (ffi_kernels.ADAM_TARGET in program) == (name in ("FFI Adam", "flax-ffi")), name


def test_step_ablation_table_compares_within_rounds():
    seconds = {name: [4e-4, 6e-4] for name in step_ablation.VARIANTS}
    seconds["step floor"] = [2e-4, 5e-4]
    rows = {line.split()[0]: line.split() for line in step_ablation.table(seconds).splitlines()[1:]}
    assert rows["flax-ffi"][1:5] == ["400", "500", "2.00", "1.60"]  # best/best floor 4/2; median of 2.0 and 1.2
    assert rows["step"][1:6] == ["floor", "200", "350", "1.00", "1.00"]
