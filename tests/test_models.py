"""The second workload end to end: `--model cnn` through run, compare and verify, on small subsets.

Full-length convnet runs are `-m slow` (tests/test_accuracy.py); here the convnet trains a few hundred
images for one epoch, and `verify` proves 100 steps of it equivalent across the backend families.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from backends import registry
from benchmarks.harness import verify
from benchmarks.cli import main
from benchmarks.commands.flags import parse_backends
from common.config import ExperimentConfig
from common.data import epoch_batches
from common.job import Job
from common.results import load_results
from common.workloads import cnn, initial_weights, training_flops_per_sample
from helpers import make_trainer

CNN_TRAINING_FLOPS = training_flops_per_sample(ExperimentConfig(model="cnn"))
SMALL = ["--epochs", "1", "--train-limit", "640", "--test-limit", "200", "--quiet"]
# One backend per way of writing the convnet: Keras fit on TF and on JAX, Flax per step and fused, and
# TensorFlow without Keras. The other three reuse one of these models (keras-xla and keras-tuned: the Keras
# model under XLA; flax-vmap: flax-fused's program vmapped); `mnist-bench verify --model cnn` covers all
# eight (docs/models.md), in CI this subset keeps the suite within its time budget.
VERIFIED = ("keras", "flax", "keras-jax", "flax-fused", "tf-fused")


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory, mnist_data_dir):
    """A small convnet run of three backends through the real CLI, at the convnet's own defaults."""
    out = tmp_path_factory.mktemp("runs") / "cnn"
    code = main(["run", "--rounds", "1", "--timing-rounds", "0", "--model", "cnn", "--backend", "keras,flax", *SMALL, "--data-dir", str(mnist_data_dir),
                 "--out", str(out)])
    return code, out


def test_cnn_run_trains_every_backend_and_names_the_model(cnn_run, capsys):
    code, out = cnn_run
    assert main(["show", str(out)]) == 0
    assert code == 0
    results = load_results(out)
    config = results.job.config
    # The Keras example's defaults, with only the flags given changed.
    assert (config.model, config.batch_size, config.validation_split, config.dropout) == ("cnn", 128, 0.1, 0.5)
    assert json.loads((out / "results.json").read_text())["job"]["config"]["model"] == "cnn"
    assert [run.backend for run in results.runs] == ["keras", "flax"]
    for run in results.runs:
        assert run.status == "ok" and run.test["accuracy"] > 0.2, (run.backend, run.test)  # chance is 0.1
    floor = results.environment["roofline"]["step_floor"]
    assert floor["batch_size"] == 128 and floor["gemm_flops_per_step"] == 128 * CNN_TRAINING_FLOPS
    assert capsys.readouterr().out.startswith("model cnn: convnet conv32-pool-conv64-pool-dropout 0.5-dense10\nrun ")
    summary = (out / "summary.md").read_text()
    assert "Model: convnet conv32-pool-conv64-pool-dropout 0.5-dense10" in summary
    assert f"{CNN_TRAINING_FLOPS:,} per sample for the cnn" in summary


