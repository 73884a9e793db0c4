"""DDS environment defaults applied before rclpy initialises."""

from __future__ import annotations

import os

import rclpy
from rclpy.context import Context

LOCAL_DISCOVERY = "LOCALHOST"


def apply_local_dds_defaults() -> None:
    """Keep DDS discovery on this machine unless the user chose otherwise.

    Sets ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and ``ROS_DOMAIN_ID=0`` only when they are
    unset: a depot that spans several machines sets them explicitly (README, "Depot network").
    Must run before ``rclpy.init()`` (the middleware reads them there).
    """
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", LOCAL_DISCOVERY)
    os.environ.setdefault("ROS_DOMAIN_ID", "0")


def new_context(args: list[str] | None = None) -> Context:
    """Return a new, initialised rclpy context (local DDS defaults applied first)."""
    apply_local_dds_defaults()
    context = Context()
    rclpy.init(args=args, context=context)
    return context


def describe_dds() -> str:
    """One line: the DDS domain and discovery range this process uses (said at start-up)."""
    rng = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "(unset: SUBNET)")
    peers = os.environ.get("ROS_STATIC_PEERS", "")
    localhost_only = os.environ.get("ROS_LOCALHOST_ONLY", "")
    text = f"DDS: ROS_DOMAIN_ID={os.environ.get('ROS_DOMAIN_ID', '0')}, discovery range {rng}"
    if peers:
        text += f", static peers {peers}"
    if localhost_only:
        text += f", ROS_LOCALHOST_ONLY={localhost_only}"
    return text
