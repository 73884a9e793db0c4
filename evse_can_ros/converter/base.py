"""The DC/DC converter backend interface: a small template-method base class.

A backend drives one set of power modules (simulated or real hardware). The sequencing logic
(:mod:`evse_can_ros.core.power_module`) never talks to hardware directly: it produces a
:class:`Setpoint` every control period and the control loop hands it to
:meth:`ConverterBackend.apply`. The data types and the port the core uses
(:class:`~evse_can_ros.core.power_stage.PowerStage`) live in :mod:`evse_can_ros.core.power_stage`
and are re-exported here.

Public calls (what the node uses) do the shared checks; subclasses implement the ``_``-prefixed
hardware calls only (the python-can ``BusABC.recv`` / ``_recv_internal`` pattern):

=====================  ======================  ==============================================
public                 implemented by          shared behaviour of the base class
=====================  ======================  ==============================================
``open()``             ``_open()``             idempotent; starts the output watchdog thread
``close()``            ``_close()``            output off first (``stop()``), never raises
``wake()``/``sleep()`` ``_wake()``/``_sleep``  errors become :class:`ConverterFault`
``apply(sp, now)``     ``_apply(sp, now)``     clamps to :meth:`capabilities`, feeds watchdog
``read(now)``          ``_read(now)``          measurement sanity, watchdog, fault reporting
``stop()``             ``_stop()``             output off immediately, never raises
``capabilities(now)``  ``_capabilities(now)``  sanity check of the returned values
=====================  ======================  ==============================================

Timing and safety contract (backends must honour it; the base class enforces what it can):

* Calls are serialised by a lock in the base class and must return QUICKLY (well under one
  control period, 20 ms by default): no blocking waits for slow ramps. A slow action (waking
  modules, ramping) is started by the call and observed through :meth:`read`.
* ``time`` is an argument (``now``, seconds, monotonic): a backend never reads the wall clock
  for its control decisions, so the simulated converter runs faster than real time in tests.
* :meth:`stop` must command the output off before it returns and must never raise: it is the
  emergency path (emergency stop, heartbeat loss, faults, watchdog, shutdown). ``_stop`` may be
  called **from any thread at any time**, also while another call is in progress (it does not
  take the lock when the lock is busy), so it must be thread-safe on its own (e.g. one frame on
  a thread-safe bus, or an enable line). A backend whose hardware cannot be reached must still
  do everything it can and swallow the error.
* :meth:`apply` never makes the output exceed :meth:`capabilities`: the base class clamps
  ``voltage`` into ``[0, max_voltage]``, ``current_limit`` into ``[0, max_current]`` and the
  current limit to ``max_power / voltage``. A REGULATE setpoint below ``min_voltage`` cannot be
  regulated: it is turned into OFF (never regulate *above* a requested voltage).
* **Output watchdog** (independent of the caller): :meth:`open` starts a thread that switches the
  output off (``stop()``) when no :meth:`apply` has arrived for ``setpoint_timeout`` seconds of
  wall-clock time while the output is on, even if the caller's thread or executor is blocked or
  dead. The same rule is also checked on the ``now`` clock in :meth:`read`. After a trip,
  :meth:`apply` keeps the output off until :meth:`read` has reported the trip in
  :attr:`Measurement.fault`, so the control loop latches it. A backend whose hardware has its
  own watchdog at least as fast may set ``HARDWARE_WATCHDOG = True``; the thread still runs.
* **Measurement sanity** (one place, :func:`~evse_can_ros.core.power_stage.implausible`): a
  measurement that is not finite or physically impossible for the rated capabilities makes
  :meth:`read` stop the output and raise :class:`ConverterFault`; no invented value reaches the
  controller.
* Any exception raised by an implementation method becomes :class:`ConverterFault` (one line,
  naming the operation); the base class calls ``_stop`` on the way and keeps the message in
  :attr:`ConverterBackend.fault` until a later call succeeds. Hardware-reported faults that are
  not exceptions (module trip, over-temperature) come back in :attr:`Measurement.fault`.
* ``Measurement.current`` is positive towards the vehicle (spec A19); the insulation resistance
  is in Ohm (``math.inf`` = "good" from a pass/fail monitor, 0 = fault).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, ClassVar

from evse_can_ros.core.power_stage import (
    NO_CAPABILITIES,
    OFF,
    Capabilities,
    ConverterError,
    ConverterFault,
    FaultInjection,
    FollowsControllerState,
    Measurement,
    Mode,
    Setpoint,
    SharesVehicleInlet,
    clamp_setpoint,
    implausible,
)
from evse_can_ros.text import one_line

__all__ = [
    "OFF",
    "Capabilities",
    "ConverterBackend",
    "ConverterError",
    "ConverterFault",
    "FaultInjection",
    "FollowsControllerState",
    "Measurement",
    "Mode",
    "OutputWatchdog",
    "Setpoint",
    "SharesVehicleInlet",
    "clamp_setpoint",
]

log = logging.getLogger(__name__)


class OutputWatchdog:
    """A thread that calls ``trip()`` when ``feed()`` has not been called for ``timeout`` s.

    Armed only while ``armed`` (the output is on); wall clock (``clock``, default
    ``time.monotonic``). It sleeps until the deadline, so it costs a few wake-ups per second at
    most, and none while disarmed.
    """

    def __init__(
        self,
        timeout: float,
        trip: Callable[[float], None],
        name: str = "output-watchdog",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self.trips = 0
        self._trip = trip
        self._clock = clock
        self._cond = threading.Condition()
        self._deadline: float | None = None  # None = disarmed
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def feed(self, armed: bool) -> None:
        """Take a setpoint: the output is now on (``armed``) or off."""
        with self._cond:
            was = self._deadline
            self._deadline = self._clock() + self.timeout if armed else None
            if was is None and armed:
                self._cond.notify()

    def close(self) -> None:
        """Stop the thread (idempotent)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                if self._deadline is None:
                    self._cond.wait()
                    continue
                late = self._clock() - self._deadline
                if late < 0:
                    self._cond.wait(-late)
                    continue
                self._deadline = None
                self.trips += 1
            try:
                self._trip(late + self.timeout)
            except Exception:  # the trip path must never kill the watchdog
                log.exception("output watchdog trip failed")


