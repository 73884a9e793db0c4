"""The DC/DC converter backend interface: a small template-method base class.

A backend drives one set of power modules (simulated or real hardware). The sequencing logic
(:mod:`evse_can_ros.core.power_module`) never talks to hardware directly: it produces a
:class:`Setpoint` every control period and the node hands it to :meth:`ConverterBackend.apply`.

Public calls (what the node uses) do the shared checks; subclasses implement the ``_``-prefixed
hardware calls only (the python-can ``BusABC.recv`` / ``_recv_internal`` pattern):

=====================  ======================  ==============================================
public                 implemented by          shared behaviour of the base class
=====================  ======================  ==============================================
``open()``             ``_open()``             idempotent; errors become :class:`ConverterFault`
``close()``            ``_close()``            output off first (``stop()``), never raises
``wake()``/``sleep()`` ``_wake()``/``_sleep``  errors become :class:`ConverterFault`
``apply(sp, now)``     ``_apply(sp, now)``     clamps to :meth:`capabilities`, feeds watchdog
``read(now)``          ``_read(now)``          setpoint watchdog, fault reporting
``stop()``             ``_stop()``             output off immediately, never raises
``capabilities(now)``  ``_capabilities(now)``  sanity check of the returned values
=====================  ======================  ==============================================

Timing and safety contract (backends must honour it; the base class enforces what it can):

* Every call is made from one thread (the node's control loop) and must return QUICKLY
  (well under one control period, 20 ms by default): no blocking waits for slow ramps. A slow
  action (waking modules, ramping) is started by the call and observed through :meth:`read`.
* ``time`` is an argument (``now``, seconds, monotonic): a backend never reads the wall clock
  for its control decisions, so the simulated converter runs faster than real time in tests.
* :meth:`stop` must command the output off before it returns and must never raise: it is the
  emergency path (emergency stop, heartbeat loss, faults). A backend whose hardware cannot be
  reached must still do everything it can (e.g. drop an enable line) and swallow the error.
* :meth:`apply` never makes the output exceed :meth:`capabilities`: the base class clamps
  ``voltage`` into ``[0, max_voltage]``, ``current_limit`` into ``[0, max_current]`` and the
  current limit to ``max_power / voltage``. A REGULATE setpoint below ``min_voltage`` cannot be
  regulated: it is turned into OFF (never regulate *above* a requested voltage).
* **Setpoint watchdog**: if :meth:`apply` has not been called for ``setpoint_timeout`` seconds
  while the output is on, the next :meth:`read` turns the output off (``_stop``) and reports it
  in :attr:`Measurement.fault` until the next :meth:`apply`. A stalled control loop therefore
  cannot leave the output regulating to a stale request.
* Any exception raised by an implementation method becomes :class:`ConverterFault` (one line,
  naming the operation); the base class calls ``_stop`` on the way and keeps the message in
  :attr:`ConverterBackend.fault` until a later call succeeds. Hardware-reported faults that are
  not exceptions (module trip, over-temperature) come back in :attr:`Measurement.fault`.
* ``Measurement.current`` is positive towards the vehicle (spec A19); the insulation resistance
  is in Ohm (``math.inf`` = "good" from a pass/fail monitor, 0 = fault).
"""

from __future__ import annotations

import enum
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

log = logging.getLogger(__name__)


class Mode(enum.Enum):
    """What the converter output does."""

    OFF = "OFF"
    """No power conversion; the output is left as it is (no bleeding)."""
    REGULATE = "REGULATE"
    """Constant voltage ``voltage`` with current limit ``current_limit`` (CC/CV automatically)."""
    DISCHARGE = "DISCHARGE"
    """No conversion, active discharge (bleeder) of the output down to ``voltage``."""


@dataclass(frozen=True)
class Setpoint:
    """A converter command: mode, voltage [V] (target / ceiling) and current limit [A]."""

    mode: Mode = Mode.OFF
    voltage: float = 0.0
    current_limit: float = 0.0


OFF = Setpoint()
"""The output-off setpoint."""


@dataclass(frozen=True)
class Measurement:
    """What the converter measures (cable side of the output stage)."""

    voltage: float  # V
    current: float  # A, positive = delivered to the vehicle
    module_temperature: float  # degC, hottest power-module sensor
    enclosure_temperature: float  # degC
    insulation_resistance: float  # Ohm (inf = good, pass/fail monitor)
    output_enabled: bool  # power conversion running
    ready: bool  # modules awake and able to deliver
    fault: str = ""  # "" = none; e.g. "module trip"


@dataclass(frozen=True)
class Capabilities:
    """Present (possibly derated) capabilities of the power stage."""

    min_voltage: float  # V, lowest regulable output voltage
    max_voltage: float  # V
    max_current: float  # A
    max_power: float  # W

    def current_limit_at(self, voltage: float) -> float:
        """Largest current allowed at ``voltage`` (current and power limits)."""
        v = max(voltage, self.min_voltage, 1.0)
        return max(0.0, min(self.max_current, self.max_power / v))


class ConverterError(Exception):
    """Base of the converter errors (one-line messages)."""


class ConverterFault(ConverterError):  # noqa: N818 - name fixed by the interface
    """The backend failed (communication lost, hardware error); the output has been stopped."""


