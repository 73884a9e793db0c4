"""Guards and actions from start-up to charging (spec 8, 9.1-9.8)."""

from __future__ import annotations

import logging

from evse_can_ros.core.controller_sim.config import (
    S,
)
from evse_can_ros.core.controller_sim.dialect import Step
from evse_can_ros.core.controller_sim.state import SimState
from evse_can_ros.core.vehicle import VehiclePhase
from evse_can_ros.protocol import (
    ChargeStatus,
    ChargeStatusChange,
    Completion,
    Permission,
    Validity,
)

log = logging.getLogger(__name__)


class Opening(SimState):
    """Start-up, plug-in, negotiation, authorisation, insulation test, precharge, charging."""

    def _booted(self, now: float) -> bool:
        return self._age(now) >= self.config.boot_time

    def _authorised(self, now: float) -> bool:
        return self._start_allowed()

    def _unauthorised(self, now: float) -> bool:
        return self.config.use_sequence_flags and not self._start_allowed()

    def _to_waiting(self, now: float) -> None:
        self._set_state(now, S.WAITING_FOR_PEV, "Start_Charge_Authorisation = Allowed")

    def _to_not_available(self, now: float) -> None:
        self._set_state(now, S.NOT_AVAILABLE, "Start_Charge_Authorisation = Not_Allowed")

    def _vehicle_starts(self, now: float) -> bool:
        v = self.vehicle
        if v.phase is not VehiclePhase.PLUGGED:
            return False
        return not v.is_chademo or self._start_pressed

    def _open_session(self, now: float) -> None:
        self._clear_session()
        self.sessions += 1
        self.session_result = None
        self.end_reason = ""
        self._start_pressed = False
        self.vehicle.start_session(
            now, self.vehicle.params.current_request_delay + self.scenario.delayed_charge
        )
        self._set_state(now, S.NEGOTIATING_CONNECTION, f"session {self.sessions}: plug-in")

    def _info_complete(self, now: float) -> bool:
        return self.vehicle.phase is VehiclePhase.WAITING_FOR_CHARGER

    def _after_negotiation(self, now: float) -> None:
        ccs = not self.vehicle.is_chademo
        if ccs and self.config.ccs_external_authorisation:
            self._set_state(now, S.CCS_AUTHORISATION_PROCESS, "waiting for CCS authorisation")
        elif ccs and self.scenario.ccs_authorisation_refused:
            self._abort(now, "CCS authorisation refused (controller)")
        else:
            self._connected(now)

    def _connected(self, now: float) -> None:
        self._window_open = now  # Power_Modules_Status supervised from now (spec 6.1)
        self._set_state(now, S.CONNECTED_WITH_FULL_INFO, "all vehicle information known")
        self._next["new_charge_session"] = now

    def _authorisation_done(self, now: float) -> bool:
        return self.flags.ccs_authorisation_done == Completion.DONE

    def _authorisation_decided(self, now: float) -> None:
        if self.scenario.ccs_authorisation_refused:
            self._abort(now, "CCS authorisation refused (controller)")
        elif self.flags.ccs_authorisation_valid == Validity.VALID:
            self._event(now, "CCS authorisation valid")
            self._connected(now)
        else:
            self._abort(now, "CCS authorisation refused by the customer side")

    def _cable_check_requested(self, now: float) -> bool:
        if not self._limits_given and (
            not self.config.wait_charge_parameters
            or self.flags.charge_parameters_done == Completion.DONE
        ):
            self._limits_given = True
            self._give_limits(now)
        return self.vehicle.wants_cable_check and self._power_enabled()

    def _power_enabled(self) -> bool:
        s = self.power_status
        return self._enabled_seen and s is not None and s.system_enable == Permission.ALLOWED

    def _start_insulation_test(self, now: float) -> None:
        self._emit(now, Step.POWER_READY)  # spec 9.5 step 14
        cfg = self.config
        v_test = cfg.insulation_test_voltage or min(
            self.vehicle.params.permitted_test_voltage, self.charger_limits[0]
        )
        self._test_voltage = v_test
        self._insulation_good = 0
        self._rampdown = False
        self._set_state(now, S.INSULATION_TEST, f"insulation test at {v_test:g} V")
        self._next["insulation"] = now

    def _insulation_finished(self, now: float) -> bool:
        if self._rampdown:
            return self.present()[0] <= self.config.rampdown_voltage
        return self._age(now) > self.config.insulation_timeout

    def _after_insulation(self, now: float) -> None:
        if not self._rampdown:  # timeout (spec 9.5 step 17)
            self._emit(now, Step.INSULATION_FAILED)
            self._abort(
                now,
                f"insulation test failed: not passed within {self.config.insulation_timeout:g} s",
            )
            return
        self._insulation_passed = True
        self._event(now, f"insulation test complete ({self.present()[0]:.1f} V)")
        self.vehicle.cable_check_passed(now)
        if self.vehicle.is_chademo:  # contactors closed; the vehicle asks to start (spec 9.5 19)
            self._waiting_for_charge(now)
        else:
            self._set_state(now, S.PRECHARGE, "vehicle starts precharge")
            self._next["precharge"] = now

    def _precharge_over(self, now: float) -> bool:
        return self.vehicle.phase is not VehiclePhase.PRECHARGE

    def _after_precharge(self, now: float) -> None:
        if self.vehicle.phase is VehiclePhase.READY:  # spec 9.6 step 23
            self._emit(now, Step.PRECHARGE_END)
            self._waiting_for_charge(now)
        # otherwise the vehicle aborted: _supervise ends the session

    def _waiting_for_charge(self, now: float) -> None:
        self._set_state(now, S.WAITING_FOR_CHARGE, "vehicle requests power delivery")
        self._send(now, ChargeStatusChange(ChargeStatus.CHARGE_STARTED))  # spec 9.7
        self._emit(now, Step.START_OF_CHARGE)
        self._charge_started = True

    def _current_requested(self, now: float) -> bool:
        return self.vehicle.phase is VehiclePhase.CHARGING

    def _start_charging(self, now: float) -> None:
        self._set_state(now, S.CHARGING, "first current request")
        self._next["charging_loop"] = now
