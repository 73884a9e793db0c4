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
:meth:`precharge_request`, :meth:`charge_request` (v2), :meth:`power_request` (v3),
:attr:`error`.

Physical plant: one :class:`~evse_can_ros.core.battery.VehicleInlet`. Given one (one-process
simulation with the simulated converter), the vehicle uses that shared battery and sets
``inlet.plugged_in`` / ``inlet.contactors_closed``; the converter model never integrates the SoC,
so energy is counted once, here.

Charging profile (:meth:`Vehicle.requested_current`): constant current (the vehicle's maximum,
derated linearly above ``taper_start_soc``, limited by its power limit and by the charger's
advertised limits) until the battery terminal voltage reaches ``cv_voltage``; then the current
that holds the terminal voltage there (constant voltage, computed from the battery model). The
charge ends at ``target_soc``, when the CV current falls below ``stop_current``, or on request.

Bidirectional transfer (interface v3, ``bpt_mode``; :meth:`Vehicle.power_request`): the current
is signed (negative = out of the vehicle) and the battery integrates whatever the charger reports.

* ``dynamic`` (Range_Mode): the vehicle offers [-discharge limit, +charge current]; the charger
  side picks the operating point. At ``min_soc`` the discharge end closes to 0, at ``target_soc``
  the charge end does; the charge ends when the charger has charged it to ``target_soc``.
* ``scheduled`` (Target_Mode): the vehicle discharges at its discharge limit down to ``min_soc``,
  then charges (CC-CV) to ``target_soc`` and stops.
* A BPT vehicle stops with an EV emergency when the current stays outside what it accepts (its
  range; 0..target in Target_Mode) for ``range_violation_timeout``: its SoC limits hold even with
  a charger side that ignores them.

