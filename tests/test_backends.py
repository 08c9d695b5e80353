"""The three backends compute the same thing: forward pass, updates, loss curves, portable weights.

Each backend runs `backend_probe.py` in its own process (two Keras backends cannot share one), from
the same initial weights on the same 100 batches; the Flax backend also runs here in-process, since
it never imports TensorFlow.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backends.base import BackendError, EpochLog
from backends.registry import BACKENDS, DEFAULT_BACKENDS, backend_spec, check_data_parallel
from common.config import ExperimentConfig
from common.data import epoch_batches, make_splits, one_hot
from common.mnist import load_mnist
from common.workloads import initial_weights
from helpers import make_trainer
from helpers.backend_probe import unprefixed
from common.reference import keras_adam_step, softmax
from common.workloads import EARLY_STEPS
from common.workloads.mlp import TOLERANCES, forward, loss_and_grads

CONFIG = ExperimentConfig()
STEPS = 100
PROBE = Path(__file__).parent / "helpers" / "backend_probe.py"
# The bounds are `mnist-bench verify`'s (the MLP workload's, docs/equivalence.md): one table for
# the command and the tests. Here they are applied to the production path, where each backend trains
# the 100 steps in three calls (1, 4 and 95 steps: fused scans, steps_per_execution, fit's epochs).
FORWARD = TOLERANCES["forward"].pairwise
ONE_STEP = TOLERANCES["step1_weights"].pairwise
LOSS_REL = TOLERANCES["loss_rel"].pairwise
WEIGHTS_100_STEPS = TOLERANCES["weights_final"].pairwise


def max_weight_diff(a, b) -> float:
    return max(float(np.abs(a[name].astype(np.float64) - b[name]).max()) for name in a)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, mnist_data_dir):
    """Inputs shared by every backend, and the flax-trained weights used as 'foreign' weights."""
    data = make_splits(load_mnist(mnist_data_dir), CONFIG.replace(train_limit=4000, test_limit=256))
    x, y = data.x_train[:STEPS * CONFIG.batch_size], data.y_train[:STEPS * CONFIG.batch_size]
    batches = np.stack(epoch_batches(len(x), CONFIG.batch_size, seed=0, epoch=0))
    weights = initial_weights(CONFIG, seed=0)
    flax = make_trainer("flax", CONFIG, {0: weights})
    flax.train_epoch(x, y, [list(batches)])
    foreign = flax.seed_model(0).get_weights()
    inputs = tmp_path_factory.mktemp("probe") / "inputs.npz"
    np.savez(inputs, x=x, y=y, x_probe=data.x_test, y_probe=data.y_test, batches=batches,
             **{f"w/{k}": v for k, v in weights.items()}, **{f"f/{k}": v for k, v in foreign.items()})
    return dict(inputs=inputs, x=x, y=y, batches=batches, weights=weights, foreign=foreign,
                foreign_probs=flax.seed_model(0).predict(data.x_test), x_probe=data.x_test)


# Each fast variant and the reference path it must reproduce.
VARIANTS = {"flax-fused": "flax", "flax-ffi": "flax", "keras-xla": "keras", "keras-tuned": "keras", "tf-fused": "keras"}


@pytest.fixture(scope="module")
def probes(scenario):
    """{backend: what it computed}: one fresh process per framework family (a Keras backend, or JAX without Keras),
    never the process the tests run in; one process per family pays its framework's import once."""
    results = {}
    for family in framework_families((*DEFAULT_BACKENDS, *VARIANTS)):
        out_dir = scenario["inputs"].parent / "one-device"
        out_dir.mkdir(exist_ok=True)
        subprocess.run([sys.executable, str(PROBE), ",".join(family), str(scenario["inputs"]), str(out_dir), "1"],
                       check=True, capture_output=True, text=True, timeout=600)
        results.update({name: np.load(out_dir / f"{name}.npz") for name in family})
    return results


def backend_pairs():
    return list(itertools.combinations(DEFAULT_BACKENDS, 2))


