"""A simulated DC/DC converter: the default backend, and the fake used by every test.

Plant model (integrated in sub-steps of at most 5 ms between two calls, time passed in):

* **Modules**: asleep until :meth:`~ConverterBackend.wake`; ready ``wake_time`` later.
* **Setpoints** take effect after ``dead_time``; OFF (and :meth:`stop`) acts at once (safety).
* **Output, battery disconnected** (cable capacitance ``output_capacitance``, the passive
  bleed resistor and the insulation resistance as load): in REGULATE the voltage reference
  ramps at ``voltage_slope`` towards the setpoint and the converter delivers the current the
  capacitance needs, limited by the current limit (precharge: current <= Maximum_Current).
  DISCHARGE switches the active bleeder (``bleed_resistance``) on while the output is above the
  setpoint voltage. OFF leaves only the passive bleed.
* **Output, battery connected** (``inlet.battery_connected``): the output voltage is the battery
  terminal voltage ``OCV(SoC) + I * R``. REGULATE delivers ``min(current_limit, (V_set - OCV) /
  R)`` (never negative: output diode), rising at ``current_slope``, falling at once (the output
  never exceeds the voltage setpoint by more than the ramp allows, never the current limit).
  The converter never integrates the SoC: the vehicle model does (energy is counted once).
* **Import** (bidirectional, v3): with ``max_discharge_current`` > 0 a REGULATE setpoint with a
  negative current limit takes ``|limit|`` from the battery (a negative measured current), never
  pulling the terminal voltage below the setpoint voltage (the floor), ramping like a charge
  current. Without a battery it pulls the output capacitance down to the floor. The default
  converter is unidirectional (0 A): a negative setpoint is clamped to 0 A.
* **Temperatures**: losses ``P * (1 - efficiency) / efficiency`` heat the modules through
  ``thermal_resistance`` with ``thermal_time_constant``; the enclosure follows at a quarter of
  the rise. **Derating**: current and power capabilities fall linearly from 100 % at
  ``derating_start`` to 0 at ``derating_end``, where the modules trip (over-temperature fault).
* **Insulation**: the monitor reports ``insulation_resistance`` (Ohm), or
  ``insulation_fault_resistance`` while ``insulation_fault`` is injected.

* **The modules' own watchdog** (``HARDWARE_WATCHDOG``): on the plant clock, the output switches
  off when no setpoint has arrived for ``setpoint_timeout`` while it is on, as real modules do when
  their controller goes silent. :meth:`SimulatedConverter.advance` moves the plant without a
  command (a test whose driver has died).

Fault injection (parameters, also at run time through :meth:`SimulatedConverter.inject`):

* ``insulation_fault``: the insulation monitor reads ``insulation_fault_resistance``;
* ``over_temperature``: module temperature + ``over_temperature_rise`` (derating, then trip);
* ``communication_loss``: every call except ``stop`` raises (the base class turns that into
  ``ConverterFault``); the modules' own watchdog turns the output off;
* ``module_trip``: the modules trip: output off, not ready, ``fault = "module trip"``;
* ``measurement_nan``: the voltage sensor reads NaN (the base class's sanity check faults).

Slopes of 0 mean instantaneous (benchmarks).
"""

from __future__ import annotations

import collections
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from evse_can_ros.config import ConfigError, check, from_mapping, param
from evse_can_ros.converter.base import (
    OFF,
    Capabilities,
    ConverterBackend,
    Measurement,
    Mode,
    Setpoint,
)
from evse_can_ros.core.battery import VehicleInlet

log = logging.getLogger(__name__)

FAULTS: tuple[str, ...] = (
    "insulation_fault",
    "over_temperature",
    "communication_loss",
    "module_trip",
    "measurement_nan",
)
"""Names of the injectable faults (also the boolean parameters of the same name)."""

_MAX_SUBSTEP = 0.005  # s


