"""The controller's cyclic messages (spec 11.1)."""

from __future__ import annotations

import logging

from evse_can_ros.core.controller_sim.config import (
    _EV_ID_PROTOCOLS,
    _POWER_STATES,
    INSULATION_VOLTAGE_FRACTION,
    PERIOD,
    SLOW_PERIOD,
    S,
)
from evse_can_ros.core.controller_sim.dialect import Step
from evse_can_ros.core.controller_sim.state import SimState
from evse_can_ros.protocol import (
    AdvanticsControllerStatus,
    CcsExtraInformation,
    CpState,
    EmergencyStop,
    EvIdCcsPart2Din,
)

log = logging.getLogger(__name__)


class Cyclic(SimState):
    """Heartbeat, repeated requests, emergency stops and the information messages."""

    def _cyclic(self, now: float) -> None:
        state = self._state
        if self._due("status", now, PERIOD):
            self._send(now, AdvanticsControllerStatus(state))
        if self.emergency is not None and self._due("emergency", now, PERIOD):
            self._send(now, EmergencyStop(self.emergency))
        if (
            state is S.CONNECTED_WITH_FULL_INFO
            and not self._enabled_seen
            and self._due("new_charge_session", now, PERIOD)
        ):
            self._emit(now, Step.SESSION_INFO)
        if state is S.INSULATION_TEST and self._due("insulation", now, PERIOD):
            self._insulation_iteration(now)
        if state is S.PRECHARGE and self._due("precharge", now, PERIOD):
            self._emit(now, Step.PRECHARGE)
        if state is S.CHARGING and self._due(
            "charging_loop", now, self.config.charging_loop_period
        ):
            self._emit(now, Step.CHARGE)
        self.dialect.cyclic(now)
        if self.config.send_extra_information and not self.vehicle.is_chademo:
            self._extra_information(now)

    def _insulation_iteration(self, now: float) -> None:
        """One insulation-test iteration: the test voltage, or the ramp-down's standby."""
        if self._rampdown:
            self._emit(now, Step.RAMP_DOWN)
            return
        self._emit(now, Step.INSULATION_TEST)
        voltage = self.present()[0]
        ohm_per_volt = self._ohm_per_volt()
        good = (
            voltage >= INSULATION_VOLTAGE_FRACTION * self._test_voltage
            and ohm_per_volt is not None
            and ohm_per_volt >= self.config.insulation_limit
        )
        self._insulation_good = self._insulation_good + 1 if good else 0
        if self._insulation_good >= self.config.insulation_pass_iterations:
            self._event(now, f"insulation test passed ({ohm_per_volt:.0f} Ohm/V): ramp-down")
            self._rampdown = True

    def _extra_information(self, now: float) -> None:
        v = self.vehicle
        if v.in_session and v.params.communication_protocol in _EV_ID_PROTOCOLS:
            if v.info_complete and self._due("ev_id", now, SLOW_PERIOD):
                self._send(now, EvIdCcsPart2Din(*v.params.ev_id_bytes))
        else:
            self._next.pop("ev_id", None)
        if self._due("ccs_extra", now, PERIOD):
            if not v.plugged_in:
                cp, duty = CpState.A, 100.0
            elif v.contactors_closed or self._state in _POWER_STATES:
                cp, duty = CpState.C, 5.0
            else:
                cp, duty = CpState.B, 5.0 if v.in_session else 100.0
            self._send(now, CcsExtraInformation(cp, duty))