def test_forward_probabilities_agree(probes, scenario):
    reference = softmax(forward({k: v.astype(np.float64) for k, v in scenario["weights"].items()},
                                scenario["x_probe"].astype(np.float64))[0])
    for name, probe in probes.items():
        np.testing.assert_allclose(probe["probs0"], reference, atol=TOLERANCES["forward"].float64, rtol=0, err_msg=name)
    for a, b in backend_pairs():
        np.testing.assert_allclose(probes[a]["probs0"], probes[b]["probs0"], atol=FORWARD, rtol=0)


@pytest.mark.parametrize("a, b", backend_pairs())
def test_one_step_gives_the_same_weights(probes, a, b):
    assert max_weight_diff(unprefixed(probes[a], "w1"), unprefixed(probes[b], "w1")) <= ONE_STEP


@pytest.mark.parametrize("a, b", backend_pairs())
def test_hundred_step_loss_curves_and_weights_agree(probes, a, b):
    losses_a, losses_b = probes[a]["losses"], probes[b]["losses"]
    assert len(losses_a) == len(losses_b) == STEPS
    np.testing.assert_allclose(losses_a, losses_b, rtol=LOSS_REL)
    assert max_weight_diff(unprefixed(probes[a], "wN"), unprefixed(probes[b], "wN")) <= WEIGHTS_100_STEPS
    # Loss went down: the 100 steps trained something, so agreement is not agreement on nothing.
    assert losses_a[-10:].mean() < 0.5 * losses_a[:10].mean()


@pytest.mark.parametrize("name", DEFAULT_BACKENDS)
def test_float64_numpy_reference_after_five_steps(probes, scenario, name):
    assert EARLY_STEPS == 5  # the probe saves weights after step 5
    weights = {k: v.astype(np.float64) for k, v in scenario["weights"].items()}
    state, losses = {}, []
    y_one_hot = one_hot(scenario["y"]).astype(np.float64)
    for step, index in enumerate(scenario["batches"][:5]):
        loss, grads = loss_and_grads(weights, scenario["x"][index].astype(np.float64), y_one_hot[index])
        losses.append(loss)
        weights = keras_adam_step(weights, grads, state, step)
    np.testing.assert_allclose(probes[name]["losses"][:5], losses, rtol=TOLERANCES["early_loss_rel"].float64)
    assert max_weight_diff(unprefixed(probes[name], "w5"), weights) <= TOLERANCES["early_weights"].float64


@pytest.mark.parametrize("name", DEFAULT_BACKENDS)
def test_weights_are_portable_between_backends(probes, scenario, name):
    # flax-trained weights loaded into this backend predict what flax predicted ...
    np.testing.assert_allclose(probes[name]["probs_foreign"], scenario["foreign_probs"], atol=1e-5, rtol=0)
    # ... and this backend's trained weights loaded into flax predict what this backend predicted.
    flax = make_trainer("flax", CONFIG, {0: unprefixed(probes[name], "wN")}).seed_model(0)
    np.testing.assert_allclose(flax.predict(scenario["x_probe"]), probes[name]["probs_trained"], atol=1e-5, rtol=0)


# --devices 2 on two virtual CPU devices, one process per framework family (each is set up for two devices
# before its framework loads). flax-vmap is held to flax-fused's one-device run: the same fused epoch.
DATA_PARALLEL_FAMILIES = {"jax": ("flax", "flax-fused", "flax-vmap", "keras-jax"), "tensorflow": ("keras",)}
ONE_DEVICE_TWIN = {"flax-vmap": "flax-fused"}


@pytest.fixture(scope="module")
def two_device_probes(scenario):
    """{backend: what it computed with its batches split over 2 virtual CPU devices}."""
    results = {}
    for family in DATA_PARALLEL_FAMILIES.values():
        out_dir = scenario["inputs"].parent / "two-devices"
        out_dir.mkdir(exist_ok=True)
        subprocess.run([sys.executable, str(PROBE), ",".join(family), str(scenario["inputs"]), str(out_dir), "2"],
                       check=True, capture_output=True, text=True, timeout=600)
        results.update({name: np.load(out_dir / f"{name}.npz") for name in family})
    return results


def test_every_data_parallel_backend_is_checked_on_two_devices():
    families = {name for family in DATA_PARALLEL_FAMILIES.values() for name in family}
    assert families == {name for name, spec in BACKENDS.items() if spec.data_parallel}


