"""A scripted CAN peer for tests and benchmarks: sends and records frames on a python-can bus.

It encodes with any cantools database (the tests use the vendor's KCD, so that the bridge is
checked against an independent encoder) and records every received frame with its monotonic
arrival time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import can


@dataclass(frozen=True)
class Received:
    """A frame seen by the peer: monotonic arrival time + the python-can message."""

    t: float
    msg: can.Message


class BusPeer:
    """Sends frames (optionally periodic heartbeats) and records what others send."""

    def __init__(self, interface: str, channel: str, database: Any, pistol_index: int = 1) -> None:
        self.bus = can.Bus(interface=interface, channel=channel)
        self.db = database
        self.pistol_index = pistol_index
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._heartbeat_state: int | None = None
        self._heartbeat_period = 0.1
        self.heartbeats_sent = 0
        self.last_heartbeat_time: float | None = None  # monotonic time of the last one sent
        self._rx = threading.Thread(target=self._receive, name="peer-rx", daemon=True)
        self._hb = threading.Thread(target=self._heartbeat, name="peer-hb", daemon=True)
        self._rx.start()
        self._hb.start()

    def can_id(self, name: str, pistol: int | None = None) -> int:
        """Bus identifier of message ``name`` for ``pistol`` (default: the peer's)."""
        base = int(self.db.get_message_by_name(name).frame_id) & 0x00FF_FFFF
        return ((self.pistol_index if pistol is None else pistol) << 24) | base

    def send(self, name: str, signals: Mapping[str, Any], pistol: int | None = None) -> None:
        """Encode ``name`` with the peer's database and send it."""
        data = self.db.get_message_by_name(name).encode(dict(signals))
        self.send_raw(self.can_id(name, pistol), bytes(data))

    def send_raw(self, can_id: int, data: bytes, **kwargs: Any) -> None:
        """Send arbitrary bytes (malformed frames, foreign pistols, error frames)."""
        self.bus.send(can.Message(arbitration_id=can_id, data=data, **kwargs))

    def heartbeat(self, state: int | None, period: float = 0.1) -> None:
        """Send Advantics_Controller_Status(state) every ``period``; None stops it."""
        self._heartbeat_period = period
        self._heartbeat_state = state

    def frames(self, name: str, pistol: int | None = None, since: float = 0.0) -> list[Received]:
        """Frames of message ``name`` received at or after ``since``."""
        ident = self.can_id(name, pistol)
        with self._lock:
            return [r for r in self.received if r.msg.arbitration_id == ident and r.t >= since]

    def decoded(
        self, name: str, pistol: int | None = None, since: float = 0.0
    ) -> list[tuple[float, dict[str, Any]]]:
        """``(t, signals)`` of the received frames of ``name`` decoded with the peer's database."""
        m = self.db.get_message_by_name(name)
        return [
            (r.t, m.decode(r.msg.data, decode_choices=False))
            for r in self.frames(name, pistol, since)
        ]

    def all_received(self) -> list[Received]:
        """Every frame received so far."""
        with self._lock:
            return list(self.received)

    def close(self) -> None:
        """Stop the threads and release the bus."""
        self._stop.set()
        self._rx.join(timeout=2.0)
        self._hb.join(timeout=2.0)
        self.bus.shutdown()

    def _receive(self) -> None:
        while not self._stop.is_set():
            msg = self.bus.recv(timeout=0.05)
            if msg is not None:
                with self._lock:
                    self.received.append(Received(time.monotonic(), msg))

    def _heartbeat(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            state = self._heartbeat_state
            if state is not None:
                self.send("Advantics_Controller_Status", {"State": state})
                self.heartbeats_sent += 1
                self.last_heartbeat_time = time.monotonic()
            next_t += self._heartbeat_period
            self._stop.wait(max(0.0, next_t - time.monotonic()))
