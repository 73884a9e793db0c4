"""The power stage as the cores see it: setpoints, measurements, capabilities, one port.

Pure data and a ``typing.Protocol``; no threads, no clock. The converter backends
(:mod:`evse_can_ros.converter`) implement :class:`PowerStage`; the control loop
(:mod:`evse_can_ros.core.power_module`) only talks to this port, so the dependency points one
way (core <- converter).

Measurement sanity lives here, in one place (:func:`implausible`): a backend's measurement that
is not finite or physically impossible is a converter fault, never a value sent to the controller.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from evse_can_ros.core.battery import VehicleInlet

VOLTAGE_NOISE = 10.0
"""V: a measured voltage below ``-VOLTAGE_NOISE`` is impossible (sensor or wiring fault)."""
CURRENT_NOISE = 10.0
"""A: tolerance of the current plausibility check on top of the relative margin."""
OVER_RANGE = 0.10
"""Relative margin above the rated capability before a measurement counts as impossible."""
TEMPERATURE_RANGE = (-60.0, 250.0)
"""degC: temperatures outside are sensor faults (the protocol carries -40..215)."""


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
    """A converter command: mode, voltage [V] and current [A].

    REGULATE with ``current_limit`` >= 0: constant voltage ``voltage`` with that current limit
    (CC/CV automatically, power to the vehicle). REGULATE with ``current_limit`` < 0 (a
    bidirectional stage only): take ``-current_limit`` from the vehicle (discharge, v3), never
    below ``voltage`` as a floor (0 = the stage's own minimum).
    """

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
    insulation_resistance_ohm: float  # Ohm (inf = good, pass/fail monitor)
    output_enabled: bool  # power conversion running
    ready: bool  # modules awake and able to deliver
    fault: str = ""  # "" = none; e.g. "module trip"


@dataclass(frozen=True)
class Capabilities:
    """Present (possibly derated) capabilities of the power stage.

    The discharge (import) capabilities are magnitudes; 0 = the stage cannot take power from
    the vehicle (every unidirectional stage).
    """

    min_voltage: float  # V, lowest regulable output voltage
    max_voltage: float  # V
    max_current: float  # A, to the vehicle
    max_power: float  # W, to the vehicle
    max_discharge_current: float = 0.0  # A, from the vehicle (magnitude)
    max_discharge_power: float = 0.0  # W, from the vehicle (magnitude)

    def current_limit_at(self, voltage: float) -> float:
        """Largest current to the vehicle allowed at ``voltage`` (current and power limits)."""
        v = max(voltage, self.min_voltage, 1.0)
        return max(0.0, min(self.max_current, self.max_power / v))

    def discharge_limit_at(self, voltage: float) -> float:
        """Largest current from the vehicle allowed at ``voltage`` (a magnitude, >= 0)."""
        v = max(voltage, self.min_voltage, 1.0)
        return max(0.0, min(self.max_discharge_current, self.max_discharge_power / v))


NO_CAPABILITIES = Capabilities(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


class ConverterError(Exception):
    """Base of the converter errors (one-line messages)."""


class ConverterFault(ConverterError):  # noqa: N818 - name fixed by the interface
    """The backend failed (communication lost, hardware error, impossible measurement).

    The output has been commanded off before this is raised.
    """


class PowerStage(Protocol):
    """The calls the control loop makes (implemented by ``converter.base.ConverterBackend``).

    Every call except :meth:`stop` may raise :class:`ConverterFault`; :meth:`stop` never raises.
    """

    def read(self, now: float) -> Measurement:
        """Measure (validated: see :func:`implausible`)."""

    def capabilities(self, now: float) -> Capabilities:
        """Present (derated) capabilities."""

    def apply(self, setpoint: Setpoint, now: float) -> Setpoint:
        """Command ``setpoint`` (clamped); return what was applied."""

    def wake(self) -> None:
        """Start waking the modules."""

    def sleep(self) -> None:
        """Output off and let the modules sleep."""

    def stop(self) -> None:
        """Output off now; never raises."""


@runtime_checkable
class FaultInjection(Protocol):
    """A backend whose faults can be switched at run time (its ``RUNTIME_PARAMS``)."""

    def inject(self, fault: str, on: bool = True) -> None:
        """Switch fault ``fault`` on or off (ValueError for an unknown name)."""


@runtime_checkable
class FollowsControllerState(Protocol):
    """A simulated backend that models the vehicle from what the controller reports.

    Used when the vehicle simulator runs elsewhere (no shared inlet): the contactors from the
    controller state, the battery voltage from the voltage the controller reports for the EV.
    """

    def follow_controller_state(self, state: int) -> None:
        """Take the controller state (spec 8 value)."""

    def follow_ev_voltage(self, voltage: float) -> None:
        """Take the vehicle's battery voltage as the controller reports it (precharge target)."""


@runtime_checkable
class SharesVehicleInlet(Protocol):
    """A simulated backend that can share the vehicle's inlet with an in-process vehicle model."""

    def connect_inlet(self, inlet: VehicleInlet) -> None:
        """Use ``inlet`` (battery, contactors) instead of the backend's own."""


def clamp_setpoint(setpoint: Setpoint, caps: Capabilities) -> Setpoint:
    """Clamp a REGULATE setpoint to ``caps`` (below ``min_voltage``: OFF).

    A discharge (negative current) is clamped to the discharge capability (0 for a
    unidirectional stage: then it regulates at 0 A); its voltage is a floor, clamped into the
    stage's range.
    """
    if setpoint.mode is not Mode.REGULATE:
        return setpoint
    v = min(max(0.0, setpoint.voltage), caps.max_voltage)
    if not math.isfinite(v) or not math.isfinite(setpoint.current_limit):
        return OFF
    if setpoint.current_limit < 0:
        v = max(v, caps.min_voltage)
        return Setpoint(Mode.REGULATE, v, max(setpoint.current_limit, -caps.discharge_limit_at(v)))
    if v < caps.min_voltage or v <= 0.0:
        return OFF
    i = min(max(0.0, setpoint.current_limit), caps.current_limit_at(v))
    return Setpoint(Mode.REGULATE, v, i)


def implausible(m: Measurement, rated: Capabilities | None) -> str:
    """Return why ``m`` cannot be a real measurement ("" if it can).

    ``rated`` is the highest capability the backend has reported (not the derated one); without
    it only finiteness and signs are checked. NaN, infinities (except an infinite insulation
    resistance: "good" from a pass/fail monitor), a voltage below ``-VOLTAGE_NOISE``, a voltage or
    current above the rating by more than ``OVER_RANGE`` + noise, and temperatures outside
    ``TEMPERATURE_RANGE`` are impossible.
    """
    for name in ("voltage", "current", "module_temperature", "enclosure_temperature"):
        value = getattr(m, name)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{name} = {value!r} is not a finite number"
    r = m.insulation_resistance_ohm
    if not isinstance(r, (int, float)) or math.isnan(r) or r < 0:
        return f"insulation_resistance = {r!r} Ohm is not a resistance"
    if m.voltage < -VOLTAGE_NOISE:
        return f"voltage = {m.voltage:.1f} V is negative beyond noise ({-VOLTAGE_NOISE:g} V)"
    lo, hi = TEMPERATURE_RANGE
    for name in ("module_temperature", "enclosure_temperature"):
        value = getattr(m, name)
        if not lo <= value <= hi:
            return f"{name} = {value:.0f} degC is outside {lo:g}..{hi:g} degC"
    if rated is not None and rated.max_voltage > 0:
        v_max = rated.max_voltage * (1 + OVER_RANGE) + VOLTAGE_NOISE
        if m.voltage > v_max:
            return f"voltage = {m.voltage:.1f} V exceeds the rating ({rated.max_voltage:g} V)"
        i_max = rated.max_current * (1 + OVER_RANGE) + CURRENT_NOISE
        if m.current > i_max:
            return f"current = {m.current:.1f} A exceeds the rating ({rated.max_current:g} A)"
        i_min = -(rated.max_discharge_current * (1 + OVER_RANGE) + CURRENT_NOISE)
        if m.current < i_min:
            return (
                f"current = {m.current:.1f} A exceeds the discharge rating "
                f"({rated.max_discharge_current:g} A)"
            )
    return ""