class ConverterBackend(ABC):
    """Template-method base: see the module docstring for the contract."""

    NAME: ClassVar[str] = "abstract"
    """Registry name of the backend."""
    PARAMS: ClassVar[type | None] = None
    """Declarative config dataclass (evse_can_ros.config) of the backend's parameters, or None."""
    RUNTIME_PARAMS: ClassVar[tuple[str, ...]] = ()
    """PARAMS fields that may change at run time (passed to ``inject(name, value)``)."""
    HARDWARE_WATCHDOG: ClassVar[bool] = False
    """The hardware switches its output off on its own when commands stop (documentation)."""

    def __init__(self, setpoint_timeout: float = 0.25, *, watchdog_thread: bool = True) -> None:
        if not (isinstance(setpoint_timeout, (int, float)) and setpoint_timeout > 0):
            raise ValueError(f"setpoint_timeout must be > 0 s, got {setpoint_timeout}")
        self.setpoint_timeout = float(setpoint_timeout)
        self.is_open = False
        self.fault = ""  # last ConverterFault message, cleared by a successful read
        self.setpoint = OFF  # last setpoint applied (after clamping)
        self.rated: Capabilities | None = None  # highest capabilities reported so far
        self._lock = threading.RLock()
        self._last_apply: float | None = None
        self._watchdog_tripped = ""  # trip reason, reported once by read()
        self._use_thread = watchdog_thread
        self.watchdog: OutputWatchdog | None = None

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any], setpoint_timeout: float = 0.25
    ) -> ConverterBackend:
        """Create the backend from a parameter mapping (override for backends with PARAMS)."""
        if params:
            raise ValueError(f"backend {cls.NAME!r} takes no parameters, got {sorted(params)}")
        return cls(setpoint_timeout=setpoint_timeout)

    # --- public API --------------------------------------------------------------------------

    def open(self) -> None:
        """Connect to the hardware (idempotent) and start the watchdog. Raises ConverterFault."""
        with self._lock:
            if self.is_open:
                return
            self._call("open", self._open)
            self.is_open = True
            if self._use_thread and self.watchdog is None:
                self.watchdog = OutputWatchdog(
                    self.setpoint_timeout, self._watchdog_trip, f"{self.NAME}-watchdog"
                )

    def close(self) -> None:
        """Stop the output and release the hardware (idempotent, never raises)."""
        self.stop()
        with self._lock:
            if self.watchdog is not None:
                self.watchdog.close()
                self.watchdog = None
            if not self.is_open:
                return
            try:
                self._close()
            except Exception as exc:
                log.warning("converter close failed: %s", one_line(exc))
            self.is_open = False

    def wake(self) -> None:
        """Start waking the modules; readiness shows in ``read().ready``. Raises ConverterFault."""
        with self._lock:
            self._call("wake", self._wake)

    def sleep(self) -> None:
        """Stop the output and let the modules sleep. Raises ConverterFault."""
        self.stop()
        with self._lock:
            self._call("sleep", self._sleep)

    def apply(self, setpoint: Setpoint, now: float) -> Setpoint:
        """Clamp ``setpoint`` to the capabilities and command it; return what was applied."""
        with self._lock:
            self._last_apply = now
            if self._watchdog_tripped:  # off until read() has reported the trip
                setpoint = OFF
            if setpoint.mode is Mode.REGULATE:
                setpoint = clamp_setpoint(setpoint, self.capabilities(now))
            elif setpoint.mode is Mode.DISCHARGE:
                setpoint = replace(setpoint, voltage=max(0.0, setpoint.voltage), current_limit=0.0)
            else:
                setpoint = OFF
            if setpoint.mode is Mode.OFF:
                self.stop()
                if self.fault.startswith("stop failed"):
                    raise ConverterFault(self.fault)
                return OFF
            self._call("apply", self._apply, setpoint, now)
            self.setpoint = setpoint
            if self.watchdog is not None:
                self.watchdog.feed(True)
            return setpoint

    def read(self, now: float) -> Measurement:
        """Measure; enforce the setpoint watchdog and measurement sanity. Raises ConverterFault."""
        with self._lock:
            if (
                self.setpoint.mode is not Mode.OFF
                and self._last_apply is not None
                and now - self._last_apply > self.setpoint_timeout
            ):
                self._watchdog_trip(now - self._last_apply)
            m: Measurement = self._call("read", self._read, now)
            reason = implausible(m, self.rated)
            if reason:
                self._fail("measurement", ValueError(f"implausible measurement: {reason}"))
            self.fault = ""
            tripped, self._watchdog_tripped = self._watchdog_tripped, ""
            if tripped and not m.fault:
                m = replace(m, fault=tripped)
            return m

    def stop(self) -> None:
        """Output off immediately. Never raises (the emergency path); any thread.

        Takes the lock if it is free within 5 ms; otherwise (another call is stuck) calls
        ``_stop`` anyway: the output must go off whatever the other thread is doing.
        """
        locked = self._lock.acquire(timeout=0.005)
        try:
            self.setpoint = OFF
            if self.watchdog is not None:
                self.watchdog.feed(False)
            try:
                self._stop()
            except Exception as exc:
                self.fault = f"stop failed: {one_line(exc)}"
                log.error("converter stop failed: %s", one_line(exc))
        finally:
            if locked:
                self._lock.release()

    def capabilities(self, now: float) -> Capabilities:
        """Present capabilities (derated). Raises ConverterFault."""
        with self._lock:
            caps: Capabilities = self._call("capabilities", self._capabilities, now)
            values = (
                caps.min_voltage,
                caps.max_voltage,
                caps.max_current,
                caps.max_power,
                caps.max_discharge_current,
                caps.max_discharge_power,
            )
            if (
                not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
                or min(values) < 0
            ):
                self._fail("capabilities", ValueError(f"invalid capabilities {caps}"))
            r = self.rated or NO_CAPABILITIES
            if (
                caps.max_voltage > r.max_voltage
                or caps.max_current > r.max_current
                or caps.max_discharge_current > r.max_discharge_current
            ):
                self.rated = Capabilities(
                    min(caps.min_voltage, r.min_voltage) if self.rated else caps.min_voltage,
                    max(caps.max_voltage, r.max_voltage),
                    max(caps.max_current, r.max_current),
                    max(caps.max_power, r.max_power),
                    max(caps.max_discharge_current, r.max_discharge_current),
                    max(caps.max_discharge_power, r.max_discharge_power),
                )
            return caps

    # --- implementation ----------------------------------------------------------------------

    @abstractmethod
    def _open(self) -> None:
        """Connect to the hardware."""

    @abstractmethod
    def _close(self) -> None:
        """Release the hardware (the output is already off)."""

    @abstractmethod
    def _wake(self) -> None:
        """Start waking the modules (return at once)."""

    @abstractmethod
    def _sleep(self) -> None:
        """Let the modules sleep (the output is already off)."""

    @abstractmethod
    def _apply(self, setpoint: Setpoint, now: float) -> None:
        """Command an already clamped setpoint (REGULATE or DISCHARGE)."""

    @abstractmethod
    def _read(self, now: float) -> Measurement:
        """Return the present measurements."""

    @abstractmethod
    def _stop(self) -> None:
        """Output off now; thread-safe (may raise; the base class logs and swallows)."""

    @abstractmethod
    def _capabilities(self, now: float) -> Capabilities:
        """Return the present capabilities."""

    # --- helpers -----------------------------------------------------------------------------

    def _watchdog_trip(self, silent_for: float) -> None:
        text = (
            f"setpoint watchdog: no setpoint for {silent_for:.3f} s "
            f"(setpoint_timeout {self.setpoint_timeout:g} s): output off"
        )
        self.stop()
        self._watchdog_tripped = text
        log.error("%s", text)

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:
            self._fail(what, exc)

    def _fail(self, what: str, exc: BaseException) -> None:
        text = f"converter {what} failed: {one_line(exc)}"
        self.stop()
        self.fault = text
        raise ConverterFault(text) from exc