@pytest.mark.parametrize("name", [name for family in DATA_PARALLEL_FAMILIES.values() for name in family])
def test_two_devices_match_one_device(probes, two_device_probes, name):
    split, single = two_device_probes[name], probes[ONE_DEVICE_TWIN.get(name, name)]
    assert str(split["device_name"]).count(",") == 1, f"{name} did not run on two devices: {split['device_name']}"
    np.testing.assert_allclose(split["probs0"], single["probs0"], atol=FORWARD, rtol=0)
    assert max_weight_diff(unprefixed(split, "w1"), unprefixed(single, "w1")) <= ONE_STEP
    np.testing.assert_allclose(split["losses"], single["losses"], rtol=LOSS_REL)
    assert max_weight_diff(unprefixed(split, "wN"), unprefixed(single, "wN")) <= WEIGHTS_100_STEPS
    assert split["losses"][-10:].mean() < 0.5 * split["losses"][:10].mean()


@pytest.mark.parametrize("name", [name for name, spec in BACKENDS.items() if not spec.data_parallel])
def test_single_device_backends_refuse_several_devices(name):
    check_data_parallel(name, 1)
    with pytest.raises(BackendError, match=f"{name}' trains on one device only.*data-parallel backend: keras"):
        check_data_parallel(name, 2)


@pytest.mark.parametrize("variant", VARIANTS)
def test_fast_variants_reproduce_their_reference(probes, variant):
    fast, reference = probes[variant], probes[VARIANTS[variant]]
    np.testing.assert_allclose(fast["probs0"], reference["probs0"], atol=FORWARD, rtol=0)
    assert max_weight_diff(unprefixed(fast, "w1"), unprefixed(reference, "w1")) <= ONE_STEP
    assert max_weight_diff(unprefixed(fast, "wN"), unprefixed(reference, "wN")) <= WEIGHTS_100_STEPS
    # keras-tuned reports once per execution of several steps, so compare each training call's mean.
    for start, stop in ((0, 1), (1, 5), (5, STEPS)):
        np.testing.assert_allclose(fast["losses"][start:stop].mean(), reference["losses"][start:stop].mean(),
                                   rtol=LOSS_REL)
    if variant != "keras-tuned":
        np.testing.assert_allclose(fast["losses"], reference["losses"], rtol=LOSS_REL)


def test_fused_epoch_pads_and_masks_a_partial_batch(scenario):
    batches = [np.arange(0, 32), np.arange(32, 64), np.arange(64, 74)]  # 32, 32 and a short 10
    logs = {}
    for name in ("flax", "flax-fused", "flax-ffi"):
        trainer = make_trainer(name, CONFIG, {0: scenario["weights"]})
        (log,) = trainer.train_epoch(scenario["x"], scenario["y"], [batches])
        logs[name] = (log, trainer.seed_model(0).get_weights())
    plain, plain_weights = logs["flax"]
    for fused, fused_weights in (logs["flax-fused"], logs["flax-ffi"]):
        np.testing.assert_array_equal(fused.batch_sizes, [32, 32, 10])
        np.testing.assert_allclose(fused.losses, plain.losses, rtol=1e-5)
        assert fused.loss == pytest.approx(plain.loss, rel=1e-5)
        assert max_weight_diff(fused_weights, plain_weights) <= 1e-6


def test_evaluate_agrees(probes):
    for a, b in backend_pairs():
        np.testing.assert_allclose(probes[a]["eval"], probes[b]["eval"], rtol=1e-4)


def test_epoch_metrics_are_sample_weighted_like_fit():
    from benchmarks.harness.training import TimedEpoch

    log = EpochLog(losses=np.array([1.0, 2.0, 4.0]), accuracies=np.array([0.5, 1.0, 0.0]),
                   batch_sizes=np.array([32, 32, 16]), step_end_s=np.array([1.0, 2.5, 3.0]))
    assert log.loss == pytest.approx((32 + 64 + 64) / 80)
    assert log.accuracy == pytest.approx((16 + 32) / 80)
    np.testing.assert_allclose(TimedEpoch(log, start_s=0.0, end_s=3.0).step_s, [1.0, 1.5, 0.5])


