"""The receive path and the controller's own checks of the power side (spec 6.1, 9.12)."""

from __future__ import annotations

import logging

from evse_can_ros.core.controller_sim.config import (
    _INSULATION_INTERLOCK_STATES,
    _SESSION_STATES,
    S,
)
from evse_can_ros.core.controller_sim.state import SimState
from evse_can_ros.core.vehicle import VehiclePhase
from evse_can_ros.protocol import (
    ButtonState,
    CanFrame,
    DcPowerParameters,
    EmergencyStopOrigin,
    Permission,
    PowerModulesLimits,
    PowerModulesStatus,
    ProtocolError,
    SequenceControl,
)

log = logging.getLogger(__name__)


class Supervision(SimState):
    """Frames from the power side; Power_Modules_Status timeout, insulation, vehicle aborts."""

    def _on_frame(self, now: float, frame: CanFrame) -> None:
        try:
            spec = self.codec.message_spec_of(frame, self.pistol_index)
            if spec.from_controller:
                return  # our own frames (or another controller's): not for us
            message = self.codec.decode(frame, self.pistol_index)
        except ProtocolError:
            self.rx_errors += 1
            return
        if isinstance(message, PowerModulesStatus):
            self._on_power_status(now, message)
        elif isinstance(message, (PowerModulesLimits, DcPowerParameters)):  # v2, v3
            self.limits = message
            if self._limits_given:  # later updates reach the vehicle too (A10: undocumented)
                self._give_limits(now)
        elif isinstance(message, SequenceControl):
            self._on_flags(now, message)

    def _on_power_status(self, now: float, status: PowerModulesStatus) -> None:
        previous = self.power_status
        self.power_status = status
        self.power_status_time = now
        if self._state not in _SESSION_STATES or self._window_open is None:
            return
        if status.system_enable == Permission.ALLOWED:
            if not self._enabled_seen:
                self._event(now, "System_Enable = Allowed")
            self._enabled_seen = True
        elif self._enabled_seen and previous is not None and previous.system_enable:
            if self._state in (S.CHARGING,):  # spec 6.1: emergency shutdown
                self._emergency(now, EmergencyStopOrigin.EVSE, "System_Enable = 0 in Charging")
            elif self._state in (S.ENDING_CHARGE, S.WELDING_DETECTION):
                self._event(now, "System_Enable = 0 while ending: ignored")
            else:  # spec 6.1: charging service unavailable
                self._abort(now, "System_Enable = 0 before Charging: service unavailable")

    def _on_flags(self, now: float, flags: SequenceControl) -> None:
        previous = self.flags
        self.flags = flags
        if not self.config.use_sequence_flags:
            return
        pressed = ButtonState.PRESSED
        if (
            flags.chademo_start_button == pressed
            and previous.chademo_start_button != pressed
            and self.vehicle.is_chademo
            and self.vehicle.plugged_in
        ):
            self._start_pressed = True
            self._event(now, "CHAdeMO_Start_Button pressed")
        if flags.user_stop_button == pressed and previous.user_stop_button != pressed:
            self._event(now, "User_Stop_Button pressed")
            self._user_stop(now, "user stop button")

    def _user_stop(self, now: float, reason: str) -> None:
        """Relay a normal stop requested at the charger (spec 9.11)."""
        if self._state in (S.WAITING_FOR_CHARGE, S.CHARGING):
            self.vehicle.request_stop(now, reason)
        elif self._state in _SESSION_STATES and self._state not in (
            S.ENDING_CHARGE,
            S.WELDING_DETECTION,
        ):
            self._abort(now, f"{reason} before the charge")

    def _supervise(self, now: float) -> None:
        if self._window_open is not None and self._state in _SESSION_STATES:
            last = max(self._window_open, self.power_status_time or self._window_open)
            if now - last > self.config.power_status_timeout:
                self._emergency(
                    now,
                    EmergencyStopOrigin.EVSE,
                    f"Power_Modules_Status timeout ({(now - last) * 1000:.0f} ms)",
                )
                return
        if self._insulation_passed and self._state in _INSULATION_INTERLOCK_STATES:
            ohm_per_volt = self._ohm_per_volt()
            if ohm_per_volt is not None and ohm_per_volt < self.config.insulation_limit:
                self._emergency(
                    now,
                    EmergencyStopOrigin.EVSE,
                    f"insulation {ohm_per_volt:.0f} Ohm/V below {self.config.insulation_limit:g}",
                )
                return
        v = self.vehicle
        if self._state in _SESSION_STATES:
            if v.error is not None:
                self._emergency(now, EmergencyStopOrigin.PEV, v.error)
            elif not v.plugged_in:
                self._abort(now, "vehicle unplugged during the session")
            elif v.phase is VehiclePhase.DONE:
                self._abort(now, v.end_reason or "vehicle ended the session")
