"""One bus, one link: the shared link's demultiplexer and filters, and the transmit scheduler."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, ClassVar

import can
import pytest

from evse_can_ros.protocol import (
    CanFrame,
    EmergencyStop,
    EmergencyStopOrigin,
    load_codec,
    pistol_filter,
)
from evse_can_ros.transport import LinkConfig, LinkConfigError, LinkPool, SharedLink, TxScheduler


def wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return bool(predicate())


class Pistol:
    """A consumer: frames, the thread they arrived on, link events."""

    def __init__(self) -> None:
        self.frames: list[CanFrame] = []
        self.threads: set[str] = set()
        self.links: list[tuple[bool, str]] = []

    def on_frame(self, frame: CanFrame, now: float) -> None:
        self.frames.append(frame)
        self.threads.add(threading.current_thread().name)

    def on_link(self, up: bool, reason: str) -> None:
        self.links.append((up, reason))


def virtual(channel: str) -> LinkConfig:
    return LinkConfig(interface="virtual", channel=channel, bitrate=0)


@pytest.fixture
def channel() -> str:
    return f"test-{uuid.uuid4().hex}"


# --- the transmit scheduler ------------------------------------------------------------------


def test_scheduler_runs_each_tick_at_its_own_deadline_on_one_thread() -> None:
    sched = TxScheduler("test-tx")
    calls: dict[str, list[str]] = {"fast": [], "slow": []}

    def tick(name: str, period: float) -> Any:
        def run(now: float) -> float:
            calls[name].append(threading.current_thread().name)
            return now + period

        return run

    sched.add(tick("fast", 0.01), "fast")
    sched.add(tick("slow", 3600.0), "slow")
    try:
        assert wait_for(lambda: len(calls["fast"]) >= 5)
        assert len(calls["slow"]) == 1  # ran once at once, next deadline an hour away
        assert set(calls["fast"]) | set(calls["slow"]) == {"test-tx"}
        assert sched.clients == 2
    finally:
        sched.close()


def test_scheduler_wake_runs_a_tick_before_its_deadline() -> None:
    sched = TxScheduler()
    calls: list[float] = []
    entry = sched.add(lambda now: calls.append(now) or now + 3600.0)
    try:
        assert wait_for(lambda: len(calls) == 1)
        entry.wake()
        assert wait_for(lambda: len(calls) == 2)
    finally:
        sched.close()


def test_a_tick_woken_while_it_runs_runs_again() -> None:
    sched = TxScheduler()
    calls: list[float] = []
    go = threading.Event()
    holder: dict[str, Any] = {}

    def tick(now: float) -> float:
        go.wait(2.0)
        calls.append(now)
        if len(calls) == 1:
            holder["entry"].wake()  # e.g. an event arrives while the tick sends
        return now + 3600.0

    holder["entry"] = sched.add(tick)
    go.set()
    try:
        assert wait_for(lambda: len(calls) == 2)
    finally:
        sched.close()


def test_a_failing_tick_is_retried_and_does_not_stop_the_others() -> None:
    sched = TxScheduler(error_backoff=0.01)
    good: list[float] = []
    failures: list[float] = []

    def bad(now: float) -> float:
        failures.append(now)
        raise RuntimeError("boom")

    sched.add(bad, "bad")
    sched.add(lambda now: good.append(now) or now + 0.01, "good")
    try:
        assert wait_for(lambda: len(failures) >= 3 and len(good) >= 3)
        assert sched.errors >= 3
    finally:
        sched.close()


def test_cancel_and_close_stop_the_ticks() -> None:
    sched = TxScheduler()
    calls: list[float] = []
    entry = sched.add(lambda now: calls.append(now) or now + 0.005)
    assert wait_for(lambda: len(calls) >= 2)
    entry.cancel()
    n = len(calls)
    time.sleep(0.05)
    assert len(calls) == n and sched.clients == 0
    sched.close()
    with pytest.raises(RuntimeError, match="closed"):
        sched.add(lambda now: now)


# --- the shared link on a virtual bus ----------------------------------------------------------


def test_frames_go_to_the_pistol_of_their_id_on_one_receive_thread(channel: str) -> None:
    shared = SharedLink(virtual(channel))
    p1, p2 = Pistol(), Pistol()
    links = [shared.attach(1, p1.on_frame, p1.on_link), shared.attach(2, p2.on_frame, p2.on_link)]
    peer = can.Bus(interface="virtual", channel=channel)
    try:
        for link in links:
            link.open()
            link.start()
        for can_id in (0x01068009, 0x02068009, 0x03068009, 0x02068001, 0x0068009):
            peer.send(can.Message(arbitration_id=can_id, data=[can_id & 0xFF]))
        assert wait_for(lambda: len(p2.frames) == 2 and len(p1.frames) == 1)
        assert [f.arbitration_id for f in p1.frames] == [0x01068009]
        assert [f.arbitration_id for f in p2.frames] == [0x02068009, 0x02068001]
        assert p1.threads == p2.threads and len(p1.threads) == 1  # one receive thread
        assert shared.pistols == (1, 2)
        assert links[0].stats.rx_frames == 1 and links[1].stats.rx_frames == 2
        # both pistols transmit through the same bus
        assert links[0].send(CanFrame(0x01060010, bytes(8)))
        assert links[1].send(CanFrame(0x02060010, bytes(8)))
        got = [peer.recv(timeout=2.0), peer.recv(timeout=2.0)]
        assert [m.arbitration_id for m in got if m is not None] == [0x01060010, 0x02060010]
        assert links[1].stats.tx_frames == 1 and shared.link.stats.tx_frames == 2
    finally:
        for link in links:
            link.close()
        peer.shutdown()
    assert not shared.link.up  # the last pistol closed the bus


def test_an_emergency_stop_reaches_its_own_pistol_at_once_under_a_flood(channel: str) -> None:
    """Pistol 2's Emergency_Stop is handed to pistol 2 on the receive thread, in bus order,
    while pistol 1 receives at the bus limit; pistol 1 never sees it."""
    codec = load_codec()
    shared = SharedLink(virtual(channel))
    p1 = Pistol()
    estops: list[tuple[str, int]] = []
    p2_frames = Pistol()

    def on_frame_2(frame: CanFrame, now: float) -> None:
        p2_frames.on_frame(frame, now)
        message = codec.decode(frame, 2)
        if isinstance(message, EmergencyStop):
            estops.append((threading.current_thread().name, len(p1.frames)))

    links = [shared.attach(1, p1.on_frame, p1.on_link), shared.attach(2, on_frame_2, p1.on_link)]
    peer = can.Bus(interface="virtual", channel=channel)
    try:
        for link in links:
            link.open()
            link.start()
        flood = can.Message(arbitration_id=0x01068009, data=bytes(8))
        for _ in range(500):
            peer.send(flood)
        estop = codec.encode(EmergencyStop(EmergencyStopOrigin.EVSE), 2)
        peer.send(can.Message(arbitration_id=estop.arbitration_id, data=estop.data))
        for _ in range(500):
            peer.send(flood)
        assert wait_for(lambda: len(p1.frames) == 1000 and estops)
        thread, p1_before = estops[0]
        assert thread == next(iter(p1.threads))  # the receive thread, not an executor
        assert p1_before == 500  # delivered in bus order, not behind pistol 1's later frames
        assert len(p2_frames.frames) == 1
    finally:
        for link in links:
            link.close()
        peer.shutdown()


def test_a_failing_pistol_handler_costs_no_other_pistol_a_frame(channel: str) -> None:
    shared = SharedLink(virtual(channel))
    good = Pistol()

    def broken(frame: CanFrame, now: float) -> None:
        raise RuntimeError("bug")

    links = [shared.attach(1, broken, good.on_link), shared.attach(2, good.on_frame, good.on_link)]
    peer = can.Bus(interface="virtual", channel=channel)
    try:
        for link in links:
            link.open()
            link.start()
        for can_id in (0x01068009, 0x02068009, 0x01068009, 0x02068009):
            peer.send(can.Message(arbitration_id=can_id, data=[1]))
        assert wait_for(lambda: len(good.frames) == 2 and links[0].stats.handler_errors == 2)
        assert links[1].stats.handler_errors == 0
    finally:
        for link in links:
            link.close()
        peer.shutdown()


class RecordingBus(can.BusABC):
    """A bus that records its filters and serves queued frames (no filtering of its own)."""

    instances: ClassVar[list[RecordingBus]] = []

    def __init__(self, channel: Any = None, can_filters: Any = None, **kwargs: Any) -> None:
        self.channel_info = "recording"
        self.queue: list[can.Message] = []
        self.filter_history: list[Any] = [can_filters]
        RecordingBus.instances.append(self)
        super().__init__(channel=channel, **kwargs)

    def _apply_filters(self, filters: Any) -> None:  # python-can's hook (kernel on SocketCAN)
        if hasattr(self, "filter_history"):
            self.filter_history.append(filters)

    def send(self, msg: can.Message, timeout: float | None = None) -> None:
        pass

    def _recv_internal(self, timeout: float | None) -> tuple[can.Message | None, bool]:
        if self.queue:
            return self.queue.pop(0), True  # "filtered already", as a kernel filter would
        time.sleep(min(timeout or 0.0, 0.01))
        return None, True


def test_the_receive_filters_are_the_pistols_served() -> None:
    RecordingBus.instances.clear()
    shared = SharedLink(LinkConfig(interface="rec", channel="x"), bus_factory=RecordingBus)
    pistol = Pistol()
    a = shared.attach(3, pistol.on_frame, pistol.on_link)
    b = shared.attach(5, pistol.on_frame, pistol.on_link)
    a.open()
    bus = RecordingBus.instances[0]
    assert bus.filter_history[0] == [pistol_filter(3)]
    b.open()
    assert bus.filter_history[-1] == [pistol_filter(3), pistol_filter(5)]
    a.close()
    assert bus.filter_history[-1] == [pistol_filter(5)] and shared.link.up
    assert len(RecordingBus.instances) == 1  # one bus for both pistols
    b.close()
    assert not shared.link.up


def test_error_frames_reach_every_pistol_and_link_changes_too() -> None:
    RecordingBus.instances.clear()
    shared = SharedLink(LinkConfig(interface="rec", channel="x"), bus_factory=RecordingBus)
    p1, p2 = Pistol(), Pistol()
    links = [shared.attach(1, p1.on_frame, p1.on_link), shared.attach(2, p2.on_frame, p2.on_link)]
    for link in links:
        link.open()
    assert p1.links == [(True, "rec:x up")] and p2.links == [(True, "rec:x up")]
    bus = RecordingBus.instances[0]
    bus.queue.append(can.Message(arbitration_id=0x40, is_error_frame=True, data=bytes(8)))
    links[0].start()
    try:
        assert wait_for(lambda: p1.frames and p2.frames and len(p2.links) >= 2)
        assert p1.frames[0].is_error_frame and p2.frames[0].is_error_frame
        assert p2.links[1][0] is False and "bus-off" in p2.links[1][1]
        assert links[1].stats.bus_off_events == 1
    finally:
        for link in links:
            link.close()


def test_a_pistol_is_served_once_per_bus(channel: str) -> None:
    shared = SharedLink(virtual(channel))
    p = Pistol()
    a = shared.attach(4, p.on_frame, p.on_link)
    a.open()
    try:
        a.open()  # idempotent
        with pytest.raises(LinkConfigError, match="pistol 4 is already served"):
            shared.attach(4, p.on_frame, p.on_link).open()
    finally:
        a.close()


def test_the_pool_gives_one_link_per_bus_and_refuses_a_conflicting_configuration() -> None:
    pool = LinkPool()
    p = Pistol()
    a = pool.attach(virtual("pool-a"), 1, p.on_frame, p.on_link)
    b = pool.attach(virtual("pool-a"), 2, p.on_frame, p.on_link)
    c = pool.attach(virtual("pool-b"), 1, p.on_frame, p.on_link)
    assert a.shared is b.shared and a.shared is not c.shared and len(pool.links) == 2
    with pytest.raises(LinkConfigError, match="configured differently"):
        pool.attach(LinkConfig(interface="virtual", channel="pool-a"), 3, p.on_frame, p.on_link)
    pool.close()


def test_a_pistol_link_schedules_on_the_bus_transmit_thread(channel: str) -> None:
    shared = SharedLink(virtual(channel))
    p = Pistol()
    links = [shared.attach(i, p.on_frame, p.on_link) for i in (1, 2)]
    names: list[str] = []
    try:
        for link in links:
            link.open()
            link.schedule(lambda now: names.append(threading.current_thread().name) or now + 1)
        assert wait_for(lambda: len(names) == 2)
        assert len(set(names)) == 1 and shared.scheduler.clients == 2
    finally:
        for link in links:
            link.close()
