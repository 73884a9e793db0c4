"""Test and benchmark harness: nodes in one process, one rclpy context, an executor thread.

Used by the integration tests and benchmarks; also handy for integrators' own tests::

    with RosHarness() as h:
        bridge = h.add(CanBridgeNode, parameter_overrides=[...])
        h.wait_for(lambda: ..., timeout=5)
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from evse_can_ros.ros.dds import apply_local_dds_defaults, new_context

N = TypeVar("N", bound=Node)


class RosHarness:
    """Own rclpy context + SingleThreadedExecutor spinning in a background thread."""

    def __init__(self) -> None:
        apply_local_dds_defaults()
        assert (
            os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
            or os.environ.get("EVSE_CAN_ROS_ALLOW_REMOTE_DDS") == "1"
        ), "DDS must stay on this machine"
        self.context = new_context()
        self.executor = SingleThreadedExecutor(context=self.context)
        self.nodes: list[Node] = []
        self._spinning = threading.Lock()
        self.node = self.add(Node, "test_harness")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name="harness-spin", daemon=True)
        self._thread.start()

    def add(self, node_type: Callable[..., N], *args: Any, **kwargs: Any) -> N:
        """Create a node in the harness context and add it to the executor."""
        node = node_type(*args, context=self.context, **kwargs)
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Hold the executor between two spins, e.g. to create an ``ActionClient`` on a node.

        rclpy adds an ActionClient to its node before it is fully built, and a spin at that
        moment fails in the executor's thread (``'ActionClient' object has no attribute
        '_lock'``).
        """
        with self._spinning:
            yield

    def remove(self, node: Node) -> None:
        """Remove and destroy a node (e.g. to simulate it dying)."""
        self.executor.remove_node(node)
        self.nodes.remove(node)
        node.destroy_node()

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            try:
                with self._spinning:
                    self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # executor shut down under us at teardown
                if not self._stop.is_set():
                    raise

    @staticmethod
    def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, period: float = 0.01) -> bool:
        """Poll ``predicate`` until it is truthy or ``timeout`` expires; return its last value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(period)
        return bool(predicate())

    def close(self) -> None:
        """Stop spinning, destroy the nodes and shut the context down."""
        self._stop.set()
        self._thread.join(timeout=5.0)
        for node in reversed(self.nodes):
            self.executor.remove_node(node)
            node.destroy_node()
        self.nodes.clear()
        self.executor.shutdown(timeout_sec=1.0)
        rclpy.try_shutdown(context=self.context)

    def __enter__(self) -> RosHarness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Collector:
    """Collects the messages of one topic (and their arrival times, monotonic) for tests."""

    def __init__(self, node: Node, msg_type: Any, topic: str, qos: Any = 10) -> None:
        self.msgs: list[Any] = []
        self.times: list[float] = []
        node.create_subscription(msg_type, topic, self._cb, qos)

    def _cb(self, msg: Any) -> None:
        self.msgs.append(msg)
        self.times.append(time.monotonic())

    @property
    def last(self) -> Any:
        """The newest message, or None."""
        return self.msgs[-1] if self.msgs else None
