"""The shipped parameter files hold only parameters the nodes declare, with valid values.

A parameter file entry that no node declares is silently ignored by rclpy, and an out-of-range
one stops the node at start-up: both must be caught here, not on a charger.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from evse_can_ros.config import ConfigError, from_mapping
from evse_can_ros.converter.infypower.emulator import EmulatorParams
from evse_can_ros.converter.infypower.sim import EMULATOR_SECTION
from evse_can_ros.ros.paramdoc import NODES

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "config").glob("*.yaml"))
ROS_STANDARD = {"use_sim_time"}


def check_section(executable: str, values: dict[str, Any]) -> list[str]:
    """Return the problems of one node's ``ros__parameters`` (empty = fine)."""
    (_, _, classes, extras) = next(n for n in NODES if n[0] == executable)
    groups: dict[type, dict[str, Any]] = {}
    problems = []
    for key, value in values.items():
        owner = next(
            (
                (cls, key[len(prefix) :])
                for prefix, cls in classes
                if key.startswith(prefix)
                and key[len(prefix) :] in {f.name for f in dataclasses.fields(cls)}
            ),
            None,
        )
        if owner is not None:
            groups.setdefault(owner[0], {})[owner[1]] = value
        elif key not in extras and key not in ROS_STANDARD:
            problems.append(f"{executable}: {key} is not a parameter of this node")
    for cls, group in groups.items():
        try:
            from_mapping(cls, group)
        except ConfigError as exc:
            problems.append(f"{executable}: {exc}")
    return problems


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_parameter_exists_and_is_valid(path: Path) -> None:
    data = yaml.safe_load(path.read_text())
    problems = []
    for section, body in data.items():
        executable = section.rsplit("/", 1)[-1]
        if executable == "**":  # every node: only what every node declares
            for name in NODES:
                problems += check_section(name[0], body["ros__parameters"])
            continue
        if executable == EMULATOR_SECTION:  # not a node: the InfyPower module emulator (sim)
            try:
                from_mapping(EmulatorParams, body["ros__parameters"])
            except ConfigError as exc:
                problems.append(f"{section}: {exc}")
            continue
        assert executable in {n[0] for n in NODES}, f"{path.name}: unknown node {section}"
        problems += check_section(executable, body["ros__parameters"])
    assert not problems, "\n".join(problems)


def test_the_check_finds_an_unknown_and_an_invalid_parameter() -> None:
    problems = check_section(
        "can_bridge", {"start_charge_authorised": True, "heartbeat_timeout": 0.35}
    )
    assert len(problems) == 2, problems
