"""The DDS defaults the node executables apply, and the start-up line that reports them."""

from __future__ import annotations

import pytest

dds = pytest.importorskip("evse_can_ros.ros.dds", reason="needs rclpy (ROS 2 wheels or a distro)")

VARIABLES = (
    "ROS_AUTOMATIC_DISCOVERY_RANGE",
    "ROS_DOMAIN_ID",
    "ROS_STATIC_PEERS",
    "ROS_LOCALHOST_ONLY",
    "ROS_DISTRO",
)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A process environment without DDS variables and a fresh record of defaults.

    Each variable is set first, so that monkeypatch restores (or removes) it at the end even
    when apply_local_dds_defaults() writes it directly.
    """
    for name in VARIABLES:
        monkeypatch.setenv(name, "unset")
        monkeypatch.delenv(name)
    monkeypatch.setattr(dds, "_defaulted", [])
    return monkeypatch


def test_unset_or_empty_means_this_machine_only(env: pytest.MonkeyPatch) -> None:
    env.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "")  # the middleware would read SUBNET
    dds.apply_local_dds_defaults()
    assert dds.os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert dds.os.environ["ROS_DOMAIN_ID"] == "0"
    line = dds.dds_summary()
    assert line.startswith("DDS domain 0; discovery range LOCALHOST (this machine only)")
    assert "package default for ROS_AUTOMATIC_DISCOVERY_RANGE, ROS_DOMAIN_ID" in line


def test_explicit_settings_are_kept_and_reported(env: pytest.MonkeyPatch) -> None:
    env.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "SUBNET")
    env.setenv("ROS_DOMAIN_ID", "17")
    env.setenv("ROS_STATIC_PEERS", "192.0.2.2")
    dds.apply_local_dds_defaults()
    assert dds.dds_summary() == (
        "DDS domain 17; discovery range SUBNET (this machine and its subnet (multicast)); "
        "static peers 192.0.2.2"
    )


def test_humble_gets_its_localhost_switch(env: pytest.MonkeyPatch) -> None:
    env.setenv("ROS_DISTRO", "humble")
    env.setenv("ROS_DOMAIN_ID", "5")
    dds.apply_local_dds_defaults()
    assert dds.os.environ["ROS_LOCALHOST_ONLY"] == "1"
    assert "ROS_LOCALHOST_ONLY=1 (Humble)" in dds.dds_summary()
    env.setattr(dds, "_defaulted", [])
    env.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "SUBNET")  # across machines: left alone
    env.delenv("ROS_LOCALHOST_ONLY")
    dds.apply_local_dds_defaults()
    assert "ROS_LOCALHOST_ONLY" not in dds.os.environ
