"""DDS environment defaults applied before rclpy initialises."""

from __future__ import annotations

import os

import rclpy
from rclpy.context import Context

LOCAL_DISCOVERY = "LOCALHOST"


def apply_local_dds_defaults() -> None:
    """Keep DDS discovery on this machine unless the user chose otherwise.

    Sets ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and ``ROS_DOMAIN_ID=0`` only when they are
    unset: a depot that spans several machines sets them explicitly (README, "DDS").
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
