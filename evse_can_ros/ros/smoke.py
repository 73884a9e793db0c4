"""``evse-can-ros smoke``: prove that rclpy, DDS on localhost and the generated interfaces work."""

from __future__ import annotations

import math
import os
import time

from evse_can_ros.ros.dds import apply_local_dds_defaults


def run_smoke(timeout: float = 10.0) -> int:
    """Publish a ControllerState to ourselves and wait for it; return 0 on success, 1 otherwise."""
    apply_local_dds_defaults()
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile

    from evse_can_ros.msg import CanFrame, ControllerState

    received: list[ControllerState] = []
    with rclpy.init():
        node = rclpy.create_node("evse_can_ros_smoke")
        qos = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        pub = node.create_publisher(ControllerState, "smoke/controller_state", qos)
        node.create_subscription(ControllerState, "smoke/controller_state", received.append, qos)
        msg = ControllerState(
            pistol_index=1,
            state=ControllerState.WAITING_FOR_PEV,
            state_name="Waiting_For_PEV",
            alive=True,
            heartbeat_age=math.inf,
        )
        pub.publish(msg)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        deadline = time.monotonic() + timeout
        while not received and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        CanFrame(id=0x01068009, is_extended=True, dlc=1, data=[7, 0, 0, 0, 0, 0, 0, 0])
        node.destroy_node()
    env = (
        f"ROS_DOMAIN_ID={os.environ.get('ROS_DOMAIN_ID')} "
        f"ROS_AUTOMATIC_DISCOVERY_RANGE={os.environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE')}"
    )
    if received and received[0].state_name == "Waiting_For_PEV":
        print(f"smoke OK: rclpy and evse_can_ros interfaces work ({env})")
        return 0
    print(f"smoke FAILED: no message received over DDS within {timeout:g} s ({env})")
    return 1
