"""docs/contributing.md, proven: a toy workload (multinomial logistic regression, 784-10) added to a copy of the
code by the guide's steps, trained by one backend of each framework family and verified against float64.

Each step below is one step of "Add a model", done to a scratch copy of the tree as a contributor would do it to
theirs; where this test needed something the guide does not say, the guide is what was wrong.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FAMILY_BACKENDS = "keras,flax,tf-fused"  # one backend of each framework family

# Step 1: the workload module, every attribute and method of common.workloads.base.Workload.
WORKLOAD = '''"""Multinomial logistic regression, 784-10: the contributing guide's toy workload."""

from __future__ import annotations

import numpy as np

from common.mnist import INPUT_DIM, NUM_CLASSES
from common.seeds import WEIGHTS_STREAM
from common.validation import check
from common.weights import Weights
from common.workloads.base import ModelSettings, Workload, softmax
from common.workloads.mlp import TOLERANCES

SHAPES = {"dense_0/kernel": (INPUT_DIM, NUM_CLASSES), "dense_0/bias": (NUM_CLASSES,)}


class LogRegWorkload(Workload):
    """One dense layer and a softmax."""

    name = "logreg"
    summary = "784-10 logistic regression"
    defaults = {"hidden_units": (), "epochs": 2, "batch_size": 32, "validation_split": 0.2DROPOUT}
    input_shape = (INPUT_DIM,)
    reference_source = "common/workloads/logreg.py"
    tolerances = TOLERANCES

    def validate(self, config: ModelSettings) -> None:
        check(config.hidden_units == (), "hidden_units", config.hidden_units, "() for --model logreg")
        check(config.dropout == 0, "dropout", config.dropout, "0 for --model logreg")

    def weight_shapes(self, config: ModelSettings) -> dict[str, tuple[int, ...]]:
        return dict(SHAPES)

    def initial_weights(self, config: ModelSettings, seed: int) -> Weights:
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(WEIGHTS_STREAM,)))
        limit = np.sqrt(6.0 / (INPUT_DIM + NUM_CLASSES))
        return {"dense_0/kernel": rng.uniform(-limit, limit, SHAPES["dense_0/kernel"]).astype(np.float32),
                "dense_0/bias": np.zeros(SHAPES["dense_0/bias"], np.float32)}

    def layer_macs_per_sample(self, config: ModelSettings) -> list[int]:
        return [INPUT_DIM * NUM_CLASSES]

    def layer_gemms(self, config: ModelSettings) -> list[tuple[int, int, int]]:
        return [(config.batch_size, INPUT_DIM, NUM_CLASSES)]

    def reference_logits(self, weights: Weights, x: np.ndarray) -> np.ndarray:
        return x @ weights["dense_0/kernel"] + weights["dense_0/bias"]

    def reference_loss_and_grads(self, weights: Weights, x: np.ndarray, y_one_hot: np.ndarray):
        probs = softmax(self.reference_logits(weights, x))
        delta = (probs - y_one_hot) / len(x)
        return (float(-np.mean(np.sum(y_one_hot * np.log(probs), axis=1))),
                {"dense_0/kernel": x.T @ delta, "dense_0/bias": delta.sum(axis=0)})

    def describe(self, config: ModelSettings) -> str:
        return "logistic regression 784-10"
'''

# Step 2: one builder per family, each to its family's contract (docs/contributing.md, "The builders").
FLAX_BUILDER = '''

class LogReg(nnx.Module):
    """One dense layer: logits out."""

    def __init__(self, config, rngs, *, conv_general_dilated=None, dot_general=None, max_pool=None):
        self.dense = nnx.Linear(784, NUM_CLASSES, rngs=rngs, **dense_options(dot_general))

    def __call__(self, x, dropout_key=None):
        return self.dense(x)

    def named_layers(self) -> dict:
        return {"dense_0": self.dense}
'''
KERAS_BUILDER = '''

def logreg_layers(config, seed: int) -> list:
    """One dense softmax layer."""
    return [keras.Input((INPUT_DIM,)), keras.layers.Dense(NUM_CLASSES, activation="softmax")]
'''
TENSORFLOW_BUILDER = '''

def logreg_logits(trainer, x, training: bool):
    """One dense layer."""
    ((kernel, bias),) = trainer.layers()
    return tf.matmul(x, kernel) + bias
