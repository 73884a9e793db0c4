"""The executor loop: a pending coroutine (a running Charge goal) must not make it spin."""

from __future__ import annotations

import time
from collections.abc import Generator

import pytest

rclpy = pytest.importorskip("rclpy")

from evse_can_ros.ros.runtime import create_executor, spin_slice  # noqa: E402

pytestmark = pytest.mark.ros


class Pending:
    """An awaitable that never completes and counts how often its task is resumed."""

    def __init__(self) -> None:
        self.resumed = 0

    def __await__(self) -> Generator[None, None, None]:
        while True:
            self.resumed += 1
            yield


@pytest.mark.parametrize("kind", ["events", "single"])
def test_a_pending_goal_does_not_spin_the_executor(kind: str) -> None:
    context = rclpy.context.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("spin_probe", context=context)
        pending = Pending()

        async def goal() -> None:  # what the charge server's execute callback does
            await pending

        executor = create_executor(context, kind)
        executor.add_node(node)
        executor.create_task(goal)
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            spin_slice(executor, 0.1)
        # resumed about once per slice (10), not thousands of times as spin_once does
        assert 1 <= pending.resumed <= 40, pending.resumed
        executor.shutdown()
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
