"""A simulated electric vehicle: what the charge controller's other side decides (spec 9).

The vehicle is the master of a charging session (spec 2): it plugs in, negotiates, permits the
insulation test, asks for precharge, closes and opens its contactors, requests current and ends
the charge. :class:`Vehicle` models those decisions as a pure object driven by the controller
emulator (:mod:`evse_can_ros.core.controller_sim`), which plays the charger side of the vehicle
protocol (CCS / CHAdeMO) and calls:

* :meth:`Vehicle.step` every cycle with the charger's *reported* output voltage and current
  (``Power_Modules_Status``): the vehicle integrates its battery from that current (times
  ``soc_time_scale``) and runs its own timers (negotiation, timeouts, welding detection, unplug);
* the "charger responses" :meth:`start_session`, :meth:`set_charger_limits`,
  :meth:`cable_check_passed`, :meth:`request_stop`, :meth:`abort`, :meth:`session_finished`;

and reads the vehicle's requests back: :attr:`phase`, :meth:`session_info`,
:meth:`precharge_request`, :meth:`charge_request`, :attr:`error`.

Physical plant: one :class:`~evse_can_ros.core.battery.VehicleInlet`. Given one (one-process
simulation with the simulated converter), the vehicle uses that shared battery and sets
``inlet.plugged_in`` / ``inlet.contactors_closed``; the converter model never integrates the SoC,
so energy is counted once, here.

Charging profile (:meth:`Vehicle.requested_current`): constant current (the vehicle's maximum,
derated linearly above ``taper_start_soc``, limited by its power limit and by the charger's
advertised limits) until the battery terminal voltage reaches ``cv_voltage``; then the current
that holds the terminal voltage there (constant voltage, computed from the battery model). The
charge ends at ``target_soc``, when the CV current falls below ``stop_current``, or on request.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from enum import Enum

from evse_can_ros.config import ConfigError, check, param
from evse_can_ros.core.battery import Battery, BatteryParams, VehicleInlet
from evse_can_ros.protocol import (
    ChargingLoop,
    CommunicationProtocol,
    NewChargeSession,
    PlugAndPins,
    Precharge,
)

log = logging.getLogger(__name__)

DC_PROTOCOLS: tuple[str, ...] = tuple(
    p.name for p in CommunicationProtocol if p is not CommunicationProtocol.CCS_PWM
)
"""Protocol names a DC vehicle may speak (CCS_PWM is AC-only, spec A17)."""

PLUG_CHOICES: tuple[str, ...] = ("auto", "CCS_DC_CORE", "CCS_DC_EXTENDED", "CHADEMO", "MCS")
PRECHARGE_WINDOW = 20.0
"""V: the vehicle closes its contactors when |inlet - battery| <= this (spec 9.6 step 22)."""
END_CURRENT_CCS = 1.0
"""A: a CCS vehicle opens its contactors below this current after a stop (spec 9.9 step 32)."""
END_CURRENT_CHADEMO = 5.0
"""A: the same for CHAdeMO (spec 9.9 step 32)."""


@dataclass(frozen=True)
class VehicleParams:
    """Everything that makes one simulated vehicle (ROS parameters of the emulator node)."""

    protocol: str = param(
        "CCS_ISO_15118_2013_V2",
        "communication protocol (CommunicationProtocol name; DB labels and enum members accepted)",
        choices=DC_PROTOCOLS,
    )
    plug: str = param(
        "auto", "plug and pins; auto = CHADEMO for CHAdeMO, else CCS_DC_CORE", choices=PLUG_CHOICES
    )
    capacity_kwh: float = param(60.0, "battery capacity", unit="kWh", min=1.0, max=510.0)
    initial_soc: float = param(20.0, "state of charge at creation", unit="%", min=0.0, max=100.0)
    ocv_min: float = param(317.0, "open-circuit voltage at 0 % SoC", unit="V", min=1.0, max=1500)
    ocv_max: float = param(
        403.0, "open-circuit voltage at 100 % SoC", unit="V", min=1.0, max=1500.0
    )
    internal_resistance: float = param(
        0.08, "battery internal resistance", unit="Ohm", min=0.001, max=10.0
    )
    max_voltage: float = param(
        410.0, "maximum voltage the vehicle advertises", unit="V", min=10.0, max=1500.0
    )
    max_current: float = param(
        200.0, "maximum current the vehicle advertises and requests", unit="A", min=1.0, max=3000
    )
    cv_voltage: float = param(
        0.0, "terminal voltage held in the CV phase, 0 = max_voltage", unit="V", min=0, max=1500
    )
    max_power_kw: float = param(
        0.0, "vehicle power limit, 0 = none", unit="kW", min=0.0, max=5000.0
    )
    taper_start_soc: float = param(
        80.0, "SoC above which the current limit is derated linearly", unit="%", min=0, max=100
    )
    taper_end_fraction: float = param(
        0.3, "current limit at 100 % SoC as a fraction of max_current", min=0.01, max=1.0
    )
    stop_current: float = param(
        2.0, "end the charge when the CV current falls below this", unit="A", min=0.0, max=100.0
    )
    target_soc: float = param(80.0, "end the charge at this SoC", unit="%", min=1.0, max=100.0)
    precharge_current: float = param(
        2.0, "Precharge.Maximum_Current the vehicle asks for", unit="A", min=0.1, max=20.0
    )
    insulation_test_voltage: float = param(
        0.0, "highest insulation-test voltage it permits, 0 = max_voltage", unit="V", min=0
    )
    soc_time_scale: float = param(
        1.0, "1 s of charging counts as this many seconds for the SoC", min=0.001, max=1e6
    )
    negotiation_time: float = param(
        2.0, "plug-in/start to all vehicle data known (spec 9.2)", unit="s", min=0.0, max=600.0
    )
    current_request_delay: float = param(
        1.0, "Waiting_For_Charge time before the first current request", unit="s", min=0, max=1e6
    )
    response_timeout: float = param(
        60.0, "longest wait for authorisation / charger parameters", unit="s", min=0.1, max=3600
    )
    cable_check_timeout: float = param(
        40.0, "cable check (incl. wake-up and ramp-down) must end within", unit="s", min=0.1
    )
    precharge_timeout: float = param(
        10.0, "inlet must reach the battery voltage within", unit="s", min=0.1, max=600.0
    )
    end_current_timeout: float = param(
        10.0, "after a stop, open the contactors anyway after", unit="s", min=0.1, max=600.0
    )
    overvoltage_margin: float = param(
        20.0, "emergency stop if the inlet exceeds max_voltage by", unit="V", min=0.0, max=1000
    )
    welding_detection: bool = param(True, "run welding detection after the charge (spec 9.10)")
    welding_detection_time: float = param(
        1.0, "duration of the welding detection", unit="s", min=0.0, max=60.0
    )
    unlock_voltage: float = param(
        60.0, "CCS: the vehicle unlocks its inlet at or below", unit="V", min=1.0, max=120.0
    )
    unplug_after_session: bool = param(True, "unplug when the session has ended")
    unplug_delay: float = param(
        2.0, "time from the end of the session to unplugging", unit="s", min=0.0, max=1e6
    )
    ev_id: str = param("0A1B2C3D4E5F", "EV ID (EVCCID), 12 hex digits (CCS DIN / ISO 15118-2)")

    def __post_init__(self) -> None:
        object.__setattr__(self, "protocol", _protocol_name(self.protocol))
        object.__setattr__(self, "plug", str(self.plug).upper() if self.plug != "auto" else "auto")
        check(self)
        name = type(self).__name__
        if not self.ocv_min < self.ocv_max:
            raise ConfigError(
                f"{name}: ocv_min = {self.ocv_min} V must be below ocv_max = {self.ocv_max} V"
            )
        if self.cv_voltage > self.max_voltage:
            raise ConfigError(
                f"{name}.cv_voltage = {self.cv_voltage} V is above max_voltage "
                f"= {self.max_voltage} V"
            )
        if self.cv_limit <= self.ocv_min:
            raise ConfigError(
                f"{name}: CV voltage {self.cv_limit} V must be above ocv_min = {self.ocv_min} V"
            )
        chademo = self.communication_protocol.is_chademo
        if self.plug != "auto" and (self.plug == "CHADEMO") != chademo:
            raise ConfigError(f"{name}.plug = {self.plug!r} does not fit protocol {self.protocol}")
        try:
            ev_id = bytes.fromhex(self.ev_id)
        except ValueError:
            ev_id = b""
        if len(ev_id) != 6:
            raise ConfigError(f"{name}.ev_id = {self.ev_id!r} is not 12 hexadecimal digits")

    @property
    def communication_protocol(self) -> CommunicationProtocol:
        """The protocol as the database enum."""
        return CommunicationProtocol[self.protocol]

    @property
    def plug_and_pins(self) -> PlugAndPins:
        """The plug as the database enum (``auto`` resolved)."""
        if self.plug == "auto":
            chademo = self.communication_protocol.is_chademo
            return PlugAndPins.CHADEMO if chademo else PlugAndPins.CCS_DC_CORE
        return PlugAndPins[self.plug]

    @property
    def cv_limit(self) -> float:
        """Terminal voltage of the CV phase [V]."""
        return self.cv_voltage or self.max_voltage

    @property
    def permitted_test_voltage(self) -> float:
        """Highest insulation-test voltage the vehicle permits [V]."""
        return self.insulation_test_voltage or self.max_voltage

    @property
    def ev_id_bytes(self) -> bytes:
        """The EV ID as 6 bytes."""
        return bytes.fromhex(self.ev_id)

    def battery_params(self) -> BatteryParams:
        """Return the battery part of these parameters."""
        try:
            return BatteryParams(
                capacity_kwh=self.capacity_kwh,
                ocv_min=self.ocv_min,
                ocv_max=self.ocv_max,
                internal_resistance=self.internal_resistance,
                initial_soc=self.initial_soc,
            )
        except ValueError as exc:  # unreachable after check(); keep the one-line contract
            raise ConfigError(f"{type(self).__name__}: {exc}") from None

    def make_inlet(self) -> VehicleInlet:
        """Return a new inlet with a battery of these parameters (to share with a converter)."""
        return VehicleInlet(battery=Battery(self.battery_params()))


def _protocol_name(value: object) -> str:
    """Normalise a protocol given as enum member, enum name or database label to the name."""
    if isinstance(value, CommunicationProtocol):
        return value.name
    text = str(value)
    for p in CommunicationProtocol:
        if text.upper() == p.name or text == p.label:
            return p.name
    return text  # check() reports it with the list of choices


class VehiclePhase(Enum):
    """What the vehicle is doing (the request it would send on its protocol)."""

    UNPLUGGED = "unplugged"
    PLUGGED = "plugged"  # waiting for the charger to start a session
    NEGOTIATING = "negotiating"  # communication set-up, parameter exchange (spec 9.2)
    WAITING_FOR_CHARGER = "waiting_for_charger"  # all data known; authorisation / parameters
    CABLE_CHECK = "cable_check"  # insulation test requested (spec 9.5)
    PRECHARGE = "precharge"  # CCS/MCS (spec 9.6)
    READY = "ready"  # contactors closed, power delivery start requested (spec 9.7)
    CHARGING = "charging"  # current demand (spec 9.8)
    ENDING = "ending"  # power delivery stop, waiting for the current to fall (spec 9.9)
    WELDING_DETECTION = "welding_detection"  # contactors open, checking them (spec 9.10)
    FINISHING = "finishing"  # contactors open; waiting for unlock and session end
    DONE = "done"  # session over (normally or aborted); unplugs after unplug_delay


_CONNECTED_PHASES = (VehiclePhase.READY, VehiclePhase.CHARGING, VehiclePhase.ENDING)
_SESSION_PHASES = tuple(
    p for p in VehiclePhase if p not in (VehiclePhase.UNPLUGGED, VehiclePhase.PLUGGED)
)


class Vehicle:
    """The simulated vehicle (see module docstring). Pure: ``now`` is always an argument."""

    def __init__(self, params: VehicleParams | None = None, inlet: VehicleInlet | None = None):
        self.params = params or VehicleParams()
        if inlet is None:
            inlet = self.params.make_inlet()
        elif inlet.battery.params != self.params.battery_params():
            log.info("vehicle uses the shared inlet's battery %s", inlet.battery.params)
        self.inlet = inlet
        self.inlet.plugged_in = False
        self.inlet.contactors_closed = False
        self._phase = VehiclePhase.UNPLUGGED
        self.phase_since = 0.0
        self._last_step: float | None = None
        self.present_voltage = 0.0  # the charger's last reported values (what the EV sees)
        self.present_current = 0.0
        self.charger_max_voltage: float | None = None
        self.charger_max_current: float | None = None
        self.charger_max_power_kw = 0.0
        self.charge_delay = self.params.current_request_delay
        self.error: str | None = None  # set by an EV-side emergency stop
        self.stop_reason = ""  # why the vehicle ended the charge normally
        self.end_reason = ""  # why the session ended
        self.forced_open = False  # contactors opened with the current still flowing
        self.session_energy_wh = 0.0
        self.sessions = 0
        self.cv_active = False
        self.events: list[tuple[float, str]] = []

    # --- read-outs --------------------------------------------------------------------------

    @property
    def battery(self) -> Battery:
        """The traction battery (shared with the inlet)."""
        return self.inlet.battery

    @property
    def soc(self) -> float:
        """State of charge [%]."""
        return self.battery.soc

    @property
    def phase(self) -> VehiclePhase:
        """What the vehicle is doing now."""
        return self._phase

    @property
    def plugged_in(self) -> bool:
        """True while the connector is in the inlet."""
        return self.inlet.plugged_in

    @property
    def contactors_closed(self) -> bool:
        """True while the battery is switched to the inlet."""
        return self.inlet.contactors_closed

    @property
    def is_chademo(self) -> bool:
        """True for a CHAdeMO vehicle."""
        return self.params.communication_protocol.is_chademo

    @property
    def in_session(self) -> bool:
        """True from session start until the session is over."""
        return self._phase in _SESSION_PHASES and self._phase is not VehiclePhase.DONE

    @property
    def end_current(self) -> float:
        """Current below which the vehicle opens its contactors after a stop [A]."""
        return END_CURRENT_CHADEMO if self.is_chademo else END_CURRENT_CCS

    @property
    def info_complete(self) -> bool:
        """True once the controller knows all vehicle data (end of negotiation)."""
        return self._phase in _SESSION_PHASES and self._phase not in (
            VehiclePhase.NEGOTIATING,
            VehiclePhase.DONE,
        )

    def session_info(self) -> NewChargeSession:
        """Return what the controller announces in New_Charge_Session (spec 6.6)."""
        p = self.params
        return NewChargeSession(
            communication_protocol=p.communication_protocol,
            plug_and_pins=p.plug_and_pins,
            ev_maximum_voltage=p.max_voltage,
            ev_maximum_current=0.0 if self.is_chademo else p.max_current,  # optional in CHAdeMO
            battery_capacity=p.capacity_kwh,
            state_of_charge=_soc_int(self.soc),
        )

    def target_voltage(self) -> float:
        """Charging_Loop.Target_Voltage: the CV voltage, capped by the charger's maximum [V]."""
        v = self.params.cv_limit
        if self.charger_max_voltage:
            v = min(v, self.charger_max_voltage)
        return v

    def requested_current(self) -> float:
        """Return the current the vehicle wants now (CC, taper, power limits, then CV) [A]."""
        p = self.params
        b = self.battery
        ocv = b.ocv()
        r = p.internal_resistance
        limits = [p.max_current * self._taper_factor()]
        for power_kw in (p.max_power_kw, self.charger_max_power_kw):
            if power_kw > 0:  # I with (ocv + I R) I = P
                limits.append((-ocv + math.sqrt(ocv * ocv + 4 * r * power_kw * 1000)) / (2 * r))
        if self.charger_max_current:
            limits.append(self.charger_max_current)
        cc = min(limits)
        cv = (self.target_voltage() - ocv) / r
        self.cv_active = cv < cc
        return max(0.0, min(cc, cv))

    def _taper_factor(self) -> float:
        p = self.params
        if self.soc <= p.taper_start_soc or p.taper_start_soc >= 100:
            return 1.0
        x = (self.soc - p.taper_start_soc) / (100.0 - p.taper_start_soc)
        return 1.0 - (1.0 - p.taper_end_fraction) * min(1.0, x)

    def precharge_request(self) -> Precharge | None:
        """Return the Precharge request while precharging (battery voltage, current), else None."""
        if self._phase is not VehiclePhase.PRECHARGE:
            return None
        return Precharge(self.battery.ocv(), self.params.precharge_current)

    def charge_request(self) -> ChargingLoop | None:
        """Return the current demand while charging (CC-CV, charger limits), else None."""
        if self._phase is not VehiclePhase.CHARGING:
            return None
        return ChargingLoop(self.target_voltage(), self.requested_current(), _soc_int(self.soc))

    # --- plant ------------------------------------------------------------------------------

    def plug_in(self, now: float) -> None:
        """Insert the connector (CCS: pilot state B; CHAdeMO: connector in)."""
        if self.inlet.plugged_in:
            return
        self.inlet.plugged_in = True
        self.inlet.contactors_closed = False
        self.error = None
        self._set_phase(now, VehiclePhase.PLUGGED, "plugged in")

    def unplug(self, now: float) -> None:
        """Pull the connector out (at any time, also under load)."""
        if not self.inlet.plugged_in:
            return
        if self.in_session:
            self.end_reason = "unplugged during the session"
        self.inlet.contactors_closed = False
        self.inlet.plugged_in = False
        self._set_phase(now, VehiclePhase.UNPLUGGED, "unplugged")

    def step(self, now: float, present_voltage: float, present_current: float) -> None:
        """Integrate the battery from the charger's reported current; run the vehicle's timers.

        ``present_voltage`` / ``present_current`` are the charger's latest Power_Modules_Status
        values (the inlet voltage the vehicle sees, the current it receives).
        """
        dt = 0.0 if self._last_step is None else max(0.0, now - self._last_step)
        self._last_step = now
        self.present_voltage = present_voltage
        self.present_current = present_current
        if self.inlet.battery_connected and dt > 0:
            energy = self.battery.charge(present_current, dt * self.params.soc_time_scale)
            self.session_energy_wh += energy
        p = self.params
        age = now - self.phase_since
        phase = self._phase
        if phase is VehiclePhase.NEGOTIATING and age >= p.negotiation_time:
            self._set_phase(now, VehiclePhase.WAITING_FOR_CHARGER, "all vehicle data sent")
        elif phase is VehiclePhase.WAITING_FOR_CHARGER and age > p.response_timeout:
            self.abort(now, f"vehicle timeout: no charger parameters within {age:.1f} s")
        elif phase is VehiclePhase.CABLE_CHECK and age > p.cable_check_timeout:
            self.abort(now, f"vehicle timeout: cable check not finished within {age:.1f} s")
        elif phase is VehiclePhase.PRECHARGE:
            if abs(present_voltage - self.battery.ocv()) <= PRECHARGE_WINDOW:
                self._close_contactors(now, "precharge complete")
            elif age > p.precharge_timeout:
                self.abort(now, f"vehicle timeout: precharge not reached within {age:.1f} s")
        elif phase is VehiclePhase.READY and age >= self.charge_delay:
            self._set_phase(now, VehiclePhase.CHARGING, "requesting current")
        elif phase is VehiclePhase.CHARGING:
            self._charging_decisions(now)
        elif phase is VehiclePhase.ENDING:
            if present_current <= self.end_current:
                self._open_contactors(now, f"current {present_current:.1f} A")
            elif age > p.end_current_timeout:
                self.forced_open = True
                self._open_contactors(
                    now, f"current still {present_current:.1f} A after {age:.1f} s"
                )
        elif phase is VehiclePhase.WELDING_DETECTION and age >= p.welding_detection_time:
            self._set_phase(now, VehiclePhase.FINISHING, "welding detection done")
        elif (
            phase is VehiclePhase.DONE
            and p.unplug_after_session
            and self.inlet.plugged_in
            and age >= p.unplug_delay
        ):
            self.unplug(now)
        if (
            self._phase in _CONNECTED_PHASES
            and present_voltage > p.max_voltage + p.overvoltage_margin
        ):
            self.emergency_stop(
                now, f"inlet overvoltage {present_voltage:.1f} V > {p.max_voltage:.1f} V"
            )

    def _charging_decisions(self, now: float) -> None:
        current = self.requested_current()
        if self.soc >= self.params.target_soc:
            self.request_stop(now, f"target SoC {self.params.target_soc:g} % reached")
        elif self.cv_active and current < self.params.stop_current:
            self.request_stop(now, f"battery full: CV current {current:.1f} A")

    # --- charger responses (called by the controller emulator) ------------------------------

    def start_session(self, now: float, charge_delay: float | None = None) -> None:
        """Start a session with the plugged-in vehicle (controller state 2)."""
        if self._phase is not VehiclePhase.PLUGGED:
            return
        self.sessions += 1
        self.session_energy_wh = 0.0
        self.charger_max_voltage = None
        self.charger_max_current = None
        self.charger_max_power_kw = 0.0
        self.charge_delay = (
            self.params.current_request_delay if charge_delay is None else charge_delay
        )
        self.error = None
        self.stop_reason = ""
        self.end_reason = ""
        self.forced_open = False
        self._set_phase(now, VehiclePhase.NEGOTIATING, f"session {self.sessions} starts")

    def set_charger_limits(
        self, now: float, max_voltage: float, max_current: float, max_power_kw: float = 0.0
    ) -> None:
        """Receive the charger's parameters (ChargeParameterDiscovery / CHAdeMO 0x108).

        The first call ends the parameter exchange: the vehicle then requests the cable check.
        """
        self.charger_max_voltage = max_voltage
        self.charger_max_current = max_current
        self.charger_max_power_kw = max_power_kw
        if self._phase is VehiclePhase.WAITING_FOR_CHARGER:
            self._set_phase(
                now,
                VehiclePhase.CABLE_CHECK,
                f"charger limits {max_voltage:g} V {max_current:g} A: requesting the cable check",
            )

    @property
    def wants_cable_check(self) -> bool:
        """True while the vehicle asks for the insulation test (spec 9.5 step 12)."""
        return self._phase is VehiclePhase.CABLE_CHECK

    def cable_check_passed(self, now: float) -> None:
        """Receive "insulation test complete" (output <= 20 V, spec 9.5)."""
        if self._phase is not VehiclePhase.CABLE_CHECK:
            return
        if self.is_chademo:  # no precharge: contactors close right after the test (spec 9.5 19)
            self._close_contactors(now, "insulation test passed")
        else:
            self._set_phase(now, VehiclePhase.PRECHARGE, "insulation test passed: precharge")

    def request_stop(self, now: float, reason: str) -> None:
        """End the charge normally (target reached, user stop relayed by the charger, ...)."""
        if self._phase in (VehiclePhase.READY, VehiclePhase.CHARGING):
            self.stop_reason = reason
            self._set_phase(now, VehiclePhase.ENDING, f"stop: {reason}")

    def abort(self, now: float, reason: str) -> None:
        """End the session at once (abort, timeout, communication lost): contactors open."""
        if not self.in_session:
            return
        self.end_reason = reason
        self.inlet.contactors_closed = False
        self._set_phase(now, VehiclePhase.DONE, f"session aborted: {reason}")

    def emergency_stop(self, now: float, reason: str) -> None:
        """EV-side emergency: contactors open at once; the controller signals Origin = PEV."""
        if not self.in_session:
            return
        self.error = reason
        self.abort(now, f"EV emergency stop: {reason}")

    def session_finished(self, now: float) -> None:
        """Receive the end of the session from the controller (Closing_Communication)."""
        if self.in_session:
            self.end_reason = self.end_reason or self.stop_reason or "session finished"
            self.inlet.contactors_closed = False
            self._set_phase(now, VehiclePhase.DONE, "session finished")

    # --- helpers ----------------------------------------------------------------------------

    def _close_contactors(self, now: float, why: str) -> None:
        self.inlet.contactors_closed = True
        self._set_phase(now, VehiclePhase.READY, f"contactors closed ({why})")

    def _open_contactors(self, now: float, why: str) -> None:
        self.inlet.contactors_closed = False
        nxt = (
            VehiclePhase.WELDING_DETECTION
            if self.params.welding_detection
            else VehiclePhase.FINISHING
        )
        self._set_phase(now, nxt, f"contactors opened ({why})")

    def _set_phase(self, now: float, phase: VehiclePhase, why: str) -> None:
        if phase is not self._phase:
            text = f"vehicle {self._phase.value} -> {phase.value}: {why}"
            log.debug(text)
            self.events.append((now, text))
        self._phase = phase
        self.phase_since = now


def _soc_int(soc: float) -> int:
    return int(min(100, max(0, round(soc))))
