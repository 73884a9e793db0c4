"""The CAN link over python-can's virtual bus and over a failing fake bus."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import can
import pytest

from evse_can_ros.protocol import CanFrame, pistol_filter
from evse_can_ros.transport import CanLink, LinkConfig, LinkConfigError


class Recorder:
    def __init__(self) -> None:
        self.frames: list[CanFrame] = []
        self.links: list[tuple[bool, str]] = []
        self.event = threading.Event()

    def on_frame(self, frame: CanFrame, now: float) -> None:
        self.frames.append(frame)
        self.event.set()

    def on_link(self, up: bool, reason: str) -> None:
        self.links.append((up, reason))
        self.event.set()

    def wait_for(self, predicate: Any, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            self.event.wait(0.05)
            self.event.clear()
        return bool(predicate())


@pytest.fixture
def channel() -> str:
    return f"test-{uuid.uuid4().hex}"


def virtual(channel: str, **kw: Any) -> LinkConfig:
    return LinkConfig(interface="virtual", channel=channel, bitrate=0, **kw)


def test_receives_only_our_pistol_and_sends(channel: str) -> None:
    rec = Recorder()
    link = CanLink(virtual(channel), rec.on_frame, rec.on_link, filters=[pistol_filter(2)])
    peer = can.Bus(interface="virtual", channel=channel)
    try:
        link.open()
        link.start()
        peer.send(can.Message(arbitration_id=0x01068009, data=[7]))
        peer.send(can.Message(arbitration_id=0x02068009, data=[7]))
        assert rec.wait_for(lambda: rec.frames)
        time.sleep(0.1)
        assert [f.arbitration_id for f in rec.frames] == [0x02068009]
        assert rec.frames[0].timestamp > 0 and rec.frames[0].data == b"\x07"
        assert link.send(CanFrame(0x02060010, bytes(8)))
        got = peer.recv(timeout=2.0)
        assert got is not None and got.arbitration_id == 0x02060010 and got.is_extended_id
        assert (
            link.stats.tx_frames == 1
            and link.up
            and rec.links == [(True, f"virtual:{channel} up")]
        )
    finally:
        link.close()
        peer.shutdown()


def test_unknown_interface_is_a_config_error(channel: str) -> None:
    rec = Recorder()
    link = CanLink(
        LinkConfig(interface="no_such_interface", channel="x"), rec.on_frame, rec.on_link
    )
    with pytest.raises(LinkConfigError, match="no_such_interface"):
        link.open()


class FlakyBus(can.BusABC):
    """A bus whose send/recv fail on demand; counts how often it was created."""

    created = 0
    fail_send = False
    fail_recv = False

    def __init__(self, channel: Any = None, **kwargs: Any) -> None:
        FlakyBus.created += 1
        self.channel_info = "flaky"
        self.queue: list[can.Message] = []
        super().__init__(channel=channel, **kwargs)

    def send(self, msg: can.Message, timeout: float | None = None) -> None:
        if FlakyBus.fail_send:
            raise can.CanOperationError("No buffer space available")

    def _recv_internal(self, timeout: float | None) -> tuple[can.Message | None, bool]:
        if FlakyBus.fail_recv:
            raise can.CanOperationError("Network is down")
        if self.queue:
            return self.queue.pop(0), False
        time.sleep(timeout or 0)
        return None, False


@pytest.fixture
def flaky() -> Any:
    FlakyBus.created = 0
    FlakyBus.fail_send = False
    FlakyBus.fail_recv = False
    return FlakyBus


def test_send_failures_are_counted_and_trigger_a_reconnect(flaky: Any) -> None:
    rec = Recorder()
    cfg = LinkConfig(interface="flaky", channel="x", reconnect_interval=0.1, max_send_failures=3)
    link = CanLink(cfg, rec.on_frame, rec.on_link, bus_factory=flaky)
    link.open()
    link.start()
    try:
        flaky.fail_send = True
        assert [link.send(CanFrame(0x01060010, bytes(8))) for _ in range(3)] == [False] * 3
        assert link.stats.tx_failures == 3
        assert rec.wait_for(lambda: (False, link.last_error) in rec.links)
        assert "3 consecutive send failures" in link.last_error
        flaky.fail_send = False
        assert rec.wait_for(lambda: flaky.created == 2 and link.up)
        assert link.send(CanFrame(0x01060010, bytes(8)))
        assert link.stats.reconnects == 1
    finally:
        link.close()


def test_receive_failure_reopens_the_bus(flaky: Any) -> None:
    rec = Recorder()
    cfg = LinkConfig(interface="flaky", channel="x", reconnect_interval=0.1)
    link = CanLink(cfg, rec.on_frame, rec.on_link, bus_factory=flaky)
    link.open()
    link.start()
    try:
        flaky.fail_recv = True
        assert rec.wait_for(lambda: any(not up for up, _ in rec.links))
        assert "Network is down" in link.last_error and link.stats.rx_failures >= 1
        flaky.fail_recv = False
        assert rec.wait_for(lambda: rec.links[-1][0] is True and flaky.created >= 2)
    finally:
        link.close()


def test_bus_off_error_frame_marks_the_link_down(flaky: Any) -> None:
    rec = Recorder()
    link = CanLink(
        LinkConfig(interface="flaky", channel="x"), rec.on_frame, rec.on_link, bus_factory=flaky
    )
    link.open()
    bus = link._bus
    assert isinstance(bus, FlakyBus)
    bus.queue.append(can.Message(arbitration_id=0x40, is_error_frame=True, data=bytes(8)))
    bus.queue.append(can.Message(arbitration_id=0x01068009, data=[1]))
    link.start()
    try:
        assert rec.wait_for(lambda: len(rec.frames) == 2)
        assert rec.links[1][0] is False and "bus-off" in rec.links[1][1]
        assert rec.links[2][0] is True  # the next good frame brings it back
        assert link.stats.bus_off_events == 1 and rec.frames[0].is_error_frame
    finally:
        link.close()


def test_open_failure_is_retried_not_raised(flaky: Any) -> None:
    attempts = []

    def factory(**kwargs: Any) -> can.BusABC:
        attempts.append(kwargs)
        if len(attempts) < 3:
            raise can.CanInitializationError("adapter not found")
        return flaky(**kwargs)

    rec = Recorder()
    link = CanLink(
        LinkConfig(interface="flaky", channel="x", reconnect_interval=0.1),
        rec.on_frame,
        rec.on_link,
        bus_factory=factory,
    )
    link.open()
    assert not link.up and "adapter not found" in link.last_error
    link.start()
    try:
        assert rec.wait_for(lambda: link.up)
        assert len(attempts) == 3 and attempts[0]["bitrate"] == 500000
    finally:
        link.close()