def test_compare_ranks_each_model_separately(cnn_run, tmp_path, capsys):
    # The same saved runs relabelled as MLP runs with flax 10x faster: were the two models ranked together,
    # the cnn's flax row would be compared with the MLP's keras row.
    data = json.loads((cnn_run[1] / "results.json").read_text())
    data["job"]["config"] = {"model": "mlp"}
    for run in data["runs"]:
        if run["backend"] == "flax":
            run["timing"]["epoch_s_median"] /= 10
            for entry in run["history"]:
                entry["epoch_s"] /= 10
    (tmp_path / "mlp").mkdir()
    (tmp_path / "mlp" / "results.json").write_text(json.dumps(data))
    cnn = load_results(cnn_run[1])
    flax_over_keras = cnn.runs[0].timing["epoch_s_median"] / cnn.runs[1].timing["epoch_s_median"]
    assert main(["compare", str(tmp_path / "mlp"), str(cnn_run[1]), "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    mlp_block, cnn_block = out.split("== model cnn: ")
    assert mlp_block.startswith("== model mlp: MLP 784-256-128-10 ==")
    # Each table's speed ratios are against its own model's keras row.
    assert f"{10 * flax_over_keras:.2f}x" in mlp_block and f"{flax_over_keras:.2f}x" in cnn_block
    assert "ranked separately" in out
    summary = (tmp_path / "cmp" / "summary.md").read_text()
    assert "(mlp/summary.md)" in summary and "(cnn/summary.md)" in summary
    for model in ("mlp", "cnn"):
        assert (tmp_path / "cmp" / model / "plots" / "loss.png").exists()


def test_a_backend_without_the_model_refuses_it_in_one_line(capsys, tmp_path):
    assert registry.BACKENDS["flax-ffi"].models == ("mlp",)
    assert main(["run", "--rounds", "1", "--timing-rounds", "0", "--model", "cnn", "--backend", "flax-ffi", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "backend 'flax-ffi' does not implement --model cnn; it has mlp. Backends with cnn: keras" in err
    assert not (tmp_path / "r").exists()


def test_all_means_every_backend_that_has_the_model():
    with_cnn = parse_backends(["all"], model="cnn")
    assert "flax-ffi" not in with_cnn and "flax-ffi" in parse_backends(["all"])
    assert with_cnn == tuple(name for name, spec in registry.BACKENDS.items() if "cnn" in spec.models)


def test_mlp_refuses_dropout_and_cnn_takes_it(capsys):
    assert main(["run", "--rounds", "1", "--timing-rounds", "0", "--dropout", "0.3"]) == 2
    assert "--dropout: invalid config: dropout=0.3; expected 0 for --model mlp" in capsys.readouterr().err


def test_verify_cnn_proves_every_backend_family_equivalent(tmp_path, mnist_data_dir, capsys):
    out = tmp_path / "verify"
    code = main(["verify", "--model", "cnn", "--batch-size", "32", "--backend", ",".join(VERIFIED),
                 "--data-dir", str(mnist_data_dir), "--out", str(out), "--quiet"])
    printed = capsys.readouterr().out
    report = json.loads((out / verify.VERIFY_FILE).read_text())
    assert code == 0, printed
    assert report["passed"] and list(report["backends"]) == list(VERIFIED) and report["steps"] == 100
    config = report["job"]["config"]
    assert (config["model"], config["dropout"], config["batch_size"]) == ("cnn", 0.0, 32)
    for name, entry in report["backends"].items():
        for check, result in entry["checks"].items():
            assert result["tolerance"] == cnn.TOLERANCES[check].float64
            assert 0 <= result["value"] <= result["tolerance"], (name, check)
    # The tight checks stay tight for the convnet: forward and the first step agree to float32 rounding.
    for pair in report["pairs"]:
        assert pair["checks"]["forward"]["value"] <= 1e-6 and pair["checks"]["step1_weights"]["value"] <= 3e-6
    assert "convnet conv32-pool-conv64-pool-dropout 0-dense10: 100 steps of batch 32" in printed


def test_flax_convnets_draw_the_same_dropout_masks():
    # Dropout on (0.5): the masks come from (seed, optimizer step), so flax's per-step path, the fused epoch
    # and the vmapped seeds train the same models. With different masks the losses would part at once.
    from backends.registry import prepare_process

    config = ExperimentConfig(model="cnn", batch_size=32)
    prepare_process(Job(backends=("flax-vmap",), config=config))
    rng = np.random.default_rng(0)
    x, y = rng.random((320, 784), dtype=np.float32), rng.integers(0, 10, 320).astype(np.int32)
    batches = {seed: epoch_batches(320, 32, seed, 0) for seed in (0, 1)}
    together = make_trainer("flax-vmap", config, {seed: initial_weights(config, seed) for seed in (0, 1)})
    logs = together.train_epoch(x, y, [batches[0], batches[1]])
    for index, seed in enumerate((0, 1)):
        for name in ("flax-fused", "flax"):
            alone = make_trainer(name, config, {seed: initial_weights(config, seed)})
            (log,) = alone.train_epoch(x, y, [batches[seed]])
            np.testing.assert_allclose(log.losses, logs[index].losses, rtol=1e-5, err_msg=name)
            weights, vmapped = alone.seed_model(0).get_weights(), together.seed_model(index).get_weights()
            assert max(float(np.abs(weights[k] - vmapped[k]).max()) for k in weights) < 1e-5, name
    assert not np.allclose(logs[0].losses, logs[1].losses)


def _jax_pools():
    """flax-fused's pool, nnx.max_pool, and the pool's gradient of sum(pool(x) * d_out)."""
    import jax

    from backends.flax_models import first_max_pool, framework_max_pool

    return (lambda x: first_max_pool(x, cnn.POOL), lambda x: framework_max_pool(x, cnn.POOL),
            lambda x, d_out: jax.grad(lambda x: (first_max_pool(x, cnn.POOL) * d_out).sum())(x))


def _tensorflow_pools():
    """tf-fused's pool, tf.nn.max_pool2d, and the pool's gradient, compiled by XLA as tf-fused's epoch is."""
    import tensorflow as tf

    from backends.tf_fused import first_max_pool

    @tf.function(jit_compile=True)
    def gradient(x, d_out):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(first_max_pool(x, cnn.POOL) * d_out)
        return tape.gradient(loss, x)

    def framework_pool(x):
        return tf.nn.max_pool2d(x, cnn.POOL, strides=cnn.POOL, padding="VALID").numpy()

    return (lambda x: first_max_pool(tf.constant(x), cnn.POOL).numpy(), framework_pool,
            lambda x, d_out: gradient(tf.constant(x), tf.constant(d_out)).numpy())


@pytest.mark.parametrize("pools", [_jax_pools, _tensorflow_pools], ids=["flax-fused", "tf-fused"])
def test_first_max_pool_matches_the_framework_forward_and_the_references_gradient_ties_included(pools):
    # The fast variants' pool: a reshape and a max, its gradient a select on the saved first corner. It must
    # compute the framework pool's values and send each window's gradient where the float64 reference does: to
    # the first maximum, row-major.
    first_max_pool, framework_max_pool, pool_gradient = pools()
    rng = np.random.default_rng(0)
    for shape in ((3, 26, 26, 4), (2, 11, 11, 5)):  # the convnet's two pools; 11 drops a row and a column
        x = rng.standard_normal(shape).astype(np.float32)
        x[0, 0, 0, 0] = x[0, 0, 1, 0] = x[0, 1, 1, 0] = 5.0  # a three-way tie: the first, (0, 0), takes it
        x[1, 2:4, 2:4, 1] = 0.0  # a window of equal values, as ReLU makes
        d_out = rng.standard_normal((shape[0], shape[1] // 2, shape[2] // 2, shape[3])).astype(np.float32)
        np.testing.assert_array_equal(first_max_pool(x), framework_max_pool(x))
        gradient = np.asarray(pool_gradient(x, d_out))
        _, mask = cnn.max_pool(x.astype(np.float64))
        expected = cnn.max_pool_backward(mask, d_out.astype(np.float64), shape).astype(np.float32)
        np.testing.assert_array_equal(gradient, expected)
        assert gradient[0, 0, 0, 0] == d_out[0, 0, 0, 0] and gradient[0, 0, 1, 0] == gradient[0, 1, 1, 0] == 0
        # Exactly one element per window takes its gradient; the dropped row and column get none.
        assert np.count_nonzero(gradient) == np.count_nonzero(d_out)
        if shape[1] % 2:
            assert not gradient[:, -1].any() and not gradient[:, :, -1].any()


def test_fast_flax_variants_pool_without_select_and_scatter_and_the_reference_keeps_flaxs_own():
    import jax
    from flax import nnx

    config = ExperimentConfig(model="cnn", batch_size=32)
    x = np.zeros((32, 784), np.float32)
    for name in ("flax", "flax-fused", "flax-vmap"):
        trainer = make_trainer(name, config, {0: initial_weights(config, 0)})
        graphdef = trainer.ops.graphdef
        params = trainer.params if name != "flax-vmap" else jax.tree.map(lambda leaf: leaf[0], trainer.params)
        program = jax.jit(jax.grad(lambda params: nnx.merge(graphdef, params)(x).sum())).lower(params).as_text()
        # reduce_window's gradient is select_and_scatter: the CPU's scatter loop the fast variants avoid.
        assert ("select_and_scatter" in program) == (name == "flax"), name
