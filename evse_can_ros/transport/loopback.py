"""``loopback``: a CAN bus between processes of this machine, without vcan.

python-can's ``virtual`` bus only connects buses of one process, and vcan needs a Linux kernel
module (absent in many containers). This python-can bus carries frames over TCP on 127.0.0.1 only:
every :class:`LoopbackBus` with the same channel (a TCP port) connects to one hub, and the hub
forwards each frame to every other bus, like a real CAN bus (no loopback of own frames).

The first bus that finds no hub on its port starts one in its own process (a thread); run
``evse-can-ros bus-hub --port N`` instead when the hub must outlive the nodes. Use it with
``can_interface:=loopback can_channel:=localhost:29536`` (any free port). Nothing listens
or connects beyond 127.0.0.1.

Wire format: one 21-byte record per frame: arbitration id and flags (uint32; bit 31 extended,
bit 30 remote, bit 29 error frame), DLC (uint8), 8 data bytes, timestamp (float64, seconds).
The hub sends one byte 0x01 when it has registered a new bus.
"""

from __future__ import annotations

import contextlib
import logging
import select
import selectors
import socket
import struct
import threading
import time
from typing import Any, ClassVar

import can

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
DEFAULT_PORT = 29536
_RECORD = struct.Struct("<IB8sd")
_EXTENDED, _REMOTE, _ERROR = 1 << 31, 1 << 30, 1 << 29
_WELCOME = b"\x01"  # sent once by the hub when a bus is registered


def port_of(channel: Any) -> int:
    """Return the TCP port of a channel: ``29536``, ``"29536"`` or ``"localhost:29536"``.

    ValueError for anything else (only this machine's loopback is allowed).
    """
    host, _, port_text = str(channel).rpartition(":")
    if host not in ("", "localhost", HOST):
        raise ValueError(f"loopback channel must name a port on localhost, got {channel!r}")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(
            f"loopback channel must be a TCP port on {HOST} (e.g. localhost:{DEFAULT_PORT}), "
            f"got {channel!r}"
        ) from None
    if not 1024 <= port <= 65535:
        raise ValueError(f"loopback port must be 1024..65535, got {port}")
    return port


def pack(msg: can.Message) -> bytes:
    """Encode one message as a wire record."""
    flags = (
        (_EXTENDED if msg.is_extended_id else 0)
        | (_REMOTE if msg.is_remote_frame else 0)
        | (_ERROR if msg.is_error_frame else 0)
    )
    data = bytes(msg.data)[:8]
    return _RECORD.pack(msg.arbitration_id | flags, len(data), data.ljust(8, b"\0"), msg.timestamp)


def unpack(record: bytes) -> can.Message:
    """Decode one wire record."""
    ident, dlc, data, stamp = _RECORD.unpack(record)
    return can.Message(
        arbitration_id=ident & 0x1FFFFFFF,
        is_extended_id=bool(ident & _EXTENDED),
        is_remote_frame=bool(ident & _REMOTE),
        is_error_frame=bool(ident & _ERROR),
        dlc=min(dlc, 8),
        data=data[: min(dlc, 8)],
        timestamp=stamp,
    )


class LoopbackHub:
    """Forwards every record from one client to all the others (thread; 127.0.0.1 only)."""

    def __init__(self, port: int = DEFAULT_PORT) -> None:
        self.port = port
        self._server = socket.create_server((HOST, port), reuse_port=False)
        self._server.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._server, selectors.EVENT_READ)
        self._clients: dict[socket.socket, bytearray] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"can-hub-{port}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._server:
                    conn, _addr = self._server.accept()
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    self._clients[conn] = bytearray()
                    self._selector.register(conn, selectors.EVENT_READ)
                    conn.sendall(_WELCOME)  # the bus is on the hub from now on
                    continue
                try:
                    chunk = sock.recv(65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    self._drop(sock)
                    continue
                buffer = self._clients[sock]
                buffer += chunk
                whole = len(buffer) - len(buffer) % _RECORD.size
                if whole:
                    records = bytes(buffer[:whole])
                    del buffer[:whole]
                    for other in list(self._clients):
                        if other is not sock:
                            try:
                                other.sendall(records)
                            except OSError:
                                self._drop(other)

    def _drop(self, sock: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)
        self._clients.pop(sock, None)
        sock.close()

    def close(self) -> None:
        """Stop forwarding and close every connection."""
        self._stop.set()
        self._thread.join(timeout=2.0)
        for sock in list(self._clients):
            self._drop(sock)
        self._selector.close()
        self._server.close()

    def serve_forever(self) -> None:
        """Block until KeyboardInterrupt (for ``evse-can-ros bus-hub``)."""
        try:
            while self._thread.is_alive():
                time.sleep(0.5)
        finally:
            self.close()


class LoopbackBus(can.BusABC):
    """python-can bus over the loopback hub (see module docstring)."""

    _hubs: ClassVar[dict[int, LoopbackHub]] = {}
    _hub_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, channel: Any = DEFAULT_PORT, **kwargs: Any) -> None:
        self.port = port_of(channel)
        self.channel_info = f"loopback {HOST}:{self.port}"
        self._sock = self._connect()
        if self._sock.recv(1) != _WELCOME:  # (1 s timeout) registered before the first send
            self._sock.close()
            raise can.CanInitializationError(f"no CAN loopback hub on {HOST}:{self.port}")
        self._sock.settimeout(None)  # blocking; receive waits in select()
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = bytearray()
        self._send_lock = threading.Lock()
        kwargs.pop("bitrate", None)  # no bit timing on a socket
        super().__init__(channel=channel, **kwargs)

    def _connect(self) -> socket.socket:
        try:
            return socket.create_connection((HOST, self.port), timeout=1.0)
        except ConnectionRefusedError:
            with LoopbackBus._hub_lock:
                if self.port not in LoopbackBus._hubs:
                    try:
                        LoopbackBus._hubs[self.port] = LoopbackHub(self.port)
                        log.info("started CAN loopback hub on %s:%d", HOST, self.port)
                    except OSError:  # another process won the race: use its hub
                        pass
            return socket.create_connection((HOST, self.port), timeout=1.0)

    def send(self, msg: can.Message, timeout: float | None = None) -> None:
        """Send one frame to every other bus on the hub."""
        record = pack(
            can.Message(
                arbitration_id=msg.arbitration_id,
                is_extended_id=msg.is_extended_id,
                is_remote_frame=msg.is_remote_frame,
                is_error_frame=msg.is_error_frame,
                data=msg.data,
                timestamp=time.time(),
            )
        )
        with self._send_lock:
            try:
                self._sock.sendall(record)
            except OSError as exc:
                raise can.CanOperationError(f"loopback hub {self.port}: {exc}") from exc

    def _recv_internal(self, timeout: float | None) -> tuple[can.Message | None, bool]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(self._buffer) < _RECORD.size:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                readable, _, _ = select.select([self._sock], [], [], remaining)
                if not readable:
                    return None, False
                chunk = self._sock.recv(4096)
            except (OSError, ValueError) as exc:
                raise can.CanOperationError(f"loopback hub {self.port}: {exc}") from exc
            if not chunk:
                raise can.CanOperationError(f"loopback hub {self.port} closed the connection")
            self._buffer += chunk
        record = bytes(self._buffer[: _RECORD.size])
        del self._buffer[: _RECORD.size]
        msg = unpack(record)
        msg.channel = self.port
        return msg, False

    def shutdown(self) -> None:
        """Close the connection (a hub started here keeps running for the other buses)."""
        super().shutdown()
        with contextlib.suppress(OSError):
            self._sock.close()
