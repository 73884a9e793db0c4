"""The receive path's conversions: cheap stamps that keep simulated time, reused messages."""

from __future__ import annotations

import time

import pytest
from rclpy.clock import Clock, ClockType, ROSClock
from rclpy.time import Time

from evse_can_ros.protocol import ChargingLoop
from evse_can_ros.ros import conversions as conv

pytestmark = pytest.mark.ros


def seconds(stamp: object) -> float:
    return stamp.sec + stamp.nanosec * 1e-9  # type: ignore[attr-defined]


def test_stamp_now_reads_the_system_clock_for_ros_time_without_simulated_time() -> None:
    before = time.time()
    stamp = conv.stamp_now(ROSClock())
    assert before <= seconds(stamp) <= time.time()
    assert 0 <= stamp.nanosec < 1_000_000_000


def test_stamp_now_keeps_simulated_time() -> None:
    clock = ROSClock()
    clock._set_ros_time_is_active(True)
    clock.set_ros_time_override(Time(seconds=42, nanoseconds=5, clock_type=ClockType.ROS_TIME))
    stamp = conv.stamp_now(clock)
    assert (stamp.sec, stamp.nanosec) == (42, 5)
    into = conv.stamp_now(ROSClock())
    assert conv.stamp_now(clock, into=into) is into and (into.sec, into.nanosec) == (42, 5)


def test_stamp_now_of_a_steady_clock_is_the_steady_time() -> None:
    clock = Clock(clock_type=ClockType.STEADY_TIME)
    assert abs(seconds(conv.stamp_now(clock)) - seconds(clock.now().to_msg())) < 1.0


def test_to_ros_reuses_one_message_per_type_when_asked() -> None:
    stamp = conv.stamp_now(ROSClock())
    reuse: dict[type, object] = {}
    first = conv.to_ros(ChargingLoop(400.0, 100.0, 50), stamp, reuse=reuse)
    second = conv.to_ros(ChargingLoop(410.0, 0.0, 51), stamp, reuse=reuse)
    assert second is first and reuse == {ChargingLoop: first}
    assert (second.target_voltage, second.target_current, second.state_of_charge) == (
        410.0,
        0.0,
        51,
    )
    assert conv.to_ros(ChargingLoop(1.0, 2.0, 3), stamp) is not first  # no reuse: a new one
