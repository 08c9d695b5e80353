"""Config validation, splits, batch order and the shared initial weights."""

from __future__ import annotations

import numpy as np
import pytest

from common.config import ExperimentConfig
from common.validation import ConfigError
from common.job import Job
from common.data import epoch_batches, epoch_permutation, make_splits, one_hot, steps_per_epoch, to_features
from common.mnist import load_mnist
from common.weights import as_layer_list, check_weights, from_layer_list, parameter_count
from common.workloads import WORKLOADS, UnknownModelError, get_workload
from common.workloads.mlp import init_weights, layer_sizes, weight_shapes

LAYERS = (784, 256, 128, 10)


def test_config_defaults_match_the_reference_notebook():
    config = ExperimentConfig()
    assert layer_sizes(config) == LAYERS
    assert (config.learning_rate, config.beta_1, config.beta_2, config.epsilon) == (1e-3, 0.9, 0.999, 1e-7)
    assert (config.epochs, config.batch_size, config.validation_split) == (10, 32, 0.2)
    assert ExperimentConfig.from_dict(config.to_dict()) == config
    job = Job(backends=("flax",))
    assert (job.seeds, job.device, job.target_accuracy, job.data_dir) == ((0,), "cpu", 0.97, None)
    assert Job.from_dict(job.to_dict()) == job


def test_each_model_has_its_references_defaults_and_flags_override_them():
    cnn = ExperimentConfig(model="cnn")
    # Keras' "Simple MNIST convnet" example: batch 128, 15 epochs, validation split 0.1, dropout 0.5.
    assert (cnn.epochs, cnn.batch_size, cnn.validation_split, cnn.dropout, cnn.hidden_units) == (15, 128, 0.1, 0.5, ())
    assert (cnn.learning_rate, cnn.beta_1, cnn.beta_2, cnn.epsilon) == (1e-3, 0.9, 0.999, 1e-7)
    assert ExperimentConfig(model="cnn", batch_size=64, dropout=0.0).batch_size == 64
    assert ExperimentConfig(model="cnn", dropout=0.0).epochs == 15
    assert ExperimentConfig.from_dict(cnn.to_dict()) == cnn and cnn.to_dict()["model"] == "cnn"
    old = {key: value for key, value in ExperimentConfig().to_dict().items() if key not in ("model", "dropout")}
    assert ExperimentConfig.from_dict(old) == ExperimentConfig()  # results.json from before models existed
    for field, value in (("hidden_units", (64,)), ("dropout", 1.0), ("dropout", -0.1)):
        with pytest.raises(ConfigError, match=rf"invalid config: {field}=") as raised:
            ExperimentConfig(model="cnn", **{field: value})
        assert raised.value.field == field
    with pytest.raises(UnknownModelError, match=r"unknown model 'rnn'; valid models: mlp, cnn"):
        get_workload("rnn")


@pytest.mark.parametrize("field, value", [
    ("batch_size", 0), ("epochs", 0), ("validation_split", 1.0), ("validation_split", -0.1),
    ("learning_rate", -1e-3), ("learning_rate", float("nan")), ("beta_1", 1.0), ("epsilon", 0.0),
    ("hidden_units", ()), ("train_limit", 0), ("batch_size", 2.5), ("model", "rnn"),
    ("dropout", 0.5),  # the MLP has no dropout layer
])
def test_invalid_config_names_the_field(field, value):
    with pytest.raises(ConfigError, match=rf"invalid config: {field}=") as raised:
        ExperimentConfig(**{field: value})
    assert raised.value.field == field


@pytest.mark.parametrize("field, value", [
    ("seeds", (-1,)), ("seeds", ()), ("seeds", (0, 0)), ("backends", ()), ("device", "tpu"),
    ("target_accuracy", 0.0), ("target_accuracy", 1.5), ("config", {"epochs": 3}),
])
def test_invalid_job_names_the_field(field, value):
    with pytest.raises(ConfigError, match=rf"invalid config: {field}=") as raised:
        Job(**{"backends": ("flax",), field: value})
    assert raised.value.field == field


def test_job_for_one_worker():
    job = Job(backends=("keras", "flax-vmap"), seeds=(0, 1, 2), config=ExperimentConfig(epochs=3))
    child = job.for_backend("flax-vmap", (0, 1, 2))
    assert (child.backend, child.seeds, child.config.epochs) == ("flax-vmap", (0, 1, 2), 3)
    with pytest.raises(ConfigError, match="a worker trains one backend"):
        job.backend
    with pytest.raises(ConfigError, match="unknown job field"):
        Job.from_dict({**job.to_dict(), "sedes": [1]})


