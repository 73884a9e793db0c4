"""Conversions between the protocol layer's typed messages and the ROS interfaces.

One rule for the controller-sent messages: a ROS field has the dataclass field's name; a label
set becomes ``uint8 <field>`` plus ``string <field>_name`` (the database label, or
``Unknown_<n>``). Units are those of the database except insulation resistance, which ROS carries
in Ohm (SI) and the protocol in kOhm.
"""

from __future__ import annotations

import math
import time
from dataclasses import fields
from typing import Any

from builtin_interfaces.msg import Time
from rclpy.clock import Clock, ClockType

from evse_can_ros import msg as ros
from evse_can_ros.protocol import (
    AdmCoCui1Inputs,
    AdmCsSeccInputs,
    AdmCsSpccInputs,
    CanFrame,
    CanMessage,
    Codec,
    DcPowerParameters,
    EvIdCcsPart2Din,
    LabelEnum,
    Permission,
    PowerModulesLimits,
    PowerModulesStatus,
    SequenceControl,
)
from evse_can_ros.ros.interfaces import TOPIC_OF_MESSAGE

GENERIC: dict[type[CanMessage], Any] = {
    cls: topic.ros_type
    for cls, topic in TOPIC_OF_MESSAGE.items()
    if cls not in (AdmCoCui1Inputs, AdmCsSeccInputs, AdmCsSpccInputs, EvIdCcsPart2Din)
}
"""Controller messages converted field by field."""

_INPUT_BOARDS: dict[type[CanMessage], str] = {
    AdmCoCui1Inputs: ros.ControllerInputs.BOARD_ADM_CO_CUI1,
    AdmCsSeccInputs: ros.ControllerInputs.BOARD_ADM_CS_SECC,
    AdmCsSpccInputs: ros.ControllerInputs.BOARD_ADM_CS_SPCC,
}

# Precomputed (field name, is label enum) per generic type: this runs for every received frame.
_FIELDS: dict[type[CanMessage], tuple[tuple[str, bool], ...]] = {}


def _field_plan(cls: type[CanMessage]) -> tuple[tuple[str, bool], ...]:
    plan = _FIELDS.get(cls)
    if plan is None:
        import typing

        hints = typing.get_type_hints(cls)
        plan = tuple(
            (f.name, isinstance(hints[f.name], type) and issubclass(hints[f.name], LabelEnum))
            for f in fields(cls)
        )
        _FIELDS[cls] = plan
    return plan


def stamp_from_seconds(seconds: float) -> Time:
    """builtin_interfaces/Time from float seconds (e.g. a CAN bus timestamp)."""
    sec = math.floor(seconds)
    return Time(sec=int(sec), nanosec=min(round((seconds - sec) * 1e9), 999_999_999))


def stamp_now(clock: Clock, into: Time | None = None) -> Time:
    """Return ``clock.now()`` as builtin_interfaces/Time (filled ``into`` if given), cheaply.

    A ROS clock without simulated time (or a system clock) is the system's real-time clock: it is
    read directly, a fraction of the cost of ``clock.now().to_msg()`` (on the receive path for
    every frame); filling an existing stamp also saves building one.
    """
    if clock.clock_type == ClockType.SYSTEM_TIME or (
        clock.clock_type == ClockType.ROS_TIME and not clock.ros_time_is_active
    ):
        sec, nanosec = divmod(time.time_ns(), 1_000_000_000)
    else:
        sec, nanosec = clock.now().seconds_nanoseconds()
    if into is None:
        return Time(sec=sec, nanosec=nanosec)
    into.sec, into.nanosec = sec, nanosec
    return into


def to_ros(
    message: CanMessage,
    stamp: Time | None,
    codec: Codec | None = None,
    reuse: dict[type, Any] | None = None,
) -> Any:
    """Return the ROS message for a controller-sent protocol message (interfaces.TOPICS).

    With ``reuse`` (one dict per publishing thread), the message object of a generic type is
    kept there and filled again on the next call: every field is set each time, and rclpy's
    ``publish`` has serialised the previous content before it returns. ``stamp`` None leaves
    the header's stamp to the caller (:func:`stamp_now` ``into`` it).
    """
    cls = type(message)
    ros_type = GENERIC.get(cls)
    if ros_type is not None:
        out = reuse.get(cls) if reuse is not None else None
        if out is None:
            out = ros_type()
            if reuse is not None:
                reuse[cls] = out
        for name, is_label in _field_plan(cls):
            value = getattr(message, name)
            if is_label:
                setattr(out, name, int(value))
                setattr(out, f"{name}_name", value.label)
            else:
                setattr(out, name, value)
    elif cls in _INPUT_BOARDS:
        out = ros.ControllerInputs(board=_INPUT_BOARDS[cls])
        signal_names = _signal_names(cls, codec)
        for name, _ in _field_plan(cls):
            value = getattr(message, name)
            if isinstance(value, bool):
                out.digital_inputs.append(value)
            else:
                out.temperature_names.append(signal_names.get(name, name))
                out.temperatures.append(float(value))
    elif isinstance(message, EvIdCcsPart2Din):
        ident = message.ev_id
        out = ros.EvId(ev_id=list(ident), ev_id_hex=ident.hex().upper())
    else:
        raise TypeError(f"{cls.__name__} has no ROS message")
    if stamp is not None:
        out.header.stamp = stamp
    return out


