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

from evse_can_ros.core.vehicle_params import DC_PROTOCOLS, PLUG_CHOICES, VehicleParams
from evse_can_ros.core.vehicle_profile import (
    _CONNECTED_PHASES,
    END_CURRENT_CCS,
    END_CURRENT_CHADEMO,
    PRECHARGE_WINDOW,
    VehiclePhase,
    VehicleProfile,
)

__all__ = [
    "DC_PROTOCOLS",
    "END_CURRENT_CCS",
    "END_CURRENT_CHADEMO",
    "PLUG_CHOICES",
    "PRECHARGE_WINDOW",
    "Vehicle",
    "VehicleParams",
    "VehiclePhase",
]

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
