"""The README documents every parameter, topic and service the nodes declare."""

from __future__ import annotations

from pathlib import Path

import pytest

from evse_can_ros.config import describe
from evse_can_ros.core.bridge import BridgeConfig
from evse_can_ros.transport import LinkConfig

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


@pytest.mark.parametrize(
    "name",
    [f"can_{e['name']}" for e in describe(LinkConfig)]
    + [e["name"] for e in describe(BridgeConfig)]
    + ["database_path", "publish_raw_frames"],
)
def test_bridge_parameters_are_documented(name: str) -> None:
    assert f"| `{name}` |" in README


@pytest.mark.ros
def test_bridge_topics_and_services_are_documented() -> None:
    from evse_can_ros.ros.can_bridge_node import ROS_TYPE_OF_TOPIC

    names = [
        *ROS_TYPE_OF_TOPIC,
        "controller_state",
        "battery_state",
        "power_modules_limits",
        "sequence_control",
        "can_rx",
        "can_tx",
        "power_modules_status",
        "set_start_authorisation",
        "set_ccs_authorisation",
        "set_power_limits",
        "press_user_stop",
        "press_chademo_start",
        "set_controller_outputs",
    ]
    missing = [n for n in names if f"`{n}`" not in README]
    assert not missing


@pytest.mark.ros
def test_parameter_reference_is_current() -> None:
    from evse_can_ros.ros.paramdoc import markdown

    path = Path(__file__).resolve().parents[1] / "docs" / "parameters.md"
    assert path.read_text() == markdown(), (
        "docs/parameters.md is stale: python -m evse_can_ros.ros.paramdoc > docs/parameters.md"
    )
