"""The ``loopback`` CAN interface: frames between buses (and processes) over 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time

import can
import pytest

from evse_can_ros.transport.can_link import LinkConfigError, open_bus
from evse_can_ros.transport.loopback import LoopbackBus, pack, port_of, unpack


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_record_round_trip() -> None:
    msg = can.Message(arbitration_id=0x01068009, data=b"\x07", is_extended_id=True, timestamp=5.5)
    back = unpack(pack(msg))
    assert (back.arbitration_id, bytes(back.data), back.is_extended_id, back.timestamp) == (
        0x01068009,
        b"\x07",
        True,
        5.5,
    )
    rtr = unpack(
        pack(can.Message(arbitration_id=0x123, is_extended_id=False, is_remote_frame=True))
    )
    assert rtr.is_remote_frame and not rtr.is_extended_id and rtr.arbitration_id == 0x123


def test_buses_on_one_port_see_each_other_but_not_themselves() -> None:
    port = free_port()
    a, b, c = (LoopbackBus(channel=port) for _ in range(3))  # the first one starts the hub
    try:
        a.send(can.Message(arbitration_id=0x1060010, data=bytes(range(8))))
        for bus in (b, c):
            got = bus.recv(timeout=2.0)
            assert got is not None and got.arbitration_id == 0x1060010
            assert bytes(got.data) == bytes(range(8))
        assert a.recv(timeout=0.2) is None  # like CAN: no echo of own frames
    finally:
        for bus in (a, b, c):
            bus.shutdown()


def test_frames_cross_process_boundaries() -> None:
    port = free_port()
    bus = LoopbackBus(channel=str(port))
    child = textwrap.dedent(
        f"""
        import can, time
        from evse_can_ros.transport.loopback import LoopbackBus
        bus = LoopbackBus(channel={port})
        time.sleep(0.2)
        for i in range(50):
            bus.send(can.Message(arbitration_id=0x1068009, data=[i]))
        reply = bus.recv(timeout=5.0)
        print(reply.data[0] if reply else -1)
        bus.shutdown()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", child], stdout=subprocess.PIPE, text=True, cwd=str(_repo())
    )
    try:
        got = []
        deadline = time.monotonic() + 10.0
        while len(got) < 50 and time.monotonic() < deadline:
            m = bus.recv(timeout=0.5)
            if m is not None:
                got.append(m.data[0])
        assert got == list(range(50))  # in order, none lost
        bus.send(can.Message(arbitration_id=0x1060010, data=[99]))
        out, _ = proc.communicate(timeout=10.0)
        assert out.strip() == "99"
    finally:
        proc.kill()
        bus.shutdown()


def test_bad_channel_is_a_configuration_error() -> None:
    assert port_of("localhost:29536") == port_of(29536) == 29536
    with pytest.raises(ValueError, match="TCP port"):
        port_of("can0")
    with pytest.raises(ValueError, match="localhost"):
        port_of("example.com:29536")
    with pytest.raises(LinkConfigError, match=r"1024\.\.65535"):
        open_bus(interface="loopback", channel="80")


def _repo() -> str:
    from pathlib import Path

    return str(Path(__file__).resolve().parents[1])
