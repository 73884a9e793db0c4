"""Shared fixtures.

ROS rules for every test process: DDS stays on this machine (ROS_AUTOMATIC_DISCOVERY_RANGE) and
the domain is explicit; both are set here, before any test can initialise rclpy.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import pytest

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", "42")

REPO = Path(__file__).resolve().parents[1]
# Test the source tree (new files need no rebuild); evse_can_ros/__init__.py extends the package
# path to the colcon install, where the generated msg/srv/action modules live.
sys.path.insert(0, str(REPO))


def vendor_dir() -> Path:
    """Folder with the vendor's reference databases (never copied into the project).

    Looked up in $EVSE_CAN_ROS_VENDOR_DIR, then ../shared/spec/vendor beside the checkout. Where
    they are absent (a ROS 2 workspace, a user's machine) the conformance tests skip with a
    reason; with EVSE_CAN_ROS_REQUIRE_VENDOR set (.ci/run) their absence is an error.
    """
    candidates = [
        os.environ.get("EVSE_CAN_ROS_VENDOR_DIR", ""),
        str(REPO.parent / "shared" / "spec" / "vendor"),
    ]
    for c in candidates:
        if c and (Path(c) / "Advantics_Generic_EVSE_protocol_v2.7.kcd").is_file():
            return Path(c)
    message = (
        "vendor databases not found: set EVSE_CAN_ROS_VENDOR_DIR to the folder with "
        "Advantics_Generic_EVSE_protocol_v2.7.kcd/.dbc"
    )
    if os.environ.get("EVSE_CAN_ROS_REQUIRE_VENDOR"):
        raise RuntimeError(message)
    pytest.skip(message)


VENDOR_REVISION = {2: "2.7", 3: "3.6"}
"""Vendor database revision per interface version (protocol_version)."""


@functools.cache
def vendor_database(protocol_version: int, fmt: str):  # type: ignore[no-untyped-def]
    """The vendor's KCD or DBC (``fmt`` "kcd" or "dbc") of an interface version, loaded once.

    The vendor DBCs are UTF-8 (spec D15).
    """
    import cantools

    path = (
        vendor_dir()
        / f"Advantics_Generic_EVSE_protocol_v{VENDOR_REVISION[protocol_version]}.{fmt}"
    )
    return cantools.database.load_file(str(path), encoding="utf-8" if fmt == "dbc" else None)


@pytest.fixture(scope="session")
def vendor_kcd():  # type: ignore[no-untyped-def]
    """The vendor's v2.7 KCD, loaded with cantools (reference data)."""
    return vendor_database(2, "kcd")


@pytest.fixture(scope="session")
def vendor_dbc():  # type: ignore[no-untyped-def]
    """The vendor's v2.7 DBC (UTF-8, spec D15)."""
    return vendor_database(2, "dbc")


@pytest.fixture(scope="session")
def codec():  # type: ignore[no-untyped-def]
    """The project's codec on its packaged database."""
    from evse_can_ros.protocol import load_codec

    return load_codec()


@pytest.fixture(scope="module")
def harness():  # type: ignore[no-untyped-def]
    """Nodes in one process (own rclpy context, executor thread), one per test module."""
    from evse_can_ros.ros.testing import RosHarness

    h = RosHarness()
    yield h
    h.close()


REAL_TIME = {
    "test_depot_network.py",
    "test_infypower_cli.py",
    "test_ros2_launch.py",
    "test_tools_session.py",
    "test_transport.py",
    "test_transport_loopback.py",
}
"""Files without the ``ros`` marker whose tests also run in real time (threads, processes)."""


IN_PROCESS = {
    "test_e2e_infypower.py",
    "test_e2e_sim.py",
    "test_e2e_v3.py",
    "test_ros_can_bridge.py",
    "test_ros_charge_server.py",
    "test_ros_controller_sim.py",
    "test_ros_converter_driver.py",
    "test_ros_infypower.py",
    "test_ros_interfaces.py",
    "test_ros_runtime.py",
}
"""Real-time files whose nodes run in the test's own process (marker ``in_process``)."""


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the real-time tests ``real_time`` (the ``ros`` ones and those of REAL_TIME), and
    those of them in IN_PROCESS also ``in_process``.

    scripts/test.sh runs three pytest processes at once, each test after the other in its own:
    the real-time tests that start node processes, ``ros2`` tools and ``ros2 launch``
    (``-m "real_time and not in_process"``), the in-process ones (``real_time and in_process``,
    another DDS domain), and the simulated-clock tests (``not real_time``) at a lower priority.
    Most of a real-time test is waiting (for discovery, a process, a charge): side by side they
    take the time of the longer one.
    """
    for item in items:
        if item.get_closest_marker("ros") or item.path.name in REAL_TIME:
            item.add_marker(pytest.mark.real_time)
            if item.path.name in IN_PROCESS:
                item.add_marker(pytest.mark.in_process)
    # The tests that first check that no other node is in their DDS domain run before the
    # in-process chargers: a charger's DDS participant outlives its rclpy context for a while.
    # The real ``ros2 launch`` tests (in a domain of their own) run last: by then the
    # simulated-clock tests of scripts/test.sh are over, and their charger has more of the CPU.
    items.sort(
        key=lambda item: (item.path.name not in DOMAIN_CHECKED_FIRST) + (item.path.name in LAST)
    )


DOMAIN_CHECKED_FIRST = {"test_depot_network.py"}
"""Files whose fixtures require an empty DDS domain (ros2_tools.assert_domain_free)."""
LAST = {"test_ros2_launch.py"}
"""Files that run at the end (see pytest_collection_modifyitems)."""
