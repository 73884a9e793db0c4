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
def test_every_topic_and_service_is_documented() -> None:
    """Every row of the interface table (ros/interfaces.py) appears in the README."""
    from evse_can_ros.ros.interfaces import BRIDGE_SERVICES, TOPICS

    names = [t.name for t in TOPICS] + list(BRIDGE_SERVICES)
    assert len(names) > 20  # the table is really there
    missing = [n for n in names if f"`{n}`" not in README]
    assert not missing


@pytest.mark.ros
def test_parameter_reference_is_current() -> None:
    from evse_can_ros.ros.paramdoc import markdown

    path = Path(__file__).resolve().parents[1] / "docs" / "parameters.md"
    assert path.read_text() == markdown(), (
        "docs/parameters.md is stale: python -m evse_can_ros.ros.paramdoc > docs/parameters.md"
    )
