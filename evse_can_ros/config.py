"""Declarative configuration: dataclasses whose fields carry description, unit and range.

The same metadata validates the configuration in pure Python and becomes the ROS parameter
descriptors in the node adapters, so a range is written once::

    @dataclass(frozen=True)
    class SimParams:
        wake_time: float = param(1.0, "time from wake request to ready", unit="s", min=0, max=60)

        def __post_init__(self) -> None:
            check(self)

``check`` raises :class:`ConfigError` with one line naming the field, the value and the range.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type, or out of range."""


def param(
    default: Any,
    description: str,
    *,
    unit: str = "",
    min: float | None = None,
    max: float | None = None,
    choices: Sequence[str] | None = None,
) -> Any:
    """Declare a configuration field with its documentation and allowed range."""
    meta = {"description": description, "unit": unit, "min": min, "max": max, "choices": choices}
    return dataclasses.field(default=default, metadata=meta)


def check(obj: Any) -> None:
    """Validate every declared field of dataclass instance ``obj`` (see module docstring)."""
    for f in dataclasses.fields(obj):
        meta = f.metadata
        if "description" not in meta:
            continue
        value = getattr(obj, f.name)
        where = f"{type(obj).__name__}.{f.name}"
        unit = f" {meta['unit']}" if meta.get("unit") else ""
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where} = {value} is not a finite number")
        lo, hi = meta.get("min"), meta.get("max")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if lo is not None and value < lo:
                raise ConfigError(f"{where} = {value}{unit} is below the minimum {lo}{unit}")
            if hi is not None and value > hi:
                raise ConfigError(f"{where} = {value}{unit} is above the maximum {hi}{unit}")
        choices = meta.get("choices")
        if choices is not None and value not in choices:
            raise ConfigError(f"{where} = {value!r} is not one of {list(choices)}")


T = TypeVar("T")


def from_mapping(cls: type[T], values: Mapping[str, Any]) -> T:
    """Build config ``cls`` from a mapping; unknown keys and wrong types raise ConfigError."""
    names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(
            f"{cls.__name__}: unknown parameter(s) {unknown}; known: {sorted(names)}"
        )
    converted: dict[str, Any] = {}
    for key, value in values.items():
        default = names[key].default
        converted[key] = _coerce(f"{cls.__name__}.{key}", default, value)
    try:
        return cls(**converted)
    except TypeError as exc:
        raise ConfigError(f"{cls.__name__}: {exc}") from None


def _coerce(where: str, default: Any, value: Any) -> Any:
    if default is dataclasses.MISSING or default is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value) if isinstance(default, float) else value
    if isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, got {value!r}")
    return value


def describe(cls: type) -> list[dict[str, Any]]:
    """Return ``[{name, default, description, unit, min, max, choices}]`` for docs and ROS."""
    out = []
    for f in dataclasses.fields(cls):
        if "description" in f.metadata:
            out.append({"name": f.name, "default": f.default, **f.metadata})
    return out
