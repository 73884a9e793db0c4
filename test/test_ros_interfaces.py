"""The generated ROS interfaces agree with the protocol layer, and rclpy works on local DDS."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from evse_can_ros.protocol import (
    ChargeStatus,
    CommunicationProtocol,
    ControllerState,
    CpState,
    EmergencyStopOrigin,
    PlugAndPins,
    SessionEnd,
)

pytestmark = pytest.mark.ros


def constants(msg_type: type, prefix: str = "") -> dict[str, int]:
    return {
        k[len(prefix) :]: v
        for k, v in vars(msg_type).items()
        if k.isupper() and k.startswith(prefix) and isinstance(v, int) and not k.startswith("_")
    }


@pytest.mark.parametrize(
    ("msg_name", "prefix", "enum"),
    [
        ("ControllerState", "", ControllerState),
        ("NewChargeSession", "PROTOCOL_", CommunicationProtocol),
        ("NewChargeSession", "PLUG_", PlugAndPins),
        ("ChargeStatusChange", "", ChargeStatus),
        ("EmergencyStop", "ORIGIN_", EmergencyStopOrigin),
        ("ChargeSessionFinished", "", SessionEnd),
        ("CcsExtraInformation", "CP_", CpState),
    ],
)
def test_message_constants_match_protocol_enums(msg_name: str, prefix: str, enum: type) -> None:
    import evse_can_ros.msg as msgs

    assert constants(getattr(msgs, msg_name), prefix) == {m.name: int(m) for m in enum}  # type: ignore[attr-defined]


def test_can_frame_is_field_compatible_with_can_msgs_frame() -> None:
    from evse_can_ros.msg import CanFrame

    assert CanFrame.get_fields_and_field_types() == {
        "header": "std_msgs/Header",
        "id": "uint32",
        "is_rtr": "boolean",
        "is_extended": "boolean",
        "is_error": "boolean",
        "dlc": "uint8",
        "data": "uint8[8]",
    }


def test_services_are_generated() -> None:
    from evse_can_ros.srv import SetControllerOutputs, SetPowerLimits

    assert SetPowerLimits.Request().charge_parameters_done is False
    assert SetControllerOutputs.Request.BOARD_ADM_CS_SPCC == 1


def test_smoke_command_over_local_dds() -> None:
    exe = shutil.which("evse-can-ros")
    assert exe, "evse-can-ros is not on PATH (source .ros2/env.sh)"
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    result = subprocess.run(
        [exe, "smoke"], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "smoke OK" in result.stdout and "ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST" in result.stdout
    )


def test_generated_interfaces_import_from_the_repo_root() -> None:
    """`python -c` in a source checkout must not hide the generated msg/ (pitfall 5)."""
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    code = "from evse_can_ros.msg import CanFrame; from evse_can_ros.protocol import load_codec"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
