"""``converter_backend: infypower``: InfyPower REG/CEG modules on their own CAN bus.

The worked example of a hardware backend (README, "How to write a converter backend"). It is
thin on purpose: the decisions live in the pure :class:`~.supervisor.ModuleSupervisor`; this
class moves frames between it and the bus and honours the base-class contract:

* **Bus**: a second python-can bus (``infypower.can_interface`` / ``can_channel``, 125 kbit/s),
  not the controller's, through :class:`~evse_can_ros.transport.CanLink` (receive thread,
  reconnect, a receive filter on our address). The receive thread only queues frames; they are
  handed to the supervisor at the next call, with that call's ``now``: every decision is made on
  the caller's clock (contract: time is an argument).
* **Keep-alive**: the supervisor's reads are sent from :meth:`read` / :meth:`apply`, i.e. from
  the control loop. If the loop stops calling, the reads stop and the modules' own 10 s cut-off
  switches them off: a second, hardware watchdog behind the base class's output watchdog
  thread (which is much faster and stays in force: ``HARDWARE_WATCHDOG = False``).
* **stop()** (any thread, never raises): off to every module that may be on, at once. Frames
  that could raise the output (0x1C, 0x1A on) computed before a stop are dropped if the stop
  came first (a stop epoch checked under the send lock), so an off is never overtaken by an
  earlier on. The stop is confirmed later by measurement (status B6.0 and current), or the
  measurement reports a fault.
* Exceptions of the supervisor (no module answers, impossible reading) become
  :class:`~evse_can_ros.converter.base.ConverterFault` in the base class, output off.

``transport`` is the seam for tests: any object with ``open(on_frame)``, ``send(frame)``,
``close()`` and ``describe()`` (:class:`~.sim.EmulatorLink` connects the backend to the module
emulator on a simulated clock).
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol

from evse_can_ros.config import from_mapping
from evse_can_ros.converter.base import Capabilities, ConverterBackend, Measurement, Setpoint
from evse_can_ros.converter.infypower.params import InfyPowerParams
from evse_can_ros.converter.infypower.protocol import Command, InfyId, decode_on_off
from evse_can_ros.converter.infypower.supervisor import ModuleSupervisor
from evse_can_ros.protocol.frame import CanFrame
from evse_can_ros.transport import CanLink, LinkConfig

log = logging.getLogger(__name__)


class ModuleTransport(Protocol):
    """How the backend reaches the module bus (the seam for tests)."""

    def open(self, on_frame: Callable[[CanFrame, float], None]) -> None:
        """Connect; call ``on_frame(frame, receive_time)`` for every received frame."""

    def send(self, frame: CanFrame) -> bool:
        """Send one frame (thread-safe); False if it could not be sent. Never raises."""

    def close(self) -> None:
        """Disconnect (idempotent)."""

    def describe(self) -> str:
        """Return a short name for logs."""


class CanBusTransport:
    """The modules' python-can bus through :class:`~evse_can_ros.transport.CanLink`."""

    def __init__(self, params: InfyPowerParams) -> None:
        self.config = LinkConfig(
            interface=params.can_interface,
            channel=params.can_channel,
            bitrate=params.can_bitrate,
        )
        # only frames addressed to us (replies); this also drops the modules' internal traffic
        self.filters = [
            {"can_id": params.controller_address << 8, "can_mask": 0xFF00, "extended": True}
        ]
        self.link: CanLink | None = None

    def open(self, on_frame: Callable[[CanFrame, float], None]) -> None:
        """Open the bus (LinkConfigError for an unknown interface) and start receiving."""
        self.link = CanLink(self.config, on_frame, self._on_link, filters=self.filters)
        self.link.open()
        self.link.start()

    def send(self, frame: CanFrame) -> bool:
        """Send one frame; False if the bus is down."""
        link = self.link
        return link.send(frame) if link is not None else False

    def close(self) -> None:
        """Stop receiving and release the bus."""
        link, self.link = self.link, None
        if link is not None:
            link.close()

    def describe(self) -> str:
        """Return ``interface:channel``."""
        return f"{self.config.interface}:{self.config.channel}"

    def _on_link(self, up: bool, reason: str) -> None:
        if up:
            log.info("InfyPower module bus %s", reason)
        else:
            log.error("InfyPower module bus down: %s", reason)