def from_ros(ros_message: Any, cls: type[CanMessage]) -> CanMessage:
    """Return the protocol message of a generic ROS message (inverse of :func:`to_ros`)."""
    import typing

    hints = typing.get_type_hints(cls)
    values = {}
    for name, is_label in _field_plan(cls):
        value = getattr(ros_message, name)
        values[name] = hints[name](int(value)) if is_label else value
    return cls(**values)


def _signal_names(cls: type[CanMessage], codec: Codec | None) -> dict[str, str]:
    if codec is None:
        return {}
    return {s.field: s.name for s in codec.spec(cls.NAME).signals if s.field}


# --- power side ----------------------------------------------------------------------------------


def power_status_from_ros(m: ros.PowerModulesStatus) -> PowerModulesStatus:
    """Protocol status from the converter driver's ROS status (insulation Ohm -> kOhm)."""
    return PowerModulesStatus(
        present_voltage=float(m.present_voltage),
        present_current=float(m.present_current),
        power_modules_temperature=float(m.power_modules_temperature),
        enclosure_temperature=float(m.enclosure_temperature),
        system_enable=Permission.ALLOWED if m.system_enable else Permission.NOT_ALLOWED,
        insulation_resistance=float(m.insulation_resistance) / 1000.0,
    )


def power_status_to_ros(status: PowerModulesStatus, stamp: Time) -> ros.PowerModulesStatus:
    """ROS status from a protocol status (insulation kOhm -> Ohm)."""
    out = ros.PowerModulesStatus(
        present_voltage=float(status.present_voltage),
        present_current=float(status.present_current),
        power_modules_temperature=float(status.power_modules_temperature),
        enclosure_temperature=float(status.enclosure_temperature),
        system_enable=status.system_enable == Permission.ALLOWED,
        insulation_resistance=float(status.insulation_resistance) * 1000.0,
    )
    out.header.stamp = stamp
    return out


def limits_to_ros(
    limits: PowerModulesLimits | DcPowerParameters, maximum_power: float, stamp: Time
) -> ros.PowerModulesLimits:
    """ROS message of the limits sent (and the local power limit, which has no CAN signal).

    v2 Power_Modules_Limits and v3 DC_Power_Parameters share one ROS message.
    """
    if isinstance(limits, DcPowerParameters):
        current, discharge = limits.maximum_charge_current, limits.maximum_discharge_current
    else:
        current, discharge = limits.maximum_current, 0.0
    out = ros.PowerModulesLimits(
        maximum_voltage=limits.maximum_voltage,
        maximum_current=current,
        maximum_power=float(maximum_power),
        maximum_discharge_current=discharge,
    )
    out.header.stamp = stamp
    return out


def flags_to_ros(flags: SequenceControl, stamp: Time) -> ros.SequenceControl:
    """ROS message of the Sequence_Control flags sent."""
    out = ros.SequenceControl(**{f.name: bool(getattr(flags, f.name)) for f in fields(flags)})
    out.header.stamp = stamp
    return out


def frame_to_ros(frame: CanFrame, frame_id: str, stamp: Time | None = None) -> ros.CanFrame:
    """can_msgs/Frame-compatible message of a frame (stamp: bus time unless given)."""
    data = bytes(frame.data[:8])
    out = ros.CanFrame(
        id=frame.arbitration_id,
        is_rtr=frame.is_remote_frame,
        is_extended=frame.is_extended_id,
        is_error=frame.is_error_frame,
        dlc=len(data),
        data=list(data.ljust(8, b"\0")),
    )
    out.header.stamp = stamp if stamp is not None else stamp_from_seconds(frame.timestamp)
    out.header.frame_id = frame_id
    return out