def test_keras_adam_transform_matches_the_keras_formula():
    import jax.numpy as jnp
    import optax

    from backends.keras_adam import keras_adam

    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(7, 3))}
    tx = keras_adam(1e-3)
    state = tx.init({"w": jnp.asarray(params["w"], jnp.float32)})
    jax_params, reference_state = {"w": jnp.asarray(params["w"], jnp.float32)}, {}
    for step in range(5):
        grads = {"w": rng.normal(size=(7, 3)) * 10.0 ** rng.integers(-8, 0, size=(7, 3))}
        updates, state = tx.update({"w": jnp.asarray(grads["w"], jnp.float32)}, state)
        jax_params = optax.apply_updates(jax_params, updates)
        params = keras_adam_step(params, grads, reference_state, step)
        np.testing.assert_allclose(np.asarray(jax_params["w"]), params["w"], rtol=0, atol=2e-7)
    # optax.adam is a different rule in the first steps: the test above would catch a swap.
    optax_params = {"w": jnp.asarray(np.zeros((1,)), jnp.float32)}
    small_grad = {"w": jnp.full((1,), 1e-7, jnp.float32)}
    keras_update, _ = keras_adam(1e-3).update(small_grad, keras_adam(1e-3).init(optax_params))
    optax_update, _ = optax.adam(1e-3, eps=1e-7).update(small_grad, optax.adam(1e-3, eps=1e-7).init(optax_params))
    assert abs(float(keras_update["w"][0]) - float(optax_update["w"][0])) > 1e-4


def test_unknown_backend_lists_the_valid_ones():
    with pytest.raises(BackendError, match=r"unknown backend 'pytorch'; valid backends: keras, flax, keras-jax"):
        backend_spec("pytorch")
    assert set(DEFAULT_BACKENDS) <= set(BACKENDS)


