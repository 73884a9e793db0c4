"""DDS environment defaults applied before rclpy initialises, and the start-up line about them."""

from __future__ import annotations

import os

import rclpy
from rclpy.context import Context

LOCAL_DISCOVERY = "LOCALHOST"

_SCOPES = {
    "LOCALHOST": "this machine only",
    "SUBNET": "this machine and its subnet (multicast)",
    "SYSTEM_DEFAULT": "the middleware's own setting",
    "OFF": "no automatic discovery",
}
_defaulted: list[str] = []  # variables that apply_local_dds_defaults() set in this process


def apply_local_dds_defaults() -> None:
    """Keep DDS discovery on this machine unless the user chose otherwise.

    Sets ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and ``ROS_DOMAIN_ID=0`` only when they are
    unset or empty (an empty range would mean SUBNET to the middleware); on Humble, which has no
    discovery range, also ``ROS_LOCALHOST_ONLY=1``. A depot that spans several machines sets them
    explicitly (README, "Depot network"). Must run before ``rclpy.init()`` (the middleware reads
    them there).
    """
    for name, value in (
        ("ROS_AUTOMATIC_DISCOVERY_RANGE", LOCAL_DISCOVERY),
        ("ROS_DOMAIN_ID", "0"),
    ):
        if not os.environ.get(name):
            os.environ[name] = value
            _defaulted.append(name)
    if (
        os.environ.get("ROS_DISTRO") == "humble"
        and os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == LOCAL_DISCOVERY
        and not os.environ.get("ROS_LOCALHOST_ONLY")
    ):
        os.environ["ROS_LOCALHOST_ONLY"] = "1"
        _defaulted.append("ROS_LOCALHOST_ONLY")


def dds_summary() -> str:
    """One line for a node's start-up log: the DDS domain and discovery it uses, and why."""
    env = os.environ
    discovery = (env.get("ROS_AUTOMATIC_DISCOVERY_RANGE") or "SUBNET").upper()
    parts = [
        f"DDS domain {env.get('ROS_DOMAIN_ID') or '0'}",
        f"discovery range {discovery} ({_SCOPES.get(discovery, 'not a known range')})",
    ]
    if env.get("ROS_STATIC_PEERS"):
        parts.append(f"static peers {env['ROS_STATIC_PEERS']}")
    if env.get("ROS_DISTRO") == "humble":
        parts.append(f"ROS_LOCALHOST_ONLY={env.get('ROS_LOCALHOST_ONLY') or '0'} (Humble)")
    if _defaulted:
        parts.append(
            f"package default for {', '.join(_defaulted)}; a depot across machines sets them "
            "(README: Depot network)"
        )
    return "; ".join(parts)


def new_context(args: list[str] | None = None) -> Context:
    """Return a new, initialised rclpy context (local DDS defaults applied first)."""
    apply_local_dds_defaults()
    context = Context()
    rclpy.init(args=args, context=context)
    return context
