"""The Keras 3 backends: the reference `model.fit` notebook, on TensorFlow or on JAX.

Keras fixes its backend at its first import, from KERAS_BACKEND, which `registry.prepare_process`
sets before this module is imported; one process hosts one Keras backend, and the harness gives
every run its own process.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping, Sequence

import keras
import numpy as np

from backends.base import (INFERENCE_BATCH, PROGRESS_INTERVAL_S, EpochLog, ModelBuilder, Placement,
                           SingleSeedTrainer, StepCallback, check_batches, single_seed)
from backends.devices import (check_keras_backend, configure_tensorflow, describe_jax_devices, jax_device_memory,
                              jax_devices, tensorflow_device_memory, tensorflow_platform)
from backends.frameworks import framework_versions
from backends.routes import kernel_routes, tensorflow_graph_routes
from common.config import ExperimentConfig
from common.data import one_hot
from common.mnist import INPUT_DIM, NUM_CLASSES
from common.weights import Weights, as_layer_list, check_weights, from_layer_list
from common.workloads import cnn, mlp, model_inputs, weight_shapes


def create_trainer(config: ExperimentConfig, initial_weights: Mapping[int, Weights], placement: Placement, *,
                   build: ModelBuilder, backend: str, keras_backend: str, jit_compile: bool | str,
                   steps_per_execution: int) -> KerasTrainer:
    """A Keras trainer on `keras_backend` and the placement's devices for one seed, from its initial weights.

    `jit_compile` and `steps_per_execution` are `compile`'s options, set per backend in the registry.
    """
    seed, weights = single_seed(initial_weights, backend)
    return KerasTrainer(config, weights, placement, build, seed=seed, keras_backend=keras_backend,
                        jit_compile=jit_compile, steps_per_execution=steps_per_execution)


# The model builders (backends/registry.py names them per model): exactly the reference's Sequential layers,
# called as `layers(config, seed)`; `seed` seeds the layers that draw (Dropout).


def mlp_layers(config: ExperimentConfig, seed: int) -> list:
    """The MLP notebook's Dense-ReLU stack with a softmax output."""
    sizes = mlp.layer_sizes(config)
    return ([keras.Input((sizes[0],))]
            + [keras.layers.Dense(units, activation="relu") for units in config.hidden_units]
            + [keras.layers.Dense(sizes[-1], activation="softmax")])


def cnn_layers(config: ExperimentConfig, seed: int) -> list:
    """Keras' MNIST convnet example (keras-io examples/vision/mnist_convnet.py) at the configured dropout rate."""
    layers, kernel, pool = keras.layers, (cnn.KERNEL, cnn.KERNEL), (cnn.POOL, cnn.POOL)
    return [keras.Input(cnn.IMAGE_SHAPE),
            layers.Conv2D(cnn.CONV_FILTERS[0], kernel_size=kernel, activation="relu"),
            layers.MaxPooling2D(pool_size=pool),
            layers.Conv2D(cnn.CONV_FILTERS[1], kernel_size=kernel, activation="relu"),
            layers.MaxPooling2D(pool_size=pool),
            layers.Flatten(),
            layers.Dropout(config.dropout, seed=seed),
            layers.Dense(NUM_CLASSES, activation="softmax")]


def build_reference_model(config: ExperimentConfig, build: ModelBuilder, jit_compile: bool | str,
                          steps_per_execution: int, seed: int):
    """Exactly the tutorial model, compiled with Adam and categorical cross-entropy as the tutorial does."""
    model = keras.Sequential(build(config, seed))
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate, beta_1=config.beta_1,
                                        beta_2=config.beta_2, epsilon=config.epsilon),
        loss="categorical_crossentropy", metrics=["accuracy"], jit_compile=jit_compile,
        steps_per_execution=steps_per_execution)
    return model


