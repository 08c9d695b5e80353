"""What the tests share besides fixtures: stand-in workers and probes run as scripts, and a trainer maker."""

from __future__ import annotations

from collections.abc import Mapping

from common.config import ExperimentConfig
from common.job import Job
from common.weights import Weights


def make_trainer(backend: str, config: ExperimentConfig, initial_weights: Mapping[int, Weights], devices: int = 1):
    """The registry's trainer of `backend` for these seeds on `devices` CPU devices (this process prepared already)."""
    from backends.registry import create_trainer

    return create_trainer(Job(backends=(backend,), config=config, seeds=tuple(initial_weights), devices=devices),
                          initial_weights)
