"""``evse-can-ros record``: run a SessionRecorder until Ctrl-C or a duration."""

from __future__ import annotations

import time

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

from evse_can_ros.ros.dds import apply_local_dds_defaults
from evse_can_ros.ros.recording import SessionRecorder


def run_record(
    output: str,
    namespace: str,
    storage: str,
    duration: float,
    bridge_node: str,
    *,
    protocol_version: int = 2,
) -> int:
    """Record until Ctrl-C (or ``duration`` seconds); print what was written."""
    apply_local_dds_defaults()
    rclpy.init()
    recorder = SessionRecorder(
        output, namespace, storage, bridge_node=bridge_node, protocol_version=protocol_version
    )
    executor = SingleThreadedExecutor()
    executor.add_node(recorder)
    print(f"recording {namespace or '/'} to {output} ({storage}); Ctrl-C to stop")
    end = time.monotonic() + duration if duration > 0 else None
    try:
        while rclpy.ok() and (end is None or time.monotonic() < end):
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        counts = dict(recorder.bag.counts)
        recorder.destroy_node()
        rclpy.try_shutdown()
    total = sum(counts.values())
    print(f"wrote {total} messages on {len(counts)} topics to {output}")
    for topic, n in sorted(counts.items()):
        print(f"  {topic}: {n}")
    return 0 if total else 1