'''
# Step 3: one line per family in the registry.
REGISTRY_LINES = {"FLAX_BUILDERS = {": '    "logreg": "backends.flax_models:LogReg",',
                  "KERAS_BUILDERS = {": '    "logreg": "backends.keras_models:logreg_layers",',
                  "TENSORFLOW_BUILDERS = {": '    "logreg": "backends.tf_fused:logreg_logits",'}


def insert_after(path: Path, anchor: str, line: str) -> None:
    """Put `line` right after the line that is `anchor` (the guide's "one entry here"); fail if it is not there."""
    lines = path.read_text().splitlines()
    assert anchor in lines, f"{path}: no line {anchor!r} to add to: docs/contributing.md and the code disagree"
    lines.insert(lines.index(anchor) + 1, line)
    path.write_text("\n".join(lines) + "\n")


def cli(tree: Path, *argv: str) -> subprocess.CompletedProcess:
    """`mnist-bench ARGV` run from the copy, so that its modules (and its workers') are the copy's."""
    return subprocess.run([sys.executable, "-m", "benchmarks.cli", *argv], cwd=tree, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(tree)})


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """A copy of the code with the toy workload added by the guide's steps."""
    tree = tmp_path_factory.mktemp("contributor") / "mnist-bench"
    for room in ("common", "backends", "benchmarks"):
        shutil.copytree(REPO / room, tree / room, ignore=shutil.ignore_patterns("__pycache__"))
    workloads = tree / "common" / "workloads"
    # A workload whose defaults miss a setting is named in one line, before anything else can go wrong.
    (workloads / "logreg.py").write_text(WORKLOAD.replace("DROPOUT", ""))
    insert_after(workloads / "__init__.py", "from common.workloads import cnn, mlp", "from common.workloads import logreg")
    insert_after(workloads / "__init__.py", "WORKLOADS: dict[str, Workload] = {workload.name: workload for workload in (",
                 "    logreg.LogRegWorkload(),")
    broken = subprocess.run([sys.executable, "-c", "import common.config"], cwd=tree, capture_output=True, text=True)
    assert broken.returncode == 1 and broken.stderr.strip().splitlines()[-1].endswith(
        "workload 'logreg' has no default for dropout; a workload's `defaults` sets every one of hidden_units, "
        "epochs, batch_size, validation_split, dropout (docs/contributing.md)"), broken.stderr[-2000:]
    (workloads / "logreg.py").write_text(WORKLOAD.replace("DROPOUT", ', "dropout": 0.0'))
    for module, builder in (("flax_models", FLAX_BUILDER), ("keras_models", KERAS_BUILDER),
                            ("tf_fused", TENSORFLOW_BUILDER)):
        path = tree / "backends" / f"{module}.py"
        path.write_text(path.read_text() + builder)
    for anchor, line in REGISTRY_LINES.items():
        insert_after(tree / "backends" / "registry.py", anchor, line)
    return tree


def test_the_toy_workload_trains_on_one_backend_of_each_family(tree, tmp_path, mnist_data_dir):
    out = tmp_path / "run"
    done = cli(tree, "run", "--model", "logreg", "--backend", FAMILY_BACKENDS, "--rounds", "1", "--timing-rounds", "0", "--train-limit", "1000",
               "--test-limit", "200", "--data-dir", str(mnist_data_dir), "--out", str(out), "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["job"]["config"]["model"] == "logreg" and results["job"]["config"]["epochs"] == 2
    assert [(run["backend"], run["status"]) for run in results["runs"]] == [
        (name, "ok") for name in FAMILY_BACKENDS.split(",")]
    assert all(run["test"]["accuracy"] > 0.3 for run in results["runs"])  # chance is 0.1
    # The harness, roofline and report take the model's facts from the workload alone.
    assert "logistic regression 784-10" in (out / "summary.md").read_text()
    assert results["environment"]["roofline"]["step_floor"]["batch_size"] == 32
    # A family without a builder is refused in one line, naming the backends that have the model.
    refused = cli(tree, "run", "--model", "logreg", "--backend", "flax-ffi", "--data-dir", str(mnist_data_dir))
    assert refused.returncode == 2 and "backend 'flax-ffi' does not implement --model logreg" in refused.stderr
    assert "keras, flax, keras-jax, flax-fused, flax-vmap, keras-xla, keras-tuned, tf-fused" in refused.stderr


def test_verify_proves_the_toy_workload_equivalent_across_families(tree, tmp_path, mnist_data_dir):
    out = tmp_path / "verify"
    done = cli(tree, "verify", "--model", "logreg", "--backend", FAMILY_BACKENDS, "--steps", "20",
               "--data-dir", str(mnist_data_dir), "--out", str(out), "--quiet")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    report = json.loads((out / "verify.json").read_text())
    assert report["passed"] and sorted(report["backends"]) == sorted(FAMILY_BACKENDS.split(","))
    assert "logistic regression 784-10" in done.stdout
