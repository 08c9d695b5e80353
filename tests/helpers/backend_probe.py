"""Run one backend through the equivalence scenario in a fresh process and save what it computed.

Usage: python backend_probe.py BACKEND INPUTS.npz OUTPUT.npz
       python backend_probe.py BACKEND,BACKEND,... INPUTS.npz OUTPUT_DIR DEVICES
The second form trains each backend (all of one framework family, so they can share the process) on
DEVICES data-parallel devices (CPU: virtual devices; 1: one device) into OUTPUT_DIR/BACKEND.npz.
INPUTS holds x, y, x_probe, batches (steps x batch indices), weights (w/<name>) and foreign weights
(f/<name>) trained elsewhere; OUTPUT holds forward probabilities, weights after 1, 5 and all steps,
per-step losses and accuracies, and predictions with the foreign weights.
"""

import sys
from pathlib import Path

import numpy as np

from backends.registry import create_trainer, prepare_process
from common.config import ExperimentConfig
from common.job import Job


def prefixed(weights, prefix):
    return {f"{prefix}/{name}": array for name, array in weights.items()}


def unprefixed(npz, prefix):
    return {name[len(prefix) + 1:]: npz[name] for name in npz.files if name.startswith(prefix + "/")}


def main(backends, inputs_path, output_path, devices="1"):
    devices = int(devices)
    names = backends.split(",")
    for backend in names:
        prepare_process(Job(backends=(backend,), devices=devices))  # before any framework is imported
    if len(names) == 1 and devices == 1 and not Path(output_path).is_dir():
        probe(names[0], inputs_path, output_path, devices)
        return
    for backend in names:
        probe(backend, inputs_path, Path(output_path) / f"{backend}.npz", devices)


def probe(backend, inputs_path, output_path, devices):
    inputs = np.load(inputs_path)
    config = ExperimentConfig()
    trainer = create_trainer(Job(backends=(backend,), config=config, devices=devices), {0: unprefixed(inputs, "w")})
    out = {"device_name": np.array(trainer.device_name())}
    model = trainer.seed_model(0)
    x, y, batches = inputs["x"], inputs["y"], list(inputs["batches"])
    out["probs0"] = model.predict(inputs["x_probe"])
    logs = []
    for start, stop, tag in ((0, 1, "w1"), (1, 5, "w5"), (5, len(batches), "wN")):
        logs.extend(trainer.train_epoch(x, y, [batches[start:stop]]))
        out.update(prefixed(model.get_weights(), tag))
    out["losses"] = np.concatenate([log.losses for log in logs])
    out["accuracies"] = np.concatenate([log.accuracies for log in logs])
    out["probs_trained"] = model.predict(inputs["x_probe"])
    out["eval"] = np.array(model.evaluate(inputs["x_probe"], inputs["y_probe"]))
    model.set_weights(unprefixed(inputs, "f"))
    out["probs_foreign"] = model.predict(inputs["x_probe"])
    np.savez(output_path, **out)


if __name__ == "__main__":
    main(*sys.argv[1:])