class KerasTrainer(SingleSeedTrainer):
    """`model.fit` / `model.evaluate` / `model.predict`, fed the shared batch order.

    On several devices each framework's own data-parallel API splits every batch: on TensorFlow a
    `tf.distribute.MirroredStrategy` in whose scope the model is built and compiled, on JAX a
    `keras.distribution.DataParallel`; `fit` is called exactly as on one device.
    """

    def __init__(self, config: ExperimentConfig, weights: Weights, placement: Placement, build: ModelBuilder, *,
                 seed: int, keras_backend: str, jit_compile: bool | str, steps_per_execution: int):
        device, devices = placement.device, placement.devices
        check_keras_backend(keras_backend)
        self.shapes = weight_shapes(config)
        check_weights(weights, self.shapes)
        self.seeds = (seed,)
        self.config = config
        self.keras_backend = keras_backend
        scope = contextlib.nullcontext()
        if keras_backend == "tensorflow":
            self._devices = configure_tensorflow(device, devices)
            if devices > 1:
                import tensorflow as tf

                scope = tf.distribute.MirroredStrategy(self._devices).scope()
        else:
            self._devices = jax_devices(device, devices)
            if devices > 1:
                keras.distribution.set_distribution(keras.distribution.DataParallel(
                    devices=[f"{d.platform}:{d.id}" for d in self._devices]))
        self._device = self._devices[0]
        self._resident = None  # (the training array, its model inputs, one-hot targets), made at the first epoch
        with scope:
            self.model = build_reference_model(config, build, jit_compile, steps_per_execution, seed)
            self.model.set_weights(as_layer_list(weights, self.shapes))

    def train_one_epoch(self, x: np.ndarray, y: np.ndarray, batches: Sequence[np.ndarray],
                        on_step: StepCallback | None = None, time_steps: bool = False) -> EpochLog:
        """One `model.fit` epoch over the batches in order, fed as Keras feeds arrays to its own backend."""
        check_batches(batches, self.config.batch_size)
        sizes = np.array([len(b) for b in batches])
        recorder = StepRecorder(sizes, on_step, time_steps)
        self.model.fit(self._epoch_data(x, y, batches), epochs=1, shuffle=False, verbose=0, callbacks=[recorder])
        losses, accuracies, ends = recorder.per_step()
        return EpochLog(losses, accuracies, sizes, ends, first_step_end_s=recorder.first_end)

    def _epoch_data(self, x: np.ndarray, y: np.ndarray, batches: Sequence[np.ndarray]):
        """`fit`'s data: the epoch's batches in the shared order, gathered per batch as `fit(x, y, shuffle=True)` does.

        A user's one `fit` converts the data set once and gathers each batch of its permutation as training goes
        (on TensorFlow in a tf.data pipeline, on JAX in the loop that feeds the steps); here the data set is
        converted once per trainer (a per-epoch `fit` must not convert it every epoch) and each batch is gathered
        the same way, the shared order in place of Keras' permutation. Gathering the whole epoch up front instead
        put a copy of the training set in front of every keras-jax epoch that plain `fit` does not make.
        """
        if self._resident is None or self._resident[0] is not x:
            inputs, targets = model_inputs(self.config, x), one_hot(y)
            if self.keras_backend == "tensorflow":
                import tensorflow as tf

                inputs, targets = tf.convert_to_tensor(inputs), tf.convert_to_tensor(targets)
            self._resident = (x, inputs, targets)
        _, inputs, targets = self._resident
        if self.keras_backend != "tensorflow":
            # Keras' JAX trainer gathers each batch from NumPy arrays in its training loop (ArrayDataAdapter, no
            # look-ahead on a CPU); a generator of the same gathers is fed to the steps the same way.
            return ((inputs[batch], targets[batch]) for batch in batches)
        import tensorflow as tf

        order = np.concatenate(batches)
        batch_size = self.config.batch_size
        full = len(order) // batch_size * batch_size
        indices = tf.data.Dataset.from_tensor_slices(order[:full].reshape(-1, batch_size))
        if full < len(order):
            indices = indices.concatenate(tf.data.Dataset.from_tensors(order[full:]))
        dataset = indices.map(lambda index: (tf.gather(inputs, index), tf.gather(targets, index)),
                              num_parallel_calls=tf.data.AUTOTUNE)
        options = tf.data.Options()
        options.experimental_optimization.apply_default_optimizations = False  # as Keras' array adapter sets it
        return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """`model.evaluate`: sample-mean loss and accuracy."""
        result = self.model.evaluate(model_inputs(self.config, x), one_hot(y), batch_size=INFERENCE_BATCH, verbose=0, return_dict=True)
        return float(result["loss"]), float(result["accuracy"])

    def predict(self, x: np.ndarray) -> np.ndarray:
        """`model.predict`: softmax probabilities."""
        return np.asarray(self.model.predict(model_inputs(self.config, x), batch_size=INFERENCE_BATCH, verbose=0), dtype=np.float32)

    def get_weights(self) -> Weights:
        """`model.get_weights()` in the portable names."""
        return from_layer_list(self.model.get_weights(), self.shapes)

    def set_weights(self, weights: Weights) -> None:
        """`model.set_weights()` from the portable names."""
        check_weights(weights, self.shapes)
        self.model.set_weights(as_layer_list(weights, self.shapes))

    def kernel_routes(self) -> dict:
        """The train step's kernel routes: from the optimized HLO where XLA compiles it (Keras on JAX, jit_compile on
        TensorFlow), else from the TensorFlow graph of `train_step` (one TensorFlow kernel per op)."""
        if len(self._devices) > 1:
            return {"note": "not read for a data-parallel model"}
        batch = self.config.batch_size
        x = model_inputs(self.config, np.zeros((batch, INPUT_DIM), np.float32))
        y = np.zeros((batch, NUM_CLASSES), np.float32)
        if self.keras_backend == "jax":
            import jax

            # The state fit passes its jitted train step (Keras' own, keras/src/backend/jax/trainer.py).
            state = self.model._get_jax_state(trainable_variables=True, non_trainable_variables=True,
                                              optimizer_variables=True, metrics_variables=True)
            hlo = jax.jit(self.model.train_step).lower(state, (x, y)).compile().as_text()
            platform = self._device.platform
            return {"source": "optimized HLO of Keras' train_step under jax.jit, as fit compiles it",
                    "platform": platform, "routes": kernel_routes(hlo, platform), "hlo": hlo}
        import tensorflow as tf

        platform = tensorflow_platform(self._device)
        if self.model.jit_compile:
            hlo = tf.function(self.model.train_step, jit_compile=True).experimental_get_compiler_ir((x, y))(
                stage="optimized_hlo")
            return {"source": "optimized HLO of Keras' train_step under tf.function(jit_compile=True)",
                    "platform": platform, "routes": kernel_routes(hlo, platform), "hlo": hlo}
        return {"source": "TensorFlow kernels of one executed train_step (its partitioned graph, after Grappler and "
                          "the oneDNN rewrite)", "platform": platform,
                "routes": tensorflow_graph_routes(self._executed_op_types(tf.constant(x), tf.constant(y)))}

    def _executed_op_types(self, x, y) -> list[str]:
        """The op type of every kernel one `train_step` runs, from TensorFlow's run metadata; the model's state is
        put back after the step, so reading the routes never changes what was trained."""
        import tensorflow as tf
        # TensorFlow 2's one switch for eager run metadata (what tf.summary.trace_on uses); no public equivalent.
        from tensorflow.python.eager import context

        variables = [*self.model.variables, *self.model.optimizer.variables, *self.model.metrics_variables]
        saved = [variable.numpy() for variable in variables]
        step = tf.function(self.model.train_step)
        context.enable_run_metadata()
        context.enable_graph_collection()
        try:
            step((x, y))
            metadata = context.export_run_metadata()
        finally:
            context.disable_graph_collection()
            context.disable_run_metadata()
            for variable, value in zip(variables, saved):
                variable.assign(value)
        # The step's own function is the one with the most kernels (the others are variable set-up helpers).
        graphs = [[node.op for partition in graph.partition_graphs for node in partition.node]
                  for graph in metadata.function_graphs]
        return max(graphs, key=len, default=[])

    def device_name(self) -> str:
        """The device Keras' backend computes on (all of them, on several)."""
        if self.keras_backend == "jax":
            return describe_jax_devices(self._devices)
        return ", ".join(self._devices)

    def device_memory(self) -> dict | None:
        """The device allocator's peak and current bytes (None on CPU)."""
        if self.keras_backend == "jax":
            return jax_device_memory(self._device)
        return tensorflow_device_memory(self._device)

    def versions(self) -> dict[str, str]:
        """keras and the backend framework's version."""
        return framework_versions(("keras", self.keras_backend))


