"""The ``main`` of every node executable: init, spin until Ctrl-C / SIGTERM, clean exit.

A node that cannot start with its parameters raises ``NodeConfigError``: one line on stderr and
exit code 2, no traceback. Shutdown by a signal (SIGINT or SIGTERM: rclpy shuts the context down
and a flag ends the spin loop, see ``_flag_signals``) is a normal exit (code 0); destroying the
node turns its outputs off (the converter driver's power stage, the
bridge's bus), also when something else fails on the way out. The node says at start-up which
DDS domain and discovery range it uses; the pure cores' logging goes to the node's logger
(console, ``~/.ros/log``, ``/rosout``). Further Ctrl-Cs during
that clean-up are ignored: a terminal's Ctrl-C reaches ``ros2 launch`` and every node, and launch
then forwards another SIGINT to each node.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from evse_can_ros.ros.common import NodeConfigError, forward_core_logs, stop_core_log_forwarding
from evse_can_ros.ros.dds import apply_local_dds_defaults, dds_summary
from evse_can_ros.ros.runtime import create_executor, executor_kind, settle_gc, spin_slice


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
    signalled = _flag_signals()
    rclpy.init(args=args)  # rclpy's handlers shut the context down, then call ours
    node = None
    executor = None
    try:
        node = factory(**kwargs)
        forward_core_logs(node.get_logger(), _python_level())
        node.get_logger().info(dds_summary())
        executor = create_executor(kind=_executor_kind())
        executor.add_node(node)
        settle_gc()  # start-up objects never scanned again: short collections under load
        deadline = None if duration is None else time.monotonic() + duration
        while rclpy.ok() and not signalled.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            spin_slice(executor, 0.1)
        if on_exit is not None:
            on_exit(node)
    except NodeConfigError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok() and not signalled.is_set():  # a real failure, not a signal's shutdown
            raise
    finally:
        _ignore_sigint()
        if executor is not None:
            # releases the entities of an interrupted wait: destroying a client or timer that
            # the executor still holds blocks forever (seen after Ctrl-C)
            executor.shutdown(timeout_sec=0)
        if node is not None:
            try:
                node.destroy_node()
            except Exception as exc:  # the driver has switched its output off before this
                print(f"{name}: error while shutting down: {exc}", file=sys.stderr)
        stop_core_log_forwarding()
        rclpy.try_shutdown()
        _ignore_sigint()  # try_shutdown() reinstates the interpreter's handler
    return 0


def _executor_kind() -> str:
    """Return the executor kind for a spin in this thread (events: main thread only)."""
    main = threading.current_thread() is threading.main_thread()
    return executor_kind() if main else "single"


def _python_level() -> int:
    return logging.DEBUG if os.environ.get("EVSE_CAN_ROS_DEBUG") else logging.INFO


def _flag_signals() -> threading.Event:
    """SIGINT and SIGTERM set the returned flag instead of raising ``KeyboardInterrupt``.

    Python's own SIGINT handler raises ``KeyboardInterrupt`` at whatever bytecode the main thread
    is on, often inside the executor's C++ code: the EventsExecutor then failed with "RuntimeError:
    Unable to convert call argument '0' to Python object" while rclpy, on its own thread, had not
    yet shut the context down (seen once on Ctrl-C to ``ros2 launch``: a traceback, exit code 1).
    With this handler a signal only sets the flag; rclpy's handlers, installed by ``rclpy.init``
    on top of it, shut the context down and then call it, and the spin loop stops within a slice.
    Installed before ``rclpy.init`` on purpose: the context's shutdown is what wakes an executor
    that never idles (``spin_until_future_complete`` checks its timeout only between callbacks),
    so a flag alone would not stop a busy node (test_shutdown.py's busy node then hangs).
    """
    signalled = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: signalled.set())
    return signalled


def _ignore_sigint() -> None:
    """Let a second Ctrl-C not interrupt the clean-up that turns the outputs off."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
