"""Validating settings: the error a bad one raises (naming its field) and the checks every dataclass uses."""

from __future__ import annotations

import dataclasses
import math

from common.errors import MnistBenchError


class ConfigError(MnistBenchError, ValueError):
    """A setting is out of range; `field` names it, so the CLI can name the flag it came from."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def flag(name: str, help: str, **argparse_options) -> dict:
    """Field metadata that makes a setting a command-line flag: its name, help and argparse options.

    The CLI builds its flags from this metadata, so a new setting needs one edit: its field.
    """
    return {"flag": name, "help": help, **argparse_options}


def known_fields(cls, data: dict, what: str) -> dict:
    """`data` if every key is a field of dataclass `cls`, else a ConfigError listing the valid ones."""
    if not isinstance(data, dict):
        raise ConfigError(f"invalid {what}: expected an object, found {type(data).__name__}")
    known = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {what} field(s) {unknown}; valid fields: {sorted(known)}")
    return data


def is_finite_number(value) -> bool:
    """A real int or float (not a bool) that is not NaN or infinite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_positive_int(value) -> bool:
    """An int (not a bool) >= 1."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check(ok, field: str, value, expected: str) -> None:
    """Raise ConfigError for `field` unless `ok`."""
    if not ok:
        raise ConfigError(f"invalid config: {field}={value!r}; expected {expected}", field)