class StepRecorder(keras.callbacks.Callback):
    """A callback that keeps fit's running metrics of each executed step (and the clock, with `time_steps`).

    Without `time_steps` it is `async_safe`: where Keras' backend allows it, fit hands it each step's logs on a
    worker thread and keeps dispatching, as it does with no callback at all. It then only keeps the logs' tensors
    and reads them to numbers once, at the end of the epoch, and for the progress bar every PROGRESS_INTERVAL_S:
    reading a tensor waits for its step, and a read per step cost keras-jax a measurable share of an MLP epoch
    (docs/results/2026-12-03-fit-overhead.md). With `time_steps` it runs in the training loop and reads every step's
    logs at once, so the clock it reads after them is honest.
    """

    def __init__(self, sizes: np.ndarray, on_step: StepCallback | None, time_steps: bool):
        super().__init__()
        self.async_safe = not time_steps  # what Keras' CallbackList reads
        self.seen, self.on_step, self.time_steps = np.cumsum(sizes), on_step, time_steps
        self.means, self.ends, self.first_end, self.latest = {}, {}, None, -1
        self.last_report = -np.inf
        self.lock = threading.Lock()  # async callbacks run on several threads, in any order

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        # Keras numbers an execution by its planned last step, which can run past a short epoch.
        last = len(self.seen) - 1
        step = min(batch, last)
        metrics = (logs["loss"], logs["accuracy"])
        if self.time_steps or self.first_end is None:
            metrics = (float(metrics[0]), float(metrics[1]))  # waits for the step
        with self.lock:
            self.means[step] = metrics
            if self.time_steps:
                self.ends[step] = time.perf_counter()
            if self.first_end is None:
                # Without time_steps read on the thread that got the first step's logs: its wait ended then.
                self.first_end = time.perf_counter()
            now = time.perf_counter()
            report = (self.on_step is not None and step > self.latest
                      and (now - self.last_report >= PROGRESS_INTERVAL_S or step == last))
            if report:
                self.latest, self.last_report = step, now
        if report:
            # Progress shows fit's running epoch means (never going back, as threads may deliver late steps
            # after newer ones); per-step values are recovered at the end.
            self.on_step(step, float(metrics[0]), float(metrics[1]))

    def per_step(self):
        """Each step's own loss and accuracy (and, with `time_steps`, when it ended), from fit's running means."""
        last_steps = np.array(sorted(self.means))
        # The epoch's one read of every kept tensor (fit has returned: all of them are done).
        means = np.array([[float(value) for value in self.means[step]] for step in last_steps], dtype=np.float64)
        losses, accuracies = (step_values_of_running_means(means[:, column], last_steps, self.seen)
                              for column in range(2))
        if not self.time_steps:
            return losses, accuracies, None
        ends = np.array([self.ends[step] for step in last_steps])
        return losses, accuracies, step_ends_of_executions(ends, last_steps, self.start, len(self.seen))


def step_values_of_running_means(means: np.ndarray, last_steps: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Undo fit's running (sample-weighted) means, reported after the steps `last_steps` with `seen` samples seen
    after each step, into each step's own value. With steps_per_execution > 1, Keras reports once per execution;
    every step of an execution then gets that execution's mean."""
    reported_seen = seen[last_steps]
    group_sizes = np.diff(np.concatenate([[0], reported_seen]))
    group_means = np.diff(np.concatenate([[0.0], means * reported_seen])) / group_sizes
    return group_means[np.searchsorted(last_steps, np.arange(len(seen)))]


def step_ends_of_executions(ends: np.ndarray, last_steps: np.ndarray, start: float, steps: int) -> np.ndarray:
    """When each step ended, from when each execution (ending at step `last_steps`) ended: the steps inside one
    execution share its duration evenly."""
    step_group = np.searchsorted(last_steps, np.arange(steps))
    starts = np.concatenate([[start], ends[:-1]])
    first_step = np.concatenate([[0], last_steps[:-1] + 1])
    fraction = (np.arange(steps) - first_step[step_group] + 1) / (last_steps - first_step + 1)[step_group]
    return starts[step_group] + fraction * (ends - starts)[step_group]
