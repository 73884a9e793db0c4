"""The interface v3 ROS messages agree with the v3 typed messages of the protocol layer.

They follow the bridge's generic conversion rule (evse_can_ros/ros/conversions.py): a ROS field
per dataclass field, with the same name; a label set is ``uint8 <field>`` plus
``string <field>_name``; plus a ``header``.
"""

from __future__ import annotations

import typing
from dataclasses import fields

import pytest

from evse_can_ros.protocol import (
    CanMessage,
    ContactorState,
    DcPowerControl,
    DcPowerParameters,
    EvInformationBattery,
    EvInformationChargeLimits,
    EvInformationDischargeLimits,
    EvInformationEnergy,
    EvInformationVoltages,
    LabelEnum,
    OcppControl,
    PowerFunction,
    SetpointsMode,
    VoltageLowering,
)

from .test_ros_interfaces import constants

pytestmark = pytest.mark.ros

ROS_TYPE = {float: "double", int: "uint8", bool: "boolean"}
V3_MESSAGES = [
    DcPowerControl,
    DcPowerParameters,
    EvInformationBattery,
    EvInformationVoltages,
    EvInformationChargeLimits,
    EvInformationDischargeLimits,
    EvInformationEnergy,
    OcppControl,
]


@pytest.mark.parametrize("cls", V3_MESSAGES, ids=lambda c: c.__name__)
def test_fields_follow_the_generic_conversion_rule(cls: type[CanMessage]) -> None:
    import evse_can_ros.msg as msgs

    expected = {"header": "std_msgs/Header"}
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        hint = hints[f.name]
        if isinstance(hint, type) and issubclass(hint, LabelEnum):
            expected[f.name] = "uint8"
            expected[f"{f.name}_name"] = "string"
        else:
            expected[f.name] = ROS_TYPE[hint]
    assert getattr(msgs, cls.__name__).get_fields_and_field_types() == expected


@pytest.mark.parametrize(
    ("prefix", "enum"),
    [
        ("POWER_FUNCTION_", PowerFunction),
        ("SETPOINTS_", SetpointsMode),
        ("CONTACTORS_", ContactorState),
        ("LOWER_OUTPUT_", VoltageLowering),
    ],
)
def test_dc_power_control_constants_match_protocol_enums(prefix: str, enum: type) -> None:
    from evse_can_ros.msg import DcPowerControl as RosDcPowerControl

    assert constants(RosDcPowerControl, prefix) == {m.name: int(m) for m in enum}  # type: ignore[attr-defined]
