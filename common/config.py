"""The experiment, as one frozen dataclass with the reference notebook's defaults."""

from __future__ import annotations

import dataclasses
import math

INPUT_DIM = 784
NUM_CLASSES = 10


class ConfigError(ValueError):
    """An experiment setting is out of range; the message names the field."""


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """One training experiment: model shape, optimizer, schedule and data split."""

    hidden_units: tuple[int, ...] = (256, 128)
    activation: str = "relu"
    learning_rate: float = 1e-3
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7
    epochs: int = 10
    batch_size: int = 32
    validation_split: float = 0.2
    seed: int = 0
    # Quick runs and tests: use only the first N training / test images (None = all).
    train_limit: int | None = None
    test_limit: int | None = None

    def __post_init__(self):
        # Accept lists (from JSON or argparse) but store a hashable tuple.
        object.__setattr__(self, "hidden_units", tuple(self.hidden_units))
        _check(self.hidden_units and all(isinstance(u, int) and u >= 1 for u in self.hidden_units),
               "hidden_units", self.hidden_units, "a non-empty tuple of positive integers")
        _check(self.activation == "relu", "activation", self.activation, "'relu' (the only one implemented)")
        _check(_finite(self.learning_rate) and self.learning_rate > 0,
               "learning_rate", self.learning_rate, "a finite number > 0")
        for name in ("beta_1", "beta_2"):
            value = getattr(self, name)
            _check(_finite(value) and 0 <= value < 1, name, value, "a number in [0, 1)")
        _check(_finite(self.epsilon) and self.epsilon > 0, "epsilon", self.epsilon, "a finite number > 0")
        _check(_positive_int(self.epochs), "epochs", self.epochs, "an integer >= 1")
        _check(_positive_int(self.batch_size), "batch_size", self.batch_size, "an integer >= 1")
        _check(_finite(self.validation_split) and 0 <= self.validation_split < 1,
               "validation_split", self.validation_split, "a number in [0, 1)")
        _check(isinstance(self.seed, int) and self.seed >= 0, "seed", self.seed, "an integer >= 0")
        for name in ("train_limit", "test_limit"):
            value = getattr(self, name)
            _check(value is None or _positive_int(value), name, value, "None or an integer >= 1")

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """Widths of every layer, input to output: (784, 256, 128, 10) by default."""
        return (INPUT_DIM, *self.hidden_units, NUM_CLASSES)

    def replace(self, **changes) -> ExperimentConfig:
        """A copy with some fields changed (validated like a new config)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain-JSON form, for results files."""
        data = dataclasses.asdict(self)
        data["hidden_units"] = list(self.hidden_units)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ExperimentConfig:
        """Inverse of `to_dict`; unknown keys are an error rather than silently dropped."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; valid fields: {sorted(known)}")
        return cls(**data)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check(ok, field: str, value, expected: str) -> None:
    if not ok:
        raise ConfigError(f"invalid config: {field}={value!r}; expected {expected}")