Charged and discharged energy are counted separately (``session_charged_wh``,
``session_discharged_wh``; ``session_energy_wh`` is the net, negative for a net export).
"""

from __future__ import annotations

import logging

from evse_can_ros.core.vehicle_params import (
    BPT_MODES,
    DC_PROTOCOLS,
    PLUG_CHOICES,
    BptMode,
    VehicleParams,
)
from evse_can_ros.core.vehicle_profile import (
    _CONNECTED_PHASES,
    END_CURRENT_CCS,
    END_CURRENT_CHADEMO,
    PRECHARGE_WINDOW,
    PowerRequest,
    VehiclePhase,
    VehicleProfile,
)

__all__ = [
    "BPT_MODES",
    "DC_PROTOCOLS",
    "END_CURRENT_CCS",
    "END_CURRENT_CHADEMO",
    "PLUG_CHOICES",
    "PRECHARGE_WINDOW",
    "BptMode",
    "PowerRequest",
    "Vehicle",
    "VehicleParams",
    "VehiclePhase",
]

RANGE_TOLERANCE = 2.0
"""A: a current this far (or 5 %) outside what a BPT vehicle accepts counts as outside."""
IDLE_AT_TARGET_STOP = 10.0
"""s: a dynamic BPT vehicle at its target SoC ends the charge when nothing flows this long."""

log = logging.getLogger(__name__)


class Vehicle(VehicleProfile):
    """The simulated vehicle (see module docstring). Pure: ``now`` is always an argument."""

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
        self._integrate(dt, present_current)
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
            self._start_requesting(now)
        elif phase is VehiclePhase.CHARGING:
            self._charging_decisions(now)
        elif phase is VehiclePhase.ENDING:
            if abs(present_current) <= self.end_current:
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

    def _integrate(self, dt: float, current: float) -> None:
        """Move the battery by the reported current (scaled time); count the energy."""
        if not self.inlet.battery_connected or dt <= 0:
            return
        energy = self.battery.charge(current, dt * self.params.soc_time_scale)
        self.session_energy_wh += energy
        if energy >= 0:
            self.session_charged_wh += energy
        else:
            self.session_discharged_wh -= energy

    def _start_requesting(self, now: float) -> None:
        self._outside_since = None
        self._idle_since: float | None = None
        self.discharging = self.params.bpt is BptMode.SCHEDULED and self.discharge_limit() > 0
        plan = f": discharging to {self.params.min_soc:g} % first" if self.discharging else ""
        self._set_phase(now, VehiclePhase.CHARGING, f"requesting current{plan}")

    def _charging_decisions(self, now: float) -> None:
        """Decide whether the charge goes on (SoC limits, CV end, what the charger delivers)."""
        p = self.params
        if p.bidirectional and self._outside_too_long(now):
            return
        if self.discharging:
            if self.discharge_limit() <= 0:
                self.discharging = False
                self._note(now, f"discharge over at {self.soc:.1f} %: charging to the target")
            return
        current = self.requested_current()
        if p.bpt is BptMode.DYNAMIC and self.present_current <= 0:
            # the charger picks: the charge ends when it has charged to the target, or when the
            # vehicle is at its target and the charger moves nothing either way for a while
            idle = self.soc >= p.target_soc and abs(self.present_current) < 1.0
            if not idle:
                self._idle_since = None
            elif self._idle_since is None:
                self._idle_since = now
            elif now - self._idle_since >= IDLE_AT_TARGET_STOP:
                self.request_stop(now, f"at the target SoC {p.target_soc:g} %, nothing to do")
            return
        if self.soc >= self.params.target_soc:
            self.request_stop(now, f"target SoC {self.params.target_soc:g} % reached")
        elif self.cv_active and current < self.params.stop_current:
            self.request_stop(now, f"battery full: CV current {current:.1f} A")

    def _outside_too_long(self, now: float) -> bool:
        """EV emergency stop if the current stays outside what the vehicle accepts (BPT)."""
        lo, hi = self.accepted_currents()
        tolerance = max(RANGE_TOLERANCE, 0.05 * max(abs(lo), abs(hi)))
        current = self.present_current
        if lo - tolerance <= current <= hi + tolerance:
            self._outside_since = None
            return False
        if self._outside_since is None:
            self._outside_since = now
        duration = now - self._outside_since
        if duration < self.params.range_violation_timeout:
            return False
        self.emergency_stop(
            now, f"current {current:.1f} A outside {lo:.1f}..{hi:.1f} A for {duration:.1f} s"
        )
        return True

    # --- charger responses (called by the controller emulator) ------------------------------

    def start_session(self, now: float, charge_delay: float | None = None) -> None:
        """Start a session with the plugged-in vehicle (controller state 2)."""
        if self._phase is not VehiclePhase.PLUGGED:
            return
        self.sessions += 1
        self.session_energy_wh = 0.0
        self.session_charged_wh = 0.0
        self.session_discharged_wh = 0.0
        self.charger_max_voltage = None
        self.charger_max_current = None
        self.charger_max_power_kw = 0.0
        self.charger_max_discharge_current = 0.0
        self.discharging = False
        self.charge_delay = (
            self.params.current_request_delay if charge_delay is None else charge_delay
        )
        self.error = None
        self.stop_reason = ""
        self.end_reason = ""
        self.forced_open = False
        self._set_phase(now, VehiclePhase.NEGOTIATING, f"session {self.sessions} starts")

    def set_charger_limits(
        self,
        now: float,
        max_voltage: float,
        max_current: float,
        max_power_kw: float = 0.0,
        max_discharge_current: float = 0.0,
    ) -> None:
        """Receive the charger's parameters (ChargeParameterDiscovery / CHAdeMO 0x108).

        The first call ends the parameter exchange: the vehicle then requests the cable check.
        ``max_discharge_current`` (magnitude, v3): 0 = the charger cannot take energy back.
        """
        self.charger_max_voltage = max_voltage
        self.charger_max_current = max_current
        self.charger_max_power_kw = max_power_kw
        self.charger_max_discharge_current = max_discharge_current
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

    def _note(self, now: float, text: str) -> None:
        log.debug("vehicle: %s", text)
        self.events.append((now, f"vehicle: {text}"))

    def _set_phase(self, now: float, phase: VehiclePhase, why: str) -> None:
        if phase is not self._phase:
            text = f"vehicle {self._phase.value} -> {phase.value}: {why}"
            log.debug(text)
            self.events.append((now, text))
        self._phase = phase
        self.phase_since = now
