"""Backends made wrong on purpose, each by one mistake people make, to prove that `verify` catches them.

`register()` adds them to the registry of the process it runs in; `python broken_backends.py ARGS` is a
stand-in for the verify worker that registers them first, then runs the real one.
"""

import sys

import jax
import optax

from backends import registry
from backends.flax_models import FlaxTrainer, make_train_step
from backends.keras_adam import keras_adam

MISTAKES = {
    "flax-optax-adam": "optax.adam instead of Keras' Adam rule (epsilon added to the corrected sqrt(v))",
    "flax-eps10": "Keras' Adam rule with epsilon 10x too large",
    "flax-no-bias": "the dense layers' biases left out of the forward pass",
}


class BrokenFlaxTrainer(FlaxTrainer):
    """The flax backend with one mistake."""

    def __init__(self, config, weights, placement, build, *, seed, mistake):
        super().__init__(config, weights, placement, build, seed=seed)
        if mistake == "flax-optax-adam":
            self.optimizer = optax.adam(config.learning_rate, config.beta_1, config.beta_2, config.epsilon)
        elif mistake == "flax-eps10":
            self.optimizer = keras_adam(config.learning_rate, config.beta_1, config.beta_2, 10 * config.epsilon)
        self.opt_state = self.optimizer.init(self.params)
        step = make_train_step(self.ops.graphdef, self.optimizer)
        if mistake == "flax-no-bias":
            inner = step

            def step(params, opt_state, dropout_key, x, y, mask=None):
                no_bias = jax.tree_util.tree_map_with_path(
                    lambda path, leaf: leaf * 0 if "bias" in jax.tree_util.keystr(path) else leaf, params)
                new_params, opt_state, loss, accuracy = inner(no_bias, opt_state, dropout_key, x, y, mask)
                return new_params, opt_state, loss, accuracy
        self._train_step = jax.jit(step)


def create_trainer(config, initial_weights, placement, *, build, backend):
    """A broken trainer for one seed."""
    ((seed, weights),) = initial_weights.items()
    return BrokenFlaxTrainer(config, weights, placement, build, seed=seed, mistake=backend)


def register():
    """Add every broken backend to this process' registry."""
    for name, mistake in MISTAKES.items():
        registry.BACKENDS[name] = registry.BackendSpec(name, "broken_backends:create_trainer", mistake,
                                                       ("jax", "flax", "optax"), registry.FLAX_BUILDERS)


if __name__ == "__main__":
    register()
    from benchmarks.harness import verify

    sys.exit(verify.main(sys.argv[1:]))