class ConverterBackend(ABC):
    """Template-method base: see the module docstring for the contract."""

    NAME: ClassVar[str] = "abstract"
    """Registry name of the backend."""
    PARAMS: ClassVar[type | None] = None
    """Declarative config dataclass (core.config) of the backend's parameters, or None."""
    RUNTIME_PARAMS: ClassVar[tuple[str, ...]] = ()
    """PARAMS fields that may change at run time (passed to ``inject(name, value)``)."""

    def __init__(self, setpoint_timeout: float = 0.5) -> None:
        if not setpoint_timeout > 0:
            raise ValueError(f"setpoint_timeout must be > 0 s, got {setpoint_timeout}")
        self.setpoint_timeout = setpoint_timeout
        self.is_open = False
        self.fault = ""  # last ConverterFault message, cleared by a successful read
        self.setpoint = OFF  # last setpoint applied (after clamping)
        self._last_apply: float | None = None
        self._watchdog_tripped = False

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any], inlet: Any = None, setpoint_timeout: float = 0.5
    ) -> ConverterBackend:
        """Create the backend from a parameter mapping (override for backends with PARAMS)."""
        if params:
            raise ValueError(f"backend {cls.NAME!r} takes no parameters, got {sorted(params)}")
        return cls(setpoint_timeout=setpoint_timeout)

    # --- public API --------------------------------------------------------------------------

    def open(self) -> None:
        """Connect to the hardware (idempotent). Raises ConverterFault."""
        if self.is_open:
            return
        self._call("open", self._open)
        self.is_open = True

    def close(self) -> None:
        """Stop the output and release the hardware (idempotent, never raises)."""
        if not self.is_open:
            return
        self.stop()
        try:
            self._close()
        except Exception as exc:
            log.warning("converter close failed: %s", _one_line(exc))
        self.is_open = False

    def wake(self) -> None:
        """Start waking the modules; readiness shows in ``read().ready``. Raises ConverterFault."""
        self._call("wake", self._wake)

    def sleep(self) -> None:
        """Stop the output and let the modules sleep. Raises ConverterFault."""
        self.stop()
        self._call("sleep", self._sleep)

    def apply(self, setpoint: Setpoint, now: float) -> Setpoint:
        """Clamp ``setpoint`` to the capabilities and command it; return what was applied."""
        self._last_apply = now
        self._watchdog_tripped = False
        if setpoint.mode is Mode.REGULATE:
            caps = self.capabilities(now)
            setpoint = clamp_setpoint(setpoint, caps)
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
        return setpoint

    def read(self, now: float) -> Measurement:
        """Measure; enforce the setpoint watchdog. Raises ConverterFault."""
        if (
            self.setpoint.mode is not Mode.OFF
            and self._last_apply is not None
            and now - self._last_apply > self.setpoint_timeout
        ):
            log.error(
                "no setpoint for %.3f s (timeout %.3f s): output off",
                now - self._last_apply,
                self.setpoint_timeout,
            )
            self.stop()
            self._watchdog_tripped = True
        m: Measurement = self._call("read", self._read, now)
        self.fault = ""
        if self._watchdog_tripped and not m.fault:
            m = replace(m, fault=f"setpoint watchdog: no setpoint for {self.setpoint_timeout:g} s")
        return m

    def stop(self) -> None:
        """Output off immediately. Never raises (the emergency path)."""
        self.setpoint = OFF
        try:
            self._stop()
        except Exception as exc:
            self.fault = f"stop failed: {_one_line(exc)}"
            log.error("converter stop failed: %s", _one_line(exc))

    def capabilities(self, now: float) -> Capabilities:
        """Present capabilities (derated). Raises ConverterFault."""
        caps: Capabilities = self._call("capabilities", self._capabilities, now)
        values = (caps.min_voltage, caps.max_voltage, caps.max_current, caps.max_power)
        if not all(math.isfinite(v) and v >= 0 for v in values):
            self._fail("capabilities", ValueError(f"invalid capabilities {caps}"))
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
        """Output off now (may raise; the base class logs and swallows)."""

    @abstractmethod
    def _capabilities(self, now: float) -> Capabilities:
        """Return the present capabilities."""

    # --- helpers -----------------------------------------------------------------------------

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except ConverterFault as exc:
            self._fail(what, exc)
        except Exception as exc:
            self._fail(what, exc)

    def _fail(self, what: str, exc: BaseException) -> None:
        text = f"converter {what} failed: {_one_line(exc)}"
        self.fault = text
        self.stop()
        self.fault = text
        raise ConverterFault(text) from exc


def clamp_setpoint(setpoint: Setpoint, caps: Capabilities) -> Setpoint:
    """Clamp a REGULATE setpoint to ``caps`` (below ``min_voltage``: OFF)."""
    if setpoint.mode is not Mode.REGULATE:
        return setpoint
    v = min(max(0.0, setpoint.voltage), caps.max_voltage)
    if not math.isfinite(v) or v < caps.min_voltage or v <= 0.0:
        return OFF
    i = min(max(0.0, setpoint.current_limit), caps.current_limit_at(v))
    if not math.isfinite(i):
        return OFF
    return Setpoint(Mode.REGULATE, v, i)


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
