"""The recipe as Flax NNX users write it: an nnx.Module, nnx.Optimizer, a jitted train step that updates
nnx.MultiMetric on the device, metrics read once per epoch. Importing nothing from mnist-bench.

`--style tutorial`: the Flax MNIST tutorial's `@nnx.jit` step over the module objects. `--style functional`: the
functional loop of Flax's "Performance considerations" guide, which splits the objects once (nnx.split) and
runs a `jax.jit` step over their state, because nnx.jit walks the object graph in Python on every call.
`--style optax`: the model split once into its parameters, and the step Optax's documentation writes, a `jax.jit`
function of (params, opt_state, batch) returning the new ones and the batch's loss and accuracy, kept on the device.

Usage: python flax_loop.py DATA_DIR OUT.json [--model mlp|cnn] [--epochs N] [--train-limit N] [--style S]
OUT.json gets each epoch's training seconds (validation excluded).
"""

import argparse
import gzip
import json
import time
from functools import partial
from pathlib import Path

import jax
import numpy as np
import optax
from flax import nnx

RECIPES = {"mlp": dict(batch_size=32, validation_split=0.2), "cnn": dict(batch_size=128, validation_split=0.1)}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped) as a uint8 array of its own shape."""
    data = gzip.decompress(path.read_bytes())
    dims = data[3]
    shape = np.frombuffer(data, ">u4", dims, offset=4)
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


class MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.hidden1, self.hidden2 = nnx.Linear(784, 256, rngs=rngs), nnx.Linear(256, 128, rngs=rngs)
        self.out = nnx.Linear(128, 10, rngs=rngs)

    def __call__(self, x, rngs=None):
        return self.out(nnx.relu(self.hidden2(nnx.relu(self.hidden1(x)))))


class CNN(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 32, (3, 3), padding="VALID", rngs=rngs)
        self.conv2 = nnx.Conv(32, 64, (3, 3), padding="VALID", rngs=rngs)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)
        self.out = nnx.Linear(1600, 10, rngs=rngs)
        self.pool = partial(nnx.max_pool, window_shape=(2, 2), strides=(2, 2))

    def __call__(self, x, rngs=None):
        x = self.pool(nnx.relu(self.conv2(self.pool(nnx.relu(self.conv1(x))))))
        return self.out(self.dropout(x.reshape(x.shape[0], -1), rngs=rngs))


def loss_fn(model, batch):
    logits = model(batch["image"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean(), logits


def update(model, optimizer, metrics, batch):
    """One training step on the objects, as the tutorial writes it (metrics updated on the device)."""
    (loss, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, batch)
    metrics.update(loss=loss, logits=logits, labels=batch["label"])
    optimizer.update(model, grads)


def functional_steps(objects):
    """The performance guide's functional loop: split once, then a jax.jit step over the objects' state."""
    graphdef, state = nnx.split(objects)

    @jax.jit
    def step(state, batch):
        model, optimizer, metrics = nnx.merge(graphdef, state)
        update(model, optimizer, metrics, batch)
        return nnx.state((model, optimizer, metrics))

    return state, step


def optax_steps(model, tx):
    """Optax's training step over the model's parameters: split once, merged only while tracing, dropout drawn from
    an explicit key that the step splits and hands back, as pure JAX code carries randomness."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss_and_accuracy(params, rest, batch, dropout_key):
        logits = nnx.merge(graphdef, params, rest)(batch["image"], rngs=dropout_key)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
        return loss, (logits.argmax(-1) == batch["label"]).mean()

    @jax.jit
    def step(params, opt_state, key, batch):
        key, dropout_key = jax.random.split(key)
        (loss, accuracy), grads = jax.value_and_grad(loss_and_accuracy, has_aux=True)(params, rest, batch, dropout_key)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, key, loss, accuracy

    return params, tx.init(params), jax.random.key(0), step


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", choices=RECIPES, default="mlp")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-limit", type=int, default=None)
    parser.add_argument("--style", choices=("tutorial", "functional", "optax"), default="tutorial")
    args = parser.parse_args()
    recipe = RECIPES[args.model]
    images = read_idx(args.data_dir / "train-images-idx3-ubyte.gz")[: args.train_limit].astype(np.float32) / 255
    labels = read_idx(args.data_dir / "train-labels-idx1-ubyte.gz")[: args.train_limit].astype(np.int32)
    images = images.reshape(len(images), -1) if args.model == "mlp" else images[..., None]
    train = int(len(images) * (1 - recipe["validation_split"]))  # the last part validates, as Keras' split
    model = (MLP if args.model == "mlp" else CNN)(nnx.Rngs(0))
    if args.style == "optax":
        params, opt_state, key, optax_step = optax_steps(model, optax.adam(1e-3))
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    metrics = nnx.MultiMetric(accuracy=nnx.metrics.Accuracy(), loss=nnx.metrics.Average("loss"))
    objects = (model, optimizer, metrics)
    train_step = nnx.jit(update)
    if args.style == "functional":
        state, step = functional_steps(objects)
    rng, seconds = np.random.default_rng(0), []
    for epoch in range(args.epochs):
        start = time.perf_counter()
        model.train()
        order, kept = rng.permutation(train), []
        for first in range(0, train, recipe["batch_size"]):
            index = order[first:first + recipe["batch_size"]]
            batch = {"image": images[index], "label": labels[index]}
            if args.style == "functional":
                state = step(state, batch)
            elif args.style == "optax":
                params, opt_state, key, loss, accuracy = optax_step(params, opt_state, key, batch)
                kept.append((loss, accuracy))
            else:
                train_step(model, optimizer, metrics, batch)
        if args.style == "functional":
            nnx.update(objects, state)  # the objects see the epoch's state (and its metrics) again
        if args.style == "optax":
            # The epoch's one sync: every step's loss and accuracy (the batches are full but the last).
            logged = dict(zip(("loss", "accuracy"), np.asarray(jax.device_get(kept)).mean(axis=0)))
        else:
            logged = {name: float(value) for name, value in metrics.compute().items()}  # the epoch's one sync
        seconds.append(time.perf_counter() - start)
        metrics.reset()
        if args.style == "functional":
            state = nnx.state(objects)  # metrics.reset() changed the objects: the next epoch starts from them
        print(f"epoch {epoch + 1}: loss {logged['loss']:.4f} accuracy {logged['accuracy']:.4f} ({seconds[-1]:.2f} s)")
    args.out.write_text(json.dumps({"epoch_s": seconds, "backend": f"flax {args.style} (jax {jax.__version__})"}))


if __name__ == "__main__":
    main()
