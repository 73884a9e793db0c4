"""The vehicle plant and the scenario knobs (plug-in, unplug, stops, resets, emergencies)."""

from __future__ import annotations

import logging

from evse_can_ros.core.controller_sim.config import (
    _SESSION_STATES,
    S,
)
from evse_can_ros.core.controller_sim.state import SimState
from evse_can_ros.core.vehicle import VehiclePhase
from evse_can_ros.protocol import (
    EmergencyStopOrigin,
)

log = logging.getLogger(__name__)


class ScenarioKnobs(SimState):
    """Runs the vehicle and fires the scenario's events (once per session each)."""

    def _plant(self, now: float) -> None:
        voltage, current = self.present()
        self.vehicle.step(now, voltage, current)

    def _scenario_events(self, now: float) -> None:
        sc = self.scenario
        v = self.vehicle
        assert self._started is not None
        if v.phase is VehiclePhase.UNPLUGGED:
            first = v.sessions == 0 and "first_plug" not in self._scenario_fired
            if first and sc.plug_in_delay >= 0 and now - self._started >= sc.plug_in_delay:
                self._scenario_fired.add("first_plug")
                self.plug_in(now)
            elif (
                not first
                and sc.replug_delay >= 0
                and v.sessions > 0
                and now - v.phase_since >= sc.replug_delay
            ):
                self.plug_in(now)
        if self._silent_until is not None:
            return
        age = now - self.state_since
        charging = self._state is S.CHARGING
        if charging and sc.unplug_after > 0 and age >= sc.unplug_after and self._fire("unplug"):
            self._event(now, "scenario: vehicle unplugged under load")
            v.unplug(now)
        if charging and sc.stop_after > 0 and age >= sc.stop_after and self._fire("stop"):
            v.request_stop(now, "vehicle stops early (scenario)")
        if (
            charging
            and sc.ev_emergency_after > 0
            and age >= sc.ev_emergency_after
            and self._fire("ev_emergency")
        ):
            v.emergency_stop(now, "EV emergency (scenario)")
        if (
            sc.reset_after > 0
            and self._state.label == sc.reset_state
            and age >= sc.reset_after
            and self._fire("reset")
        ):
            self._reset(now)

    def _fire(self, knob: str) -> bool:
        """Fire a once-per-session scenario knob; False if it already fired."""
        key = f"{knob}@{self.sessions}"
        if key in self._scenario_fired:
            return False
        self._scenario_fired.add(key)
        return True

    def plug_in(self, now: float) -> None:
        """Plug the vehicle in now (scenario or user); CHAdeMO: the user presses start too."""
        if self.vehicle.plugged_in:
            return
        self.vehicle.plug_in(now)
        self._start_pressed = self.vehicle.is_chademo and not self.scenario.withhold_start
        self._event(now, "vehicle plugged in")

    def reset(self, now: float, duration: float) -> None:
        """Simulate a controller crash: silent for ``duration`` s, then Initialising."""
        self._event(now, f"controller reset for {duration:g} s")
        self._reset_for(now, duration)

    def emergency_stop(self, now: float, reason: str) -> None:
        """Raise a charger-side emergency stop in the controller (origin EVSE)."""
        self._emergency(now, EmergencyStopOrigin.EVSE, reason)

    def _reset(self, now: float) -> None:
        self._event(now, f"scenario: controller reset for {self.scenario.reset_duration:g} s")
        self._reset_for(now, self.scenario.reset_duration)

    def _reset_for(self, now: float, duration: float) -> None:
        self._silent_until = now + duration
        self.vehicle.abort(now, "charger communication lost (controller reset)")
        if self._state in _SESSION_STATES:
            self.session_result = None
            self.end_reason = "controller reset"
        self._clear_session()
        self.emergency = None
        self._set_state(now, S.INITIALISING, "reset")