@dataclass(frozen=True)
class SimulatedConverterParams:
    """Parameters of the simulated converter (ROS parameters ``simulated.<name>``)."""

    min_voltage: float = param(
        50.0, "lowest regulable output voltage", unit="V", min=0.0, max=1500.0
    )
    max_voltage: float = param(1000.0, "highest output voltage", unit="V", min=1.0, max=1500.0)
    max_current: float = param(200.0, "highest output current", unit="A", min=0.1, max=3000.0)
    max_power: float = param(150000.0, "highest output power", unit="W", min=100.0, max=1e7)
    max_discharge_current: float = param(
        0.0,
        "highest current taken from the vehicle (bidirectional, v3; 0 = unidirectional)",
        unit="A",
        min=0.0,
        max=3000.0,
    )
    max_discharge_power: float = param(
        0.0, "highest power taken from the vehicle (0 = unidirectional)", unit="W", min=0, max=1e7
    )
    voltage_slope: float = param(
        2000.0, "output voltage slew rate (0 = instantaneous)", unit="V/s", min=0.0, max=1e9
    )
    current_slope: float = param(
        1000.0, "output current rise rate (0 = instantaneous)", unit="A/s", min=0.0, max=1e9
    )
    dead_time: float = param(
        0.01, "delay from a setpoint to its effect (OFF acts at once)", unit="s", min=0.0, max=1.0
    )
    wake_time: float = param(0.5, "time from wake request to ready", unit="s", min=0.0, max=60.0)
    output_capacitance: float = param(
        1e-3, "output + cable capacitance", unit="F", min=1e-7, max=1.0
    )
    bleed_resistance: float = param(
        100.0, "active discharge resistor (DISCHARGE mode)", unit="Ohm", min=0.1, max=1e6
    )
    passive_bleed_resistance: float = param(
        1000.0, "permanent discharge resistor across the output", unit="Ohm", min=1.0, max=1e12
    )
    insulation_resistance: float = param(
        5e6, "healthy insulation resistance", unit="Ohm", min=1.0, max=1e12
    )
    insulation_fault_resistance: float = param(
        40e3,
        "insulation resistance while insulation_fault is injected",
        unit="Ohm",
        min=0.0,
        max=1e12,
    )
    ambient_temperature: float = param(25.0, "ambient temperature", unit="degC", min=-40, max=80)
    efficiency: float = param(0.96, "conversion efficiency", min=0.5, max=1.0)
    thermal_resistance: float = param(
        0.006, "module to ambient thermal resistance", unit="K/W", min=0.0, max=1.0
    )
    thermal_time_constant: float = param(
        120.0, "module thermal time constant", unit="s", min=0.001, max=1e5
    )
    derating_start: float = param(
        70.0, "module temperature where derating starts", unit="degC", min=-40.0, max=215.0
    )
    derating_end: float = param(
        90.0, "module temperature of zero capability (trip)", unit="degC", min=-40.0, max=215.0
    )
    over_temperature_rise: float = param(
        80.0, "temperature rise added by over_temperature", unit="K", min=0.0, max=250.0
    )
    insulation_fault: bool = param(False, "fault injection: insulation fault")
    over_temperature: bool = param(False, "fault injection: module over-temperature")
    communication_loss: bool = param(False, "fault injection: no answer from the modules")
    module_trip: bool = param(False, "fault injection: power modules tripped")
    measurement_nan: bool = param(False, "fault injection: the voltage measurement reads NaN")

    def __post_init__(self) -> None:
        check(self)
        if self.min_voltage >= self.max_voltage:
            raise ConfigError(
                f"SimulatedConverterParams: min_voltage {self.min_voltage} V must be below "
                f"max_voltage {self.max_voltage} V"
            )
        if self.derating_start >= self.derating_end:
            raise ConfigError(
                f"SimulatedConverterParams: derating_start {self.derating_start} degC must be "
                f"below derating_end {self.derating_end} degC"
            )


class SimulatedCommunicationError(RuntimeError):
    """Raised by the simulated converter while communication_loss is injected."""