def _may_raise_output(frame: CanFrame) -> bool:
    ident = InfyId.decode(frame.arbitration_id)
    if ident.command == Command.SET_VI:
        return True
    return ident.command == Command.SET_ON_OFF and decode_on_off(frame.data)


class InfyPowerConverter(ConverterBackend):
    """See module docstring."""

    NAME: ClassVar[str] = "infypower"
    PARAMS: ClassVar[type | None] = InfyPowerParams
    HARDWARE_WATCHDOG: ClassVar[bool] = False  # the modules' 10 s cut-off is much slower

    def __init__(
        self,
        params: InfyPowerParams | None = None,
        setpoint_timeout: float = 0.25,
        *,
        watchdog_thread: bool = True,
        transport: ModuleTransport | None = None,
    ) -> None:
        super().__init__(setpoint_timeout, watchdog_thread=watchdog_thread)
        self.params = params or InfyPowerParams()
        self.supervisor = ModuleSupervisor(self.params)
        self.transport: ModuleTransport = transport or CanBusTransport(self.params)
        self.frames_received = 0  # queued by the receive thread (tests wait on this count)
        self.frames_sent = 0
        self.send_failures = 0
        self._rx: collections.deque[CanFrame] = collections.deque()
        self._sup_lock = threading.Lock()  # the supervisor (pure, quick calls only)
        self._tx_lock = threading.Lock()  # one frame at a time; orders stop against raises
        self._stop_epoch = 0

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any], setpoint_timeout: float = 0.25
    ) -> InfyPowerConverter:
        """Create from a mapping of :class:`InfyPowerParams` fields (ConfigError if bad)."""
        return cls(from_mapping(InfyPowerParams, params), setpoint_timeout)

    # --- ConverterBackend ----------------------------------------------------------------------

    def _open(self) -> None:
        self.transport.open(self._on_frame)
        p = self.params
        where = (
            f"modules {p.module_addresses}"
            if p.addressing == "fixed"
            else f"group {p.group_address}"
        )
        log.info(
            "InfyPower backend on %s: %s, controller address %#04x",
            self.transport.describe(),
            where,
            p.controller_address,
        )
        if p.insulation_monitor == "none":
            log.warning(
                "InfyPower modules measure no insulation: reporting 0 Ohm, so every insulation "
                "test fails (set infypower.insulation_monitor for an external monitor)"
            )

    def _close(self) -> None:
        self.transport.close()

    def _wake(self) -> None:
        with self._sup_lock:
            self.supervisor.wake()

    def _sleep(self) -> None:
        with self._sup_lock:
            self.supervisor.sleep()

    def _apply(self, setpoint: Setpoint, now: float) -> None:
        self._exchange(now, lambda: self.supervisor.command(setpoint, now))

    def _read(self, now: float) -> Measurement:
        self._exchange(now, lambda: self.supervisor.step(now))
        with self._sup_lock:
            return self.supervisor.measurement(now)

    def _capabilities(self, now: float) -> Capabilities:
        with self._sup_lock:
            return self.supervisor.capabilities()

    def _stop(self) -> None:
        with self._sup_lock:
            self._stop_epoch += 1
            frames = self.supervisor.stop()
        for frame in frames:
            locked = self._tx_lock.acquire(timeout=0.05)  # a stuck send must not stop us
            try:
                self._transmit(frame)
            finally:
                if locked:
                    self._tx_lock.release()

    # --- frames --------------------------------------------------------------------------------

    def _on_frame(self, frame: CanFrame, now: float) -> None:
        self._rx.append(frame)  # receive thread: queue only, decisions at the next call
        self.frames_received += 1

    def _exchange(self, now: float, produce: Callable[[], list[CanFrame]]) -> None:
        with self._sup_lock:
            while self._rx:
                self.supervisor.on_frame(self._rx.popleft(), now)
            frames = produce()
            epoch = self._stop_epoch
        for frame in frames:
            with self._tx_lock:
                if _may_raise_output(frame):
                    with self._sup_lock:
                        if self._stop_epoch != epoch:
                            continue  # a stop came in between: never overtake it
                self._transmit(frame)

    def _transmit(self, frame: CanFrame) -> None:
        if self.transport.send(frame):
            self.frames_sent += 1
        else:
            self.send_failures += 1
