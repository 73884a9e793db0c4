"""ROS parameters declared from the declarative configs (evse_can_ros/config.py)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, TypeVar

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import (
    InvalidParameterTypeException,
    InvalidParameterValueException,
    ParameterException,
)
from rclpy.node import Node

from evse_can_ros.config import ConfigError, check, describe, from_mapping, param
from evse_can_ros.protocol import Codec, ProtocolVersion, load_codec
from evse_can_ros.text import one_line

T = TypeVar("T")


@dataclass(frozen=True)
class InterfaceConfig:
    """The interface version every node of a pistol speaks (all nodes must agree)."""

    protocol_version: int = param(
        2,
        "Generic EVSE CAN interface version: 2, or 3 (DC_Power_Control, EV_Information_*, "
        "bidirectional power transfer)",
        min=2,
        max=3,
    )

    def __post_init__(self) -> None:
        check(self)


_BIG_FLOAT = sys.float_info.max
_BIG_INT = 2**62


def descriptor_for(entry: dict[str, Any], read_only: bool) -> ParameterDescriptor:
    """ParameterDescriptor with description, unit and range of a config field."""
    unit = f" [{entry['unit']}]" if entry.get("unit") else ""
    d = ParameterDescriptor(description=f"{entry['description']}{unit}", read_only=read_only)
    lo, hi, default = entry.get("min"), entry.get("max"), entry["default"]
    if isinstance(default, bool):
        pass
    elif isinstance(default, float) and (lo is not None or hi is not None):
        d.floating_point_range = [
            FloatingPointRange(
                from_value=float(lo) if lo is not None else -_BIG_FLOAT,
                to_value=float(hi) if hi is not None else _BIG_FLOAT,
                step=0.0,
            )
        ]
    elif isinstance(default, int) and (lo is not None or hi is not None):
        d.integer_range = [
            IntegerRange(
                from_value=int(lo) if lo is not None else -_BIG_INT,
                to_value=int(hi) if hi is not None else _BIG_INT,
                step=1,
            )
        ]
    if entry.get("choices"):
        d.additional_constraints = "one of: " + ", ".join(entry["choices"])
    return d


def declare_config(
    node: Node, cls: type[T], prefix: str = "", read_only: bool = True, skip: tuple[str, ...] = ()
) -> T:
    """Declare every field of config ``cls`` as ``<prefix><field>`` and return the config.

    Raises ConfigError (one line) for a value of the wrong type or out of range, whether rclpy
    or the config's own check finds it.
    """
    values: dict[str, Any] = {}
    for entry in describe(cls):
        if entry["name"] in skip:
            continue
        name = prefix + entry["name"]
        try:
            node.declare_parameter(name, entry["default"], descriptor_for(entry, read_only))
        except InvalidParameterTypeException as exc:
            raise ConfigError(
                f"parameter {name}: {_type_hint(entry['default'])} ({exc})"
            ) from None
        except (InvalidParameterValueException, ParameterException) as exc:
            raise ConfigError(f"parameter {name}: {one_line(exc)}") from None
        values[entry["name"]] = node.get_parameter(name).value
    try:
        return from_mapping(cls, values)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (parameter prefix '{prefix}')" if prefix else str(exc)) from None


def _type_hint(default: Any) -> str:
    if isinstance(default, bool):
        return "must be true or false"
    if isinstance(default, float):
        return "must be a floating-point number (write 1.0, not 1)"
    if isinstance(default, int):
        return "must be an integer"
    return "must be a string"


def declare_interface(node: Node) -> ProtocolVersion:
    """Declare ``protocol_version`` (read-only); return it. Raises ConfigError."""
    return ProtocolVersion(declare_config(node, InterfaceConfig).protocol_version)


def declare_codec(node: Node) -> Codec:
    """Declare ``protocol_version`` and ``database_path``; return the codec they select.

    Raises ConfigError or ProtocolError (e.g. a database of the other version).
    """
    version = declare_interface(node)
    path = node.declare_parameter(
        "database_path",
        "",
        ParameterDescriptor(
            description="CAN database (.dbc/.kcd); empty = the packaged database of "
            "protocol_version",
            read_only=True,
        ),
    ).value
    return load_codec(path or None, version)