def test_unknown_config_field_is_rejected():
    with pytest.raises(ConfigError, match="unknown config field"):
        ExperimentConfig.from_dict({"batch_sz": 3})


def test_preprocessing():
    images = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    np.testing.assert_allclose(to_features(images), [[0.0, 1.0, 0.2, 0.4]], rtol=1e-7)
    assert to_features(images).dtype == np.float32
    np.testing.assert_array_equal(one_hot(np.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])
    with pytest.raises(ValueError, match="labels must be in 0..9"):
        one_hot(np.array([10]))


def test_validation_is_the_unshuffled_tail(mnist_data_dir):
    data = load_mnist(mnist_data_dir)
    splits = make_splits(data, ExperimentConfig())
    assert (len(splits.x_train), len(splits.x_val), len(splits.x_test)) == (48_000, 12_000, 10_000)
    np.testing.assert_array_equal(splits.x_val, to_features(data.train_images[48_000:]))
    np.testing.assert_array_equal(splits.y_train, data.train_labels[:48_000])
    limited = make_splits(data, ExperimentConfig(train_limit=1000, test_limit=200))
    assert (len(limited.x_train), len(limited.x_val), len(limited.x_test)) == (800, 200, 200)


def test_batch_order_is_a_deterministic_function_of_seed_and_epoch():
    a = epoch_permutation(1000, seed=0, epoch=0)
    np.testing.assert_array_equal(a, epoch_permutation(1000, seed=0, epoch=0))
    assert not np.array_equal(a, epoch_permutation(1000, seed=1, epoch=0))
    assert not np.array_equal(a, epoch_permutation(1000, seed=0, epoch=1))
    np.testing.assert_array_equal(np.sort(a), np.arange(1000))


def test_final_partial_batch_is_kept():
    batches = epoch_batches(100, 32, seed=3, epoch=2)
    assert [len(b) for b in batches] == [32, 32, 32, 4]
    assert steps_per_epoch(100, 32) == 4 and steps_per_epoch(48_000, 32) == 1500
    np.testing.assert_array_equal(np.concatenate(batches), epoch_permutation(100, 3, 2))


def test_initial_weights_shapes_bounds_and_count():
    weights = init_weights(LAYERS, seed=0)
    check_weights(weights, weight_shapes(LAYERS))
    assert parameter_count(weights) == 235_146
    for index, (fan_in, fan_out) in enumerate(zip(LAYERS[:-1], LAYERS[1:])):
        kernel, bias = weights[f"dense_{index}/kernel"], weights[f"dense_{index}/bias"]
        limit = np.sqrt(6 / (fan_in + fan_out))
        assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.95 * limit
        assert abs(kernel.std() - limit / np.sqrt(3)) < 0.05 * limit  # uniform(-l, l) has std l/sqrt(3)
        assert not bias.any()
    np.testing.assert_array_equal(weights["dense_1/kernel"], init_weights(LAYERS, 0)["dense_1/kernel"])
    assert not np.array_equal(weights["dense_1/kernel"], init_weights(LAYERS, 1)["dense_1/kernel"])


def test_weights_round_trip_through_the_layer_list_exactly():
    weights = init_weights(LAYERS, seed=5)
    relisted = from_layer_list(as_layer_list(weights, weight_shapes(LAYERS)), weight_shapes(LAYERS))
    assert all(np.array_equal(relisted[k], weights[k]) for k in weights)


def test_check_weights_rejects_a_wrong_shape():
    weights = init_weights(LAYERS, seed=0)
    weights["dense_2/bias"] = np.zeros(11, np.float32)
    with pytest.raises(ValueError, match=r"weights\['dense_2/bias'\] is float32\(11,\), expected float32\(10,\)"):
        check_weights(weights, weight_shapes(LAYERS))


def test_every_setting_a_model_sets_is_named_once():
    import dataclasses

    from common.config import MODEL_SETTINGS

    left_to_the_model = {field.name for field in dataclasses.fields(ExperimentConfig) if field.default is None}
    assert set(MODEL_SETTINGS) == left_to_the_model - {"train_limit", "test_limit"}
    assert all(set(MODEL_SETTINGS) <= set(workload.defaults) for workload in WORKLOADS.values())
