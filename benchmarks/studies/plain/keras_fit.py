"""The recipe as a Keras tutorial writes it: Sequential, compile, one fit(validation_split=...), nothing else.

Usage: python keras_fit.py DATA_DIR OUT.json [--model mlp|cnn] [--epochs N] [--train-limit N]
(KERAS_BACKEND picks TensorFlow or JAX.) OUT.json gets each epoch's training seconds, validation excluded.
"""

import argparse
import gzip
import json
import time
from pathlib import Path

import numpy as np

import keras

RECIPES = {"mlp": dict(batch_size=32, validation_split=0.2), "cnn": dict(batch_size=128, validation_split=0.1)}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped) as a uint8 array of its own shape."""
    data = gzip.decompress(path.read_bytes())
    dims = data[3]
    shape = np.frombuffer(data, ">u4", dims, offset=4)
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def build(model: str) -> keras.Sequential:
    """The MLP notebook's model, or Keras' MNIST convnet example."""
    if model == "mlp":
        return keras.Sequential([keras.Input((784,)), keras.layers.Dense(256, activation="relu"),
                                 keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10, activation="softmax")])
    return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(32, 3, activation="relu"),
                             keras.layers.MaxPooling2D(2), keras.layers.Conv2D(64, 3, activation="relu"),
                             keras.layers.MaxPooling2D(2), keras.layers.Flatten(), keras.layers.Dropout(0.5),
                             keras.layers.Dense(10, activation="softmax")])


class TrainingClock(keras.callbacks.Callback):
    """Each epoch's training time: from its start to the end of its last training step, validation excluded (epoch
    hooks only, no per-step one).

    On JAX, fit dispatches steps ahead of the device and starts validating while the last steps still run, so the
    clock first waits for the trained state (the optimizer's step count, written by the last step); on TensorFlow
    that read is immediate.
    """

    def __init__(self):
        super().__init__()
        self.seconds, self.start, self.validating = [], None, False

    def on_epoch_begin(self, epoch, logs=None):
        self.start, self.validating = time.perf_counter(), False

    def on_test_begin(self, logs=None):
        if not self.validating:
            keras.ops.convert_to_numpy(self.model.optimizer.iterations)  # waits for the epoch's last step
            self.seconds.append(time.perf_counter() - self.start)
            self.validating = True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", choices=RECIPES, default="mlp")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-limit", type=int, default=None)
    args = parser.parse_args()
    x = read_idx(args.data_dir / "train-images-idx3-ubyte.gz")[: args.train_limit].astype("float32") / 255
    y = keras.utils.to_categorical(read_idx(args.data_dir / "train-labels-idx1-ubyte.gz")[: args.train_limit], 10)
    x = x.reshape(len(x), -1) if args.model == "mlp" else x[..., None]
    model = build(args.model)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"])
    clock = TrainingClock()
    model.fit(x, y, epochs=args.epochs, verbose=2, callbacks=[clock], **RECIPES[args.model])
    args.out.write_text(json.dumps({"epoch_s": clock.seconds, "backend": keras.backend.backend()}))


if __name__ == "__main__":
    main()
