"""The CAN link: a python-can bus with one seam in and one seam out.

* In: a receive thread calls ``on_frame(frame, now)`` for every frame (``now`` = monotonic receive
  time; ``frame.timestamp`` = the driver's bus timestamp). Publishing to ROS from that thread is
  safe and much cheaper than going through an executor (README, "Performance").
* Out: :meth:`CanLink.send` (thread-safe) sends one frame and returns False on failure.

The link recovers on its own. A receive error, a bus-off error frame or ``max_send_failures``
consecutive send failures close the bus and report the link down. It is then reopened every
``reconnect_interval`` until that succeeds. An interface name that python-can does not know is
a configuration error (:class:`LinkConfigError`), raised at :meth:`CanLink.open`: retrying would
not help.

No periodic transmission is delegated to the driver (no ``send_periodic``): if our process
stalls, nothing is sent, and the controller's own interlock trips instead of a kernel task
repeating a stale "System_Enable = Allowed".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import can

from evse_can_ros.config import check, param
from evse_can_ros.protocol import DEFAULT_BITRATE, CanFrame
from evse_can_ros.text import one_line

log = logging.getLogger(__name__)

CAN_ERR_BUSOFF = 0x40  # SocketCAN error class bit (linux/can/error.h)
CAN_ERR_CRTL = 0x04  # controller problems (error passive, overflow)


@dataclass(frozen=True)
class LinkConfig:
    """Which bus to open and how to recover."""

    interface: str = param(
        "socketcan",
        "python-can interface (socketcan, virtual, pcan, kvaser, ...) or loopback (TCP on "
        "127.0.0.1 between processes, channel = port)",
    )
    channel: str = param(
        "can0",
        "python-can channel (e.g. can0, vcan0, PCAN_USBBUS1, a name shared by virtual buses)",
    )
    bitrate: int = param(
        DEFAULT_BITRATE,
        "bitrate in bit/s; 0 = leave the interface's setting",
        unit="bit/s",
        min=0,
        max=1_000_000,
    )
    reconnect_interval: float = param(
        1.0, "time between attempts to reopen a failed bus", unit="s", min=0.1, max=60.0
    )
    max_send_failures: int = param(
        5, "consecutive send failures that mark the link down", min=1, max=1000
    )
    send_timeout: float = param(
        0.01, "time a send may block when the driver queue is full", unit="s", min=0.0, max=1.0
    )

    def __post_init__(self) -> None:
        check(self)


class LinkConfigError(ValueError):
    """The link configuration cannot work (unknown interface, bad options)."""


BusFactory = Callable[..., can.BusABC]


@dataclass
class LinkStats:
    """Counters of the link (read without the lock: plain ints, monotonic)."""

    rx_frames: int = 0
    tx_frames: int = 0
    tx_failures: int = 0
    rx_failures: int = 0
    bus_off_events: int = 0
    reconnects: int = 0
    handler_errors: int = 0  # exceptions of the frame consumer (it reacts; counted here too)


class CanLink:
    """See module docstring. ``on_link`` is called with (up, reason) on every up/down change."""

    def __init__(
        self,
        config: LinkConfig,
        on_frame: Callable[[CanFrame, float], None],
        on_link: Callable[[bool, str], None],
        *,
        filters: Sequence[Mapping[str, Any]] | None = None,
        bus_factory: BusFactory | None = None,
        receive_timeout: float = 0.05,
    ) -> None:
        self.config = config
        self._on_frame = on_frame
        self._on_link = on_link
        self._filters = [dict(f) for f in filters] if filters else None
        self._bus_factory: BusFactory = bus_factory or open_bus
        self._receive_timeout = receive_timeout
        self._bus: can.BusABC | None = None
        self._send_lock = threading.Lock()
        self._stop = threading.Event()
        self._reopen = threading.Event()
        self._thread: threading.Thread | None = None
        self._consecutive_send_failures = 0
        self.stats = LinkStats()
        self.up = False
        self._down_reported = False
        self.last_error = ""

    # --- lifecycle ----------------------------------------------------------------------------

    def open(self) -> None:
        """Open the bus once; raise LinkConfigError for configuration errors.

        A bus that exists in the configuration but cannot be opened now (adapter unplugged,
        interface down) is not an error here: the receive thread keeps retrying.
        """
        try:
            self._open_bus()
        except LinkConfigError:
            raise
        except Exception as exc:  # driver errors differ by interface; report and retry later
            self._mark_down(f"cannot open {self.describe()}: {one_line(exc)}")

    def start(self) -> None:
        """Start the receive thread (opens the bus if :meth:`open` was not called)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._receive_loop, name="can-rx", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the receive thread and shut the bus down (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        with self._send_lock:
            self._shutdown_bus()
        self.up = False

    def describe(self) -> str:
        """Return ``interface:channel`` for logs."""
        return f"{self.config.interface}:{self.config.channel}"

    def set_filters(self, filters: Sequence[Mapping[str, Any]] | None) -> None:
        """Replace the receive filters, on the open bus too (kernel filters on SocketCAN)."""
        self._filters = [dict(f) for f in filters] if filters else None
        with self._send_lock:
            if self._bus is not None:
                self._bus.set_filters(self._filters)  # type: ignore[arg-type]

    # --- out ----------------------------------------------------------------------------------

    def send(self, frame: CanFrame) -> bool:
        """Send one frame; False if it could not be sent (counted, logged once per streak)."""
        msg = can.Message(
            arbitration_id=frame.arbitration_id,
            data=frame.data,
            is_extended_id=frame.is_extended_id,
        )
        with self._send_lock:
            bus = self._bus
            if bus is None:
                self.stats.tx_failures += 1
                return False
            try:
                bus.send(msg, timeout=self.config.send_timeout)
            except (can.CanError, OSError, ValueError) as exc:
                self.stats.tx_failures += 1
                self._consecutive_send_failures += 1
                if self._consecutive_send_failures == 1:
                    log.warning("CAN send failed on %s: %s", self.describe(), one_line(exc))
                if self._consecutive_send_failures >= self.config.max_send_failures:
                    self._reopen.set()
                    self.last_error = (
                        f"{self._consecutive_send_failures} consecutive send "
                        f"failures: {one_line(exc)}"
                    )
                return False
            self._consecutive_send_failures = 0
            self.stats.tx_frames += 1
            return True

    # --- in -------------------------------------------------------------------------------------

    def _receive_loop(self) -> None:
        while not self._stop.is_set():
            if self._reopen.is_set():
                self._reopen.clear()
                self._fail(self.last_error or "link reset requested")
            bus = self._bus
            if bus is None:
                if self._stop.wait(self.config.reconnect_interval):
                    break
                try:
                    self._open_bus()
                    self.stats.reconnects += 1
                except Exception as exc:  # keep retrying; the node reports ERROR meanwhile
                    self.last_error = f"cannot open {self.describe()}: {one_line(exc)}"
                continue
            try:
                msg = bus.recv(timeout=self._receive_timeout)
            except (can.CanError, OSError, ValueError) as exc:
                self.stats.rx_failures += 1
                self._fail(f"receive failed on {self.describe()}: {one_line(exc)}")
                continue
            if msg is None:
                continue
            now = time.monotonic()
            self.stats.rx_frames += 1
            frame = CanFrame(
                msg.arbitration_id,
                bytes(msg.data),
                float(msg.timestamp or 0.0),
                bool(msg.is_extended_id),
                bool(msg.is_remote_frame),
                bool(msg.is_error_frame),
            )
            if frame.is_error_frame and frame.arbitration_id & CAN_ERR_BUSOFF:
                self.stats.bus_off_events += 1
                self._mark_down(f"bus-off reported on {self.describe()}")
            elif not self.up:
                self._mark_up()
            try:
                self._on_frame(frame, now)
            except Exception:  # a bug in the consumer must not kill the receive thread
                self.stats.handler_errors += 1
                log.exception("frame handler failed for %s", frame)

    # --- helpers --------------------------------------------------------------------------------

    def _open_bus(self) -> None:
        kwargs: dict[str, Any] = {
            "interface": self.config.interface,
            "channel": self.config.channel,
        }
        if self.config.bitrate:
            kwargs["bitrate"] = self.config.bitrate
        if self._filters:
            kwargs["can_filters"] = self._filters
        try:
            bus = self._bus_factory(**kwargs)
        except can.CanInterfaceNotImplementedError as exc:
            raise LinkConfigError(
                f"CAN interface {self.config.interface!r} is not available: {one_line(exc)}"
            ) from None
        with self._send_lock:
            self._bus = bus
            self._consecutive_send_failures = 0
        self._mark_up()

    def _fail(self, reason: str) -> None:
        with self._send_lock:
            self._shutdown_bus()
        self._mark_down(reason)

    def _shutdown_bus(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            try:
                bus.shutdown()
            except Exception as exc:  # a broken driver must not prevent the reconnect
                log.debug("bus shutdown failed: %s", exc)

    def _mark_up(self) -> None:
        if not self.up:
            self.up = True
            self._down_reported = False
            log.info("CAN link %s up", self.describe())
            self._on_link(True, f"{self.describe()} up")

    def _mark_down(self, reason: str) -> None:
        self.last_error = reason
        if self.up or not self._down_reported:
            self.up = False
            self._down_reported = True
            log.error("CAN link down: %s", reason)
            self._on_link(False, reason)


def open_bus(**kwargs: Any) -> can.BusABC:
    """``can.Bus`` plus our ``loopback`` interface (TCP on 127.0.0.1, see loopback.py)."""
    if kwargs.get("interface") == "loopback":
        from evse_can_ros.transport.loopback import LoopbackBus

        kwargs.pop("interface")
        try:
            return LoopbackBus(**kwargs)
        except ValueError as exc:
            raise LinkConfigError(str(exc)) from None
    return can.Bus(**kwargs)
