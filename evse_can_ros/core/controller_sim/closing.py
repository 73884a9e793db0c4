"""Guards and actions from the end of charge to Closing_Communication (spec 9.9-9.10)."""

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
    SessionEnd,
)

log = logging.getLogger(__name__)


class Closing(SimState):
    """End of charge, welding detection, unlock, session end, back to idle."""

    def _vehicle_stopping(self, now: float) -> bool:
        # the vehicle may pass through ENDING within one step when no current flows
        return self.vehicle.phase in (
            VehiclePhase.ENDING,
            VehiclePhase.WELDING_DETECTION,
            VehiclePhase.FINISHING,
        )

    def _ending_charge(self, now: float) -> None:
        self._set_state(now, S.ENDING_CHARGE, f"stop: {self.vehicle.stop_reason}")
        self._send(now, ChargeStatusChange(ChargeStatus.CHARGE_STOPPED))  # spec 9.9
        self._emit(now, Step.END_OF_CHARGE)
        self._charge_started = False

    def _contactors_opened(self, now: float) -> bool:
        return self.vehicle.phase in (VehiclePhase.WELDING_DETECTION, VehiclePhase.FINISHING)

    def _after_ending(self, now: float) -> None:
        if self.vehicle.phase is VehiclePhase.WELDING_DETECTION:
            self._set_state(now, S.WELDING_DETECTION, "vehicle checks its contactors")
        else:
            self._finishing_since = now

    def _welding_done(self, now: float) -> bool:
        return self.vehicle.phase is VehiclePhase.FINISHING

    def _start_finishing(self, now: float) -> None:
        if self._finishing_since is None:
            self._finishing_since = now
            self._event(now, "contactors open: waiting for a safe voltage")

    def _safe_to_unlock(self, now: float) -> bool:
        if self.vehicle.phase is not VehiclePhase.FINISHING:
            return False
        if self._finishing_since is None:
            self._finishing_since = now
        unlock = (
            self.config.chademo_unlock_voltage
            if self.vehicle.is_chademo
            else self.vehicle.params.unlock_voltage
        )
        if self.present()[0] <= unlock:
            return True
        return now - self._finishing_since > self.config.unlock_timeout

    def _finish_session(self, now: float) -> None:
        voltage = self.present()[0]
        clean = (
            not self.vehicle.forced_open
            and now - (self._finishing_since or now) <= self.config.unlock_timeout
        )
        reason = self.vehicle.stop_reason or "session finished"
        if not clean:
            reason += f" (forced: {voltage:.0f} V at unlock or current still flowing)"
        self.vehicle.session_finished(now)
        self._close(now, SessionEnd.CLEAN_STOP if clean else SessionEnd.RUSHED_STOP, reason)

    def _closed(self, now: float) -> bool:
        return self._age(now) >= self.config.closing_time

    def _after_closing(self, now: float) -> None:
        self.emergency = None  # re-evaluated here (spec 6.11)
        self._clear_session()
        self._to_idle(now)
