"""The ``main`` of every node executable: init, spin until Ctrl-C / SIGTERM, clean exit.

A node that cannot start with its parameters raises ``NodeConfigError``: one line on stderr and
exit code 2, no traceback. Shutdown by a signal is a normal exit (code 0); destroying the node
turns its outputs off (the converter driver's power stage, the bridge's bus).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from evse_can_ros.ros.can_bridge_node import NodeConfigError
from evse_can_ros.ros.dds import apply_local_dds_defaults, dds_summary


def run_node(
    factory: Callable[..., Node],
    name: str,
    args: list[str] | None = None,
    *,
    duration: float | None = None,
    on_exit: Callable[[Any], None] | None = None,
    **kwargs: Any,
) -> int:
    """Create ``factory(**kwargs)`` and spin it (for ``duration`` seconds if given)."""
    apply_local_dds_defaults()
    rclpy.init(args=args)
    node = None
    try:
        node = factory(**kwargs)
        node.get_logger().info(dds_summary())
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        deadline = None if duration is None else time.monotonic() + duration
        while rclpy.ok() and (deadline is None or time.monotonic() < deadline):
            executor.spin_once(timeout_sec=0.1)
        if on_exit is not None:
            on_exit(node)
    except NodeConfigError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():  # a real failure, not the executor noticing a signal shutdown
            raise
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
