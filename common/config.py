"""The experiment, as one frozen dataclass; each model's defaults are its workload's (common/workloads/)."""

from __future__ import annotations

import dataclasses

from common.validation import check, flag, is_finite_number, is_positive_int, known_fields
from common.workloads import MODELS, WORKLOADS, get_workload


# The settings that each model sets: the fields below left at None, which take the model's workload's `defaults`.
MODEL_SETTINGS = ("hidden_units", "epochs", "batch_size", "validation_split", "dropout")


def check_workload_defaults() -> None:
    """Fail, naming the workload and the setting, where a workload's `defaults` misses one of MODEL_SETTINGS."""
    for name, workload in WORKLOADS.items():
        missing = [setting for setting in MODEL_SETTINGS if setting not in workload.defaults]
        if missing:
            raise TypeError(f"workload {name!r} has no default for {', '.join(missing)}; a workload's `defaults` sets "
                            f"every one of {', '.join(MODEL_SETTINGS)} (docs/contributing.md)")


# Before the config's --help texts below read every workload's defaults.
check_workload_defaults()


def per_model_default(setting: str) -> str:
    """'(default: mlp 10, cnn 15)': a setting's default under each model, for --help."""
    shown = {name: workload.defaults[setting] for name, workload in WORKLOADS.items()}
    values = ", ".join(f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}"
                       for name, value in shown.items())
    return f"(default: {values})"


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """One training experiment: model, optimizer, schedule and data split.

    Settings left at None take the model's defaults (its workload's `defaults`) when the config is built, so
    a stored config always holds the values it trained with.
    """

    model: str = dataclasses.field(default="mlp", metadata=flag(
        "--model", "workload: " + ", ".join(f"{name} ({workload.summary})" for name, workload in WORKLOADS.items())
        + "; sets the defaults of --epochs, --batch-size and --dropout", choices=MODELS))
    hidden_units: tuple[int, ...] | None = None
    activation: str = "relu"
    learning_rate: float = dataclasses.field(default=1e-3, metadata=flag("--lr", "Adam learning rate"))
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7
    epochs: int | None = dataclasses.field(default=None, metadata=flag(
        "--epochs", f"training epochs {per_model_default('epochs')}", type=int))
    batch_size: int | None = dataclasses.field(default=None, metadata=flag(
        "--batch-size", f"samples per step {per_model_default('batch_size')}", type=int))
    validation_split: float | None = None
    # Dropout draws different masks in every framework: only rate-0 runs can agree step for step.
    dropout: float | None = dataclasses.field(default=None, metadata=flag(
        "--dropout", f"dropout rate before the classifier {per_model_default('dropout')}; 0 makes backends "
        "comparable step for step", type=float))
    # Quick runs and tests: use only the first N training / test images (None = all).
    train_limit: int | None = dataclasses.field(default=None, metadata=flag(
        "--train-limit", "quick runs: use only the first N training images (split 80/20 as usual)", type=int))
    test_limit: int | None = dataclasses.field(default=None, metadata=flag(
        "--test-limit", "quick runs: use only the first N test images", type=int))

    def __post_init__(self):
        check(self.model in WORKLOADS, "model", self.model, f"one of {', '.join(MODELS)}")
        model = get_workload(self.model)
        for name, default in model.defaults.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)
        # Accept lists (from JSON or argparse) but store a hashable tuple.
        object.__setattr__(self, "hidden_units", tuple(self.hidden_units))
        model.validate(self)
        check(is_finite_number(self.dropout) and 0 <= self.dropout < 1, "dropout", self.dropout, "a number in [0, 1)")
        check(self.activation == "relu", "activation", self.activation, "'relu' (the only one implemented)")
        check(is_finite_number(self.learning_rate) and self.learning_rate > 0,
              "learning_rate", self.learning_rate, "a finite number > 0")
        for name in ("beta_1", "beta_2"):
            value = getattr(self, name)
            check(is_finite_number(value) and 0 <= value < 1, name, value, "a number in [0, 1)")
        check(is_finite_number(self.epsilon) and self.epsilon > 0, "epsilon", self.epsilon, "a finite number > 0")
        check(is_positive_int(self.epochs), "epochs", self.epochs, "an integer >= 1")
        check(is_positive_int(self.batch_size), "batch_size", self.batch_size, "an integer >= 1")
        check(is_finite_number(self.validation_split) and 0 <= self.validation_split < 1,
              "validation_split", self.validation_split, "a number in [0, 1)")
        for name in ("train_limit", "test_limit"):
            value = getattr(self, name)
            check(value is None or is_positive_int(value), name, value, "None or an integer >= 1")

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
        """Inverse of `to_dict`; unknown keys are an error rather than silently dropped (files from before
        models existed hold an MLP)."""
        return cls(**known_fields(cls, data, "config"))