class SimulatedConverter(ConverterBackend):
    """See module docstring."""

    NAME: ClassVar[str] = "simulated"
    PARAMS: ClassVar[type | None] = SimulatedConverterParams
    RUNTIME_PARAMS: ClassVar[tuple[str, ...]] = FAULTS
    HARDWARE_WATCHDOG: ClassVar[bool] = True

    def __init__(
        self,
        params: SimulatedConverterParams | None = None,
        inlet: VehicleInlet | None = None,
        setpoint_timeout: float = 0.25,
        *,
        watchdog_thread: bool = True,
    ) -> None:
        super().__init__(setpoint_timeout, watchdog_thread=watchdog_thread)
        self.params = params or SimulatedConverterParams()
        # Without a shared inlet (the vehicle simulator runs in another process) the converter
        # keeps its own battery and models the vehicle's contactors from the controller state
        # (follow_controller_state).
        self.owns_inlet = inlet is None
        self.inlet = inlet if inlet is not None else VehicleInlet(plugged_in=True)
        self._last_command: float | None = None  # plant time of the last _apply
        p = self.params
        self.faults: dict[str, bool] = {name: bool(getattr(p, name)) for name in FAULTS}
        self._t: float | None = None
        self._voltage = 0.0
        self._current = 0.0
        self._v_ref = 0.0
        self._module_temp = p.ambient_temperature
        self._enclosure_temp = p.ambient_temperature
        self._awake = False
        self._wake_pending = False
        self._ready_at: float | None = None
        self._active: Setpoint = OFF
        self._pending: collections.deque[tuple[float, Setpoint]] = collections.deque()

    def follow_controller_state(self, state: int) -> None:
        """Own inlet only: the vehicle's contactors are closed in states 6-8 (spec 9.6-9.9).

        Waiting_For_Charge, Charging and Ending_Charge; open otherwise (insulation test and
        precharge see only the cable, welding detection and unlocking a battery-free output).
        """
        if self.owns_inlet:
            self.inlet.contactors_closed = state in (6, 7, 8)

    def follow_ev_voltage(self, voltage: float) -> None:
        """Own inlet only: the battery sits at the voltage the controller reports for the EV.

        The precharge target is the vehicle's battery voltage (spec 9.6 step 20), so standby after
        precharge holds that voltage and the contactors close without a jump.
        """
        if self.owns_inlet and voltage > 0 and not self.inlet.battery_connected:
            self.inlet.battery.set_ocv(voltage)

    def connect_inlet(self, inlet: VehicleInlet) -> None:
        """Share the vehicle's inlet (battery, contactors) with a vehicle simulator in-process."""
        self.inlet = inlet
        self.owns_inlet = False

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any], setpoint_timeout: float = 0.25
    ) -> SimulatedConverter:
        """Create from a mapping of :class:`SimulatedConverterParams` fields."""
        return cls(from_mapping(SimulatedConverterParams, params), None, setpoint_timeout)

    def advance(self, now: float) -> None:
        """Move the plant to ``now`` without a command (physics only)."""
        self._advance(now)

    def output(self) -> tuple[float, float]:
        """Return the true output voltage [V] and current [A] to the vehicle (test oracle)."""
        connected = self.inlet.battery_connected
        current = self._battery_current() if connected else self._current
        return self._voltage, current

    # --- fault injection ---------------------------------------------------------------------

    def inject(self, fault: str, on: bool = True) -> None:
        """Switch an injected fault (one of :data:`FAULTS`) on or off."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")
        if self.faults[fault] != on:
            log.warning("simulated converter: %s %s", fault, "injected" if on else "cleared")
        self.faults[fault] = on
        if on and fault in ("module_trip", "communication_loss"):
            self._active = OFF
            self._pending.clear()
            self._current = 0.0

    # --- model state (for tests and plots) ---------------------------------------------------

    @property
    def module_temperature(self) -> float:
        """Reported module temperature [degC] (including an injected over-temperature)."""
        rise = self.params.over_temperature_rise if self.faults["over_temperature"] else 0.0
        return self._module_temp + rise

    @property
    def ready(self) -> bool:
        """Modules awake, not tripped, not over temperature."""
        return (
            self._awake
            and self._ready_at is not None
            and (self._t is not None and self._t >= self._ready_at)
            and not self.faults["module_trip"]
            and self.module_temperature < self.params.derating_end
        )

    # --- ConverterBackend --------------------------------------------------------------------

    def _open(self) -> None:
        log.info("simulated converter open (%s)", self.params)

    def _close(self) -> None:
        self._awake = False

    def _wake(self) -> None:
        self._check_comm()
        if not self._awake:
            self._awake = True
            self._wake_pending = True

    def _sleep(self) -> None:
        self._check_comm()
        self._awake = False
        self._ready_at = None

    def _apply(self, setpoint: Setpoint, now: float) -> None:
        self._advance(now)  # the physics go on whether or not the modules answer
        self._check_comm()
        self._last_command = now
        self._pending.append((now + self.params.dead_time, setpoint))
        self._advance(now)

    def _stop(self) -> None:
        self._active = OFF
        self._pending.clear()
        self._current = 0.0
        if self.inlet.battery_connected:  # the terminal voltage without current, at once
            self._voltage = self._v_ref = self.inlet.battery.ocv()

    def _read(self, now: float) -> Measurement:
        self._advance(now)
        self._check_comm()
        p = self.params
        fault = ""
        if self.faults["module_trip"]:
            fault = "module trip"
        elif self.module_temperature >= p.derating_end:
            fault = f"over-temperature ({self.module_temperature:.0f} degC)"
        return Measurement(
            voltage=math.nan if self.faults["measurement_nan"] else self._voltage,
            current=self._current if not self.inlet.battery_connected else self._battery_current(),
            module_temperature=self.module_temperature,
            enclosure_temperature=self._enclosure_temp,
            insulation_resistance_ohm=self._insulation(),
            output_enabled=self._active.mode is Mode.REGULATE and self.ready,
            ready=self.ready,
            fault=fault,
        )

    def _capabilities(self, now: float) -> Capabilities:
        self._check_comm()
        p = self.params
        k = self._derating()
        return Capabilities(
            p.min_voltage,
            p.max_voltage,
            p.max_current * k,
            p.max_power * k,
            p.max_discharge_current * k,
            p.max_discharge_power * k,
        )

    # --- model -------------------------------------------------------------------------------

    def _check_comm(self) -> None:
        if self.faults["communication_loss"]:
            raise SimulatedCommunicationError("no answer from the power modules (simulated)")

    def _insulation(self) -> float:
        p = self.params
        return (
            p.insulation_fault_resistance
            if self.faults["insulation_fault"]
            else (p.insulation_resistance)
        )

    def _derating(self) -> float:
        p = self.params
        t = self.module_temperature
        if t <= p.derating_start:
            return 1.0
        if t >= p.derating_end:
            return 0.0
        return (p.derating_end - t) / (p.derating_end - p.derating_start)

    def _battery_target(self, sp: Setpoint, ocv: float, r: float) -> float:
        """Return the current [A, signed] driven into the battery for ``sp`` (no ramp)."""
        p, k = self.params, self._derating()
        v = max(self._voltage, 1.0)
        if sp.current_limit >= 0:
            limit = min(sp.current_limit, p.max_current * k, p.max_power * k / v)
            return max(0.0, min(limit, (sp.voltage - ocv) / r))
        limit = min(-sp.current_limit, p.max_discharge_current * k, p.max_discharge_power * k / v)
        return -max(0.0, min(limit, (ocv - sp.voltage) / r))  # the floor: V >= sp.voltage

    def _battery_current(self) -> float:
        # measured current towards the vehicle; the bleeder draws from the battery in DISCHARGE
        if self._active.mode is Mode.DISCHARGE:
            return self._current - self._voltage / self.params.bleed_resistance
        return self._current

    def _advance(self, now: float) -> None:
        if self._t is None:
            self._t = now
        if self._wake_pending:
            self._wake_pending = False
            self._ready_at = self._t + self.params.wake_time
        t = self._t
        while t < now:
            h = min(_MAX_SUBSTEP, now - t)
            t += h
            while self._pending and self._pending[0][0] <= t:
                self._activate(self._pending.popleft()[1])
            self._t = t
            self._hardware_watchdog(t)
            self._step(h)
        while self._pending and self._pending[0][0] <= now:
            self._activate(self._pending.popleft()[1])
        self._t = max(self._t, now)

    def _hardware_watchdog(self, t: float) -> None:
        last = self._last_command
        if (
            self._active.mode is not Mode.OFF
            and last is not None
            and t - last > self.setpoint_timeout
        ):
            log.error(
                "simulated modules: no command for %.3f s: output off (own watchdog)", t - last
            )
            self._active = OFF
            self._pending.clear()
            self._current = 0.0

    def _activate(self, sp: Setpoint) -> None:
        if sp.mode is Mode.REGULATE and self._active.mode is not Mode.REGULATE:
            self._v_ref = self._voltage  # ramp from where the output is
        self._active = sp

    def _step(self, h: float) -> None:
        p = self.params
        sp = self._active
        caps_current = p.max_current * self._derating()
        regulating = sp.mode is Mode.REGULATE and self.ready
        inlet = self.inlet
        if inlet.battery_connected:
            battery = inlet.battery
            r = battery.params.internal_resistance
            ocv = battery.ocv()
            if regulating:
                target = self._battery_target(sp, ocv, r)
                if abs(target) < abs(self._current) or target * self._current < 0:
                    self._current = target if target * self._current >= 0 else 0.0
                elif p.current_slope == 0:
                    self._current = target
                else:
                    self._current = _approach(self._current, target, p.current_slope * h)
            else:
                self._current = 0.0
            self._voltage = ocv + self._current * r
            self._v_ref = self._voltage
        else:
            c = p.output_capacitance
            leak_r = _parallel(p.passive_bleed_resistance, self._insulation())
            if regulating:
                if p.voltage_slope == 0:
                    self._v_ref = sp.voltage
                else:
                    self._v_ref = _approach(self._v_ref, sp.voltage, p.voltage_slope * h)
                leak = self._voltage / leak_r
                need = c * (self._v_ref - self._voltage) / h + leak
                if sp.current_limit < 0:  # import: pull the output down to the floor
                    self._current = min(0.0, max(need, sp.current_limit))
                else:
                    self._current = max(0.0, min(need, sp.current_limit, caps_current))
                self._voltage = max(0.0, self._voltage + (self._current - leak) * h / c)
            else:
                self._current = 0.0
                if sp.mode is Mode.DISCHARGE and self._voltage > sp.voltage:
                    leak_r = _parallel(leak_r, p.bleed_resistance)
                self._voltage *= math.exp(-h / (leak_r * c))
        # temperatures
        power = abs(self._voltage * self._current)
        losses = power * (1.0 - p.efficiency) / p.efficiency
        a = 1.0 - math.exp(-h / p.thermal_time_constant)
        target = p.ambient_temperature + losses * p.thermal_resistance
        self._module_temp += (target - self._module_temp) * a
        enclosure_target = p.ambient_temperature + 0.25 * (
            self._module_temp - p.ambient_temperature
        )
        self._enclosure_temp += (enclosure_target - self._enclosure_temp) * a / 2.0


def _approach(value: float, target: float, step: float) -> float:
    if value < target:
        return min(target, value + step)
    return max(target, value - step)


def _parallel(a: float, b: float) -> float:
    if a <= 0 or b <= 0:
        return max(0.0, min(a, b)) or 1e-9
    return a * b / (a + b)
