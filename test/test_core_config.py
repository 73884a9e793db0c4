"""Declarative configuration helpers."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from evse_can_ros.config import ConfigError, check, describe, from_mapping, param


@dataclass(frozen=True)
class Example:
    wake_time: float = param(1.0, "time to wake", unit="s", min=0, max=60)
    cells: int = param(96, "cells in series", min=1)
    mode: str = param("fast", "mode", choices=("fast", "slow"))
    enabled: bool = param(True, "switch")

    def __post_init__(self) -> None:
        check(self)


def test_defaults_are_valid() -> None:
    assert Example().wake_time == 1.0


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"wake_time": -1.0}, r"Example.wake_time = -1.0 s is below the minimum 0 s"),
        ({"wake_time": 61}, "above the maximum"),
        ({"wake_time": float("nan")}, "not a finite number"),
        ({"mode": "warp"}, "not one of"),
        ({"cells": 0}, "below the minimum"),
    ],
)
def test_out_of_range(values: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        from_mapping(Example, values)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"wake_tme": 1.0}, "unknown parameter"),
        ({"wake_time": "1"}, "must be a number"),
        ({"enabled": 1}, "true or false"),
        ({"mode": 3}, "must be a string"),
        ({"cells": True}, "must be a number"),
    ],
)
def test_wrong_names_and_types(values: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        from_mapping(Example, values)


def test_int_given_for_float_is_converted() -> None:
    assert from_mapping(Example, {"wake_time": 2}).wake_time == 2.0


def test_describe() -> None:
    d = {e["name"]: e for e in describe(Example)}
    assert d["wake_time"]["unit"] == "s" and d["wake_time"]["max"] == 60
    assert d["mode"]["choices"] == ("fast", "slow")