def test_flax_backend_never_imports_tensorflow():
    code = ("import sys; from backends.registry import create_trainer, prepare_process; from common.job import Job; "
            "from common.config import ExperimentConfig; from common.workloads import initial_weights; "
            "c = ExperimentConfig(); j = Job(backends=('flax',), config=c); prepare_process(j); "
            "t = create_trainer(j, {0: initial_weights(c, 0)}); "
            "t.seed_model(0).predict(__import__('numpy').zeros((2, 784), 'float32')); "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_two_keras_backends_cannot_share_a_process():
    code = ("from backends.registry import create_trainer, prepare_process; from common.job import Job; "
            "from common.workloads import initial_weights; from backends.base import BackendError; "
            "kj, k = Job(backends=('keras-jax',)), Job(backends=('keras',)); w = {0: initial_weights(k.config, 0)}; "
            "prepare_process(kj); create_trainer(kj, w)\n"
            "for attempt in (lambda: prepare_process(k), lambda: create_trainer(k, w)):\n"
            "    try:\n        attempt()\n    except BackendError as e:\n        print(e)\n"
            "    else:\n        raise SystemExit('no error')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Keras is already loaded on 'jax'" in result.stdout


def test_vmapped_seeds_match_separate_runs(scenario):
    seeds = (0, 1, 2)
    x, y = scenario["x"], scenario["y"]
    batches = {seed: epoch_batches(len(x), CONFIG.batch_size, seed, epoch=0)[:20] for seed in seeds}
    together = make_trainer("flax-vmap", CONFIG, {s: initial_weights(CONFIG, s) for s in seeds})
    logs = together.train_epoch(x, y, [batches[s] for s in seeds])
    for index, seed in enumerate(seeds):
        alone = make_trainer("flax-fused", CONFIG, {seed: initial_weights(CONFIG, seed)})
        (alone_log,) = alone.train_epoch(x, y, [batches[seed]])
        np.testing.assert_allclose(logs[index].losses, alone_log.losses, rtol=1e-5)
        view, alone_model = together.seed_model(index), alone.seed_model(0)
        assert max_weight_diff(view.get_weights(), alone_model.get_weights()) <= 1e-6
        np.testing.assert_allclose(view.predict(scenario["x_probe"]), alone_model.predict(scenario["x_probe"]),
                                   atol=1e-5)
    assert not np.allclose(logs[0].losses, logs[1].losses)  # the seeds really differ


def test_timing_summary_separates_compile_from_steady_state():
    from benchmarks.harness.training import TimedEpoch, summarize_timing

    def epoch(epoch_s, steps=4, start=0.0):
        ends = start + np.arange(1, steps + 1) * epoch_s / steps
        return TimedEpoch(EpochLog(np.ones(steps), np.ones(steps), np.full(steps, 32), ends), start, start + epoch_s)

    epochs = [epoch(3.0), epoch(1.0, start=10), epoch(1.2, start=20), epoch(0.8, start=30)]
    timing = summarize_timing(epochs, train_samples=128, total_s=31.0, time_to_target=None)
    assert timing["epoch_s_median"] == pytest.approx(1.0)
    assert timing["compile_s"] == pytest.approx(2.0)  # first epoch minus a steady one
    assert timing["samples_per_s"] == pytest.approx(128.0)
    assert timing["step_ms_median"] == pytest.approx(250.0)
    assert timing["step_ms_p90"] == pytest.approx(np.percentile([200.0] * 4 + [250.0] * 4 + [300.0] * 4, 90))


@pytest.mark.parametrize("name, seeds", [("flax-fused", (0,)), ("flax-ffi", (0,)), ("flax-vmap", (0, 1))])
def test_fused_epochs_compile_once(scenario, name, seeds):
    # A second compile would land in every run's second epoch and be timed as a steady one.
    trainer = make_trainer(name, CONFIG, {seed: initial_weights(CONFIG, seed) for seed in seeds})
    for epoch in range(3):
        batches = [epoch_batches(len(scenario["x"]), CONFIG.batch_size, seed, epoch)[:10] for seed in seeds]
        trainer.train_epoch(scenario["x"], scenario["y"], batches)
    assert trainer._epoch._cache_size() == 1


CONFORMANCE_PROBE = Path(__file__).parent / "helpers" / "conformance_probe.py"


def framework_families(names) -> list[list[str]]:
    """Backends grouped by what their process must import (a Keras backend, or a framework without Keras)."""
    families: dict[tuple, list[str]] = {}
    for name in names:
        spec = backend_spec(name)
        families.setdefault((spec.keras_backend, spec.frameworks[0]), []).append(name)
    return list(families.values())


@pytest.fixture(scope="module")
def conformance():
    """{backend: its probe's verdict line and stderr}: one fresh process per framework family."""
    verdicts = {}
    for family in framework_families(BACKENDS):
        completed = subprocess.run([sys.executable, str(CONFORMANCE_PROBE), ",".join(family)], capture_output=True,
                                   text=True, timeout=600)
        lines = {line.split(" ", 1)[0]: line for line in completed.stdout.splitlines() if " " in line}
        verdicts.update({name: (lines.get(name, f"{name}: no verdict"), completed.stderr) for name in family})
    return verdicts


@pytest.mark.parametrize("name", BACKENDS)
def test_every_registered_backend_honours_the_trainer_contract(name, conformance):
    # Every registry entry, never in the test process: a backend added later is checked without a new test.
    line, stderr = conformance[name]
    assert line == f"{name} conforms", stderr[-3000:]


def test_a_new_backend_claims_no_capability_until_it_opts_in(monkeypatch):
    from backends.registry import BackendSpec, check_device

    monkeypatch.setitem(BACKENDS, "newcomer", BackendSpec("newcomer", "backends.flax_models:create_trainer",
                                                          "a new family", ("jax",), {"mlp": "backends.flax_models:MLP"}))
    check_data_parallel("newcomer", 1)
    check_device("newcomer", "cpu")
    with pytest.raises(BackendError, match="'newcomer' trains on one device only \\(it has not been shown to split"):
        check_data_parallel("newcomer", 2)
    with pytest.raises(BackendError, match="'newcomer' runs on the CPU only \\(it has not been shown to train on a GPU"):
        check_device("newcomer", "gpu")


def test_a_backend_registered_at_run_time_is_found_and_a_taken_name_refused(monkeypatch):
    import dataclasses

    from backends.registry import register_backend

    monkeypatch.setattr("backends.registry.BACKENDS", dict(BACKENDS))  # this test's additions stay in this test
    from backends import registry

    register_backend(dataclasses.replace(backend_spec("flax"), name="flax-twin"))
    assert registry.backend_spec("flax-twin").factory == backend_spec("flax").factory
    with pytest.raises(BackendError, match="'flax' is registered already"):
        register_backend(backend_spec("flax"))
