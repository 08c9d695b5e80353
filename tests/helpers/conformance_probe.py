"""Check, in a fresh process, that registered backends honour the Trainer contract of backends/base.py.

Usage: python conformance_probe.py BACKEND[,BACKEND...]   (several: of one framework family, sharing the process)
Prints "BACKEND conforms" for each backend whose every check holds, or "BACKEND fails: ..." naming the first
that does not (with its traceback on stderr); exits 1 if any failed.
"""

import sys
import traceback

import numpy as np

from backends.base import BackendError, EpochLog
from backends.registry import backend_spec, create_trainer, prepare_process
from common.config import ExperimentConfig
from common.data import epoch_batches
from common.job import Job
from common.mnist import INPUT_DIM
from common.weights import check_weights
from common.workloads import initial_weights, weight_shapes

CONFIG = ExperimentConfig()
SAMPLES = 202  # six full batches of 32 and a partial one of 10


def check(backend: str) -> None:
    prepare_process(Job(backends=(backend,), config=CONFIG))  # before any framework is imported
    spec = backend_spec(backend)
    seeds = (3, 5) if (spec.seeds_per_process or 2) >= 2 else (3,)

    def factory(config, initial_weights):
        return create_trainer(Job(backends=(backend,), config=config, seeds=tuple(initial_weights)), initial_weights)

    trainer = factory(CONFIG, {seed: initial_weights(CONFIG, seed) for seed in seeds})
    assert tuple(trainer.seeds) == seeds, f"seeds {trainer.seeds} != {seeds}"
    if len(seeds) == 1:
        try:
            factory(CONFIG, {0: initial_weights(CONFIG, 0), 1: initial_weights(CONFIG, 1)})
        except BackendError as error:
            assert "one seed per process" in str(error), error
        else:
            raise AssertionError("a one-seed backend accepted two seeds")

    rng = np.random.default_rng(0)
    x = rng.random((SAMPLES, INPUT_DIM), dtype=np.float32)
    y = rng.integers(0, 10, SAMPLES).astype(np.int32)
    batches = [epoch_batches(SAMPLES, CONFIG.batch_size, seed, 0) for seed in seeds]
    steps_seen = []
    logs = trainer.train_epoch(x, y, batches, lambda step, loss, accuracy: steps_seen.append((step, loss, accuracy)))
    assert len(logs) == len(seeds), f"{len(logs)} EpochLogs for {len(seeds)} seeds"
    for log, seed_batches in zip(logs, batches):
        assert isinstance(log, EpochLog)
        assert len(log.losses) == len(log.accuracies) == len(seed_batches)
        assert list(log.batch_sizes) == [len(b) for b in seed_batches]
        # Keras' per-step values are recovered from fit's float32 running means: exact to ~1e-7.
        assert np.all(np.isfinite(log.losses)) and np.all((log.accuracies > -1e-6) & (log.accuracies < 1 + 1e-6))
        assert log.step_end_s is None, "steps clocked one by one (a host sync per step) without time_steps"
    assert steps_seen and steps_seen[-1][0] == len(batches[0]) - 1, "on_step never reported the last step"
    # On request a per-step loop clocks every step; a backend whose epoch is one program has no step clock.
    per_step_loop = logs[0].first_step_end_s is not None
    for log, seed_batches in zip(trainer.train_epoch(x, y, batches, None, True), batches):
        if per_step_loop:
            assert len(log.step_end_s) == len(seed_batches) and np.all(np.diff(log.step_end_s) >= 0)
            assert log.step_end_s[0] <= log.first_step_end_s + 1e-3
        else:
            assert log.step_end_s is None and log.first_step_end_s is None

    # Every backend reads the kernel routes of the training program it compiled, each op class to a library,
    # and reading them (TensorFlow runs a step to see its kernels) leaves every model as it was.
    before_routes = [trainer.seed_model(index).get_weights() for index in range(len(seeds))]
    routes = trainer.kernel_routes()
    assert routes.get("source") and sum(routes["routes"].get("GEMM", {}).values()) >= 1, f"routes {routes}"
    for index, weights in enumerate(before_routes):
        for name, value in trainer.seed_model(index).get_weights().items():
            np.testing.assert_array_equal(value, weights[name], err_msg=f"kernel_routes changed {name}")
    if "executed" in routes["source"]:
        # TensorFlow without XLA: the kernels that ran, oneDNN's or TensorFlow's own, never a guess from the build.
        assert set(routes["routes"]["GEMM"]) <= {"oneDNN", "TensorFlow kernels (Eigen)"}, routes

    models = [trainer.seed_model(index) for index in range(len(seeds))]
    for model in models:
        weights = model.get_weights()
        check_weights(weights, weight_shapes(CONFIG))
        probs = model.predict(x)
        assert probs.shape == (SAMPLES, 10) and probs.dtype == np.float32
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        loss, accuracy = model.evaluate(x, y)
        assert np.isfinite(loss) and abs(accuracy - np.mean(probs.argmax(axis=1) == y)) < 1e-6
        model.set_weights(weights)  # a round trip changes nothing
        np.testing.assert_allclose(model.predict(x), probs, atol=1e-6)
    if len(models) > 1:
        # Views are independent: writing seed 5's weights leaves seed 3's model alone.
        before = models[0].predict(x)
        assert not np.allclose(before, models[1].predict(x)), "two seeds' models predict the same"
        models[1].set_weights(models[0].get_weights())
        np.testing.assert_allclose(models[0].predict(x), before, atol=0)
        np.testing.assert_allclose(models[1].predict(x), before, atol=1e-6)
    try:
        trainer.seed_model(len(seeds))
    except IndexError:
        pass
    else:
        raise AssertionError("seed_model accepted an index past the last seed")
    assert isinstance(trainer.device_name(), str) and trainer.device_name()
    assert trainer.device_memory() is None  # CPU: no allocator counters, reported as n/a, never 0
    versions = trainer.versions()
    assert versions and all(isinstance(value, str) and value for value in versions.values()), versions
    assert set(spec.frameworks) - {"optax", "flax"} <= set(versions), (spec.frameworks, versions)


if __name__ == "__main__":
    failed = False
    for name in sys.argv[1].split(","):
        try:
            check(name)
            print(f"{name} conforms", flush=True)
        except Exception as error:  # noqa: BLE001 - reported per backend, the others still checked
            traceback.print_exc()
            print(f"{name} fails: {type(error).__name__}: {error}", flush=True)
            failed = True
    sys.exit(1 if failed else 0)
