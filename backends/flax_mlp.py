"""The JAX/Flax backend: Flax NNX for the model, Optax (Keras' Adam rule) for the update.

NNX is used in the functional style: the module is split once into a static graph definition and a
pytree of parameters, the train step is a pure `jax.jit` function of (params, optimizer state, batch)
that merges the module only while tracing, so no Python object graph is walked per step.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence

import numpy as np

from backends.base import EpochLog, StepCallback, check_batches
from backends.devices import jax_device
from common.config import NUM_CLASSES, ExperimentConfig
from common.data import one_hot
from common.weights import Weights, check_weights, dense_names

EVAL_CHUNK = 1000  # rows per compiled evaluation call; the last chunk is padded and masked


def create_trainer(config: ExperimentConfig, weights: Weights, device: str = "cpu") -> FlaxTrainer:
    """A Flax trainer on `device`, starting from the shared `weights`."""
    return FlaxTrainer(config, weights, device)


def build_model(layer_sizes: Sequence[int], seed: int = 0):
    """The MLP as an NNX module (its random init is overwritten by the shared weights)."""
    from flax import nnx

    class MLP(nnx.Module):
        def __init__(self, rngs: nnx.Rngs):
            self.layers = nnx.List([nnx.Linear(fan_in, fan_out, rngs=rngs)
                                    for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:])])

        def __call__(self, x):
            for layer in self.layers[:-1]:
                x = nnx.relu(layer(x))
            return self.layers[-1](x)  # logits; softmax lives in the loss and in predict

    return MLP(nnx.Rngs(seed))


def cross_entropy_and_accuracy(logits, labels_one_hot):
    """Per-example softmax cross-entropy from logits (as TF Keras computes it) and correctness."""
    import jax.numpy as jnp
    import optax

    losses = optax.softmax_cross_entropy(logits, labels_one_hot)
    correct = (jnp.argmax(logits, -1) == jnp.argmax(labels_one_hot, -1)).astype(jnp.float32)
    return losses, correct


def make_train_step(graphdef, optimizer):
    """The pure train step: (params, opt_state, x, y[, mask]) -> (params, opt_state, loss, accuracy).

    With a mask (1 for real rows, 0 for padding) the loss and accuracy are means over the real rows
    only, so a padded final batch trains exactly like the short batch it stands for.
    """
    import jax
    import optax
    from flax import nnx

    def loss_fn(params, x, y, mask):
        logits = nnx.merge(graphdef, params)(x)
        losses, correct = cross_entropy_and_accuracy(logits, y)
        if mask is None:
            return losses.mean(), correct.mean()
        count = mask.sum()
        return (losses * mask).sum() / count, (correct * mask).sum() / count

    def train_step(params, opt_state, x, y, mask=None):
        (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y, mask)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, accuracy

    return train_step


class FlaxTrainer:
    """Flax MLP + Keras-rule Adam, one jitted step per batch."""

    name = "flax"

    def __init__(self, config: ExperimentConfig, weights: Weights, device: str = "cpu"):
        self.device = jax_device(device)
        import jax
        from flax import nnx

        from backends.keras_adam import keras_adam

        check_weights(weights, config.layer_sizes)
        self.config = config
        self.graphdef, params = nnx.split(build_model(config.layer_sizes, config.seed))
        self.optimizer = keras_adam(config.learning_rate, config.beta_1, config.beta_2, config.epsilon)
        self.params = self._to_device(params)
        self.set_weights(weights)
        self.opt_state = self._to_device(self.optimizer.init(self.params))
        # Donating params and optimizer state lets XLA update them in place.
        self._train_step = jax.jit(make_train_step(self.graphdef, self.optimizer), donate_argnums=(0, 1))
        self._eval_chunk = jax.jit(functools.partial(_eval_chunk, self.graphdef))
        self._predict_chunk = jax.jit(functools.partial(_predict_chunk, self.graphdef))

    def _to_device(self, tree):
        import jax

        return jax.device_put(tree, self.device)

    def train_epoch(self, x: np.ndarray, y: np.ndarray, batches: Sequence[np.ndarray],
                    on_step: StepCallback | None = None) -> EpochLog:
        """One pass over `batches`, syncing on each step's loss so every step is timed."""
        import jax

        check_batches(batches, self.config.batch_size)
        y_one_hot = one_hot(y)
        losses, accuracies, ends = [], [], []
        seen, loss_sum, correct_sum = 0, 0.0, 0.0
        start = time.perf_counter()
        for step, index in enumerate(batches):
            self.params, self.opt_state, loss, accuracy = self._train_step(
                self.params, self.opt_state, x[index], y_one_hot[index])
            # One transfer for both scalars; it blocks until the step is done.
            loss, accuracy = jax.device_get((loss, accuracy))
            losses.append(float(loss))
            accuracies.append(float(accuracy))
            ends.append(time.perf_counter())
            if on_step is not None:
                seen += len(index)
                loss_sum += losses[-1] * len(index)
                correct_sum += accuracies[-1] * len(index)
                on_step(step, loss_sum / seen, correct_sum / seen)
        return EpochLog(np.array(losses), np.array(accuracies), np.array([len(b) for b in batches]),
                        np.array(ends), start, ends[-1])

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """Mean loss and accuracy over every sample, in padded fixed-size chunks (one compile)."""
        total_loss = total_correct = 0.0
        for x_chunk, y_chunk, mask in _padded_chunks(x, one_hot(y)):
            loss_sum, correct_sum = self._eval_chunk(self.params, x_chunk, y_chunk, mask)
            total_loss += float(loss_sum)
            total_correct += float(correct_sum)
        return total_loss / len(x), total_correct / len(x)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Softmax probabilities for every row of x."""
        dummy_labels = np.zeros((len(x), NUM_CLASSES), np.float32)
        parts = [np.asarray(self._predict_chunk(self.params, x_chunk))[mask.astype(bool)]
                 for x_chunk, _, mask in _padded_chunks(x, dummy_labels)]
        return np.concatenate(parts)

    def get_weights(self) -> Weights:
        """Weights as NumPy float32, in the portable names."""
        from flax import nnx

        model = nnx.merge(self.graphdef, self.params)
        weights = {}
        for name, layer in zip(dense_names(len(model.layers)), model.layers):
            weights[f"{name}/kernel"] = np.array(layer.kernel[...], dtype=np.float32)
            weights[f"{name}/bias"] = np.array(layer.bias[...], dtype=np.float32)
        return weights

    def set_weights(self, weights: Weights) -> None:
        """Load portable weights into the module (same (in, out) kernel layout as Keras)."""
        import jax.numpy as jnp
        from flax import nnx

        check_weights(weights, self.config.layer_sizes)
        model = nnx.merge(self.graphdef, self.params)
        for name, layer in zip(dense_names(len(model.layers)), model.layers):
            layer.kernel[...] = jnp.asarray(weights[f"{name}/kernel"])
            layer.bias[...] = jnp.asarray(weights[f"{name}/bias"])
        self.params = self._to_device(nnx.split(model)[1])

    def device_name(self) -> str:
        """JAX's description of the device."""
        return f"{self.device.platform}:{self.device.id} ({self.device.device_kind})"

    def versions(self) -> dict[str, str]:
        """jax, jaxlib, flax and optax versions."""
        import flax
        import jax
        import jaxlib
        import optax

        return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "flax": flax.__version__,
                "optax": optax.__version__}


def _eval_chunk(graphdef, params, x, y, mask):
    from flax import nnx

    losses, correct = cross_entropy_and_accuracy(nnx.merge(graphdef, params)(x), y)
    return (losses * mask).sum(), (correct * mask).sum()


def _predict_chunk(graphdef, params, x):
    import jax
    from flax import nnx

    return jax.nn.softmax(nnx.merge(graphdef, params)(x))


def _padded_chunks(x: np.ndarray, y: np.ndarray, size: int = EVAL_CHUNK):
    """Yield (x, y, mask) chunks of exactly `size` rows, zero-padding the last so shapes never change."""
    for start in range(0, len(x), size):
        x_chunk, y_chunk = x[start:start + size], y[start:start + size]
        mask = np.ones(size, np.float32)
        if len(x_chunk) < size:
            pad = size - len(x_chunk)
            mask[len(x_chunk):] = 0
            x_chunk = np.concatenate([x_chunk, np.zeros((pad, x.shape[1]), x.dtype)])
            y_chunk = np.concatenate([y_chunk, np.zeros((pad, y.shape[1]), y.dtype)])
        yield x_chunk, y_chunk, mask
