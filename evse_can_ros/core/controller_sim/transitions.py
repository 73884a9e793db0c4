"""The controller's state machine (spec 8) as a transition table of guards and actions."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NamedTuple

from evse_can_ros.core.controller_sim.closing import Closing
from evse_can_ros.core.controller_sim.config import (
    S,
)
from evse_can_ros.core.controller_sim.opening import Opening
from evse_can_ros.protocol import (
    ControllerState,
)

log = logging.getLogger(__name__)


class Transitions(Opening, Closing):
    """The transition table below in order every step (guards and actions: opening, closing)."""

    def _transition(self, now: float) -> bool:
        for row in _TRANSITIONS:
            if row.source is self._state and row.guard(self, now):
                before = self._state
                row.action(self, now)
                if self._state is not before:
                    return True
        return False


class _Row(NamedTuple):
    """One transition of spec 8: in ``source``, when ``guard`` holds, run ``action``."""

    source: ControllerState
    guard: Callable[[Transitions, float], bool]
    action: Callable[[Transitions, float], None]
    spec: str


_T = Transitions

# Transition table (spec 8). Rows are tried in order; the first guard that holds fires.
# Aborts (emergency, refusal, unplug, vehicle timeout) come from _supervise / the receive path.
_TRANSITIONS: tuple[_Row, ...] = (
    _Row(
        S.INITIALISING,
        _T._booted,
        _T._to_idle,
        "8: 0 -> 12 with sequence flags, else -> 1",
    ),
    _Row(
        S.NOT_AVAILABLE,
        _T._authorised,
        _T._to_waiting,
        "8/9.1: Start_Charge_Authorisation",
    ),
    _Row(
        S.WAITING_FOR_PEV,
        _T._unauthorised,
        _T._to_not_available,
        "8: 12 implied on 1 -> 0",
    ),
    _Row(
        S.WAITING_FOR_PEV,
        _T._vehicle_starts,
        _T._open_session,
        "9.2: plug-in (+ start)",
    ),
    _Row(
        S.NEGOTIATING_CONNECTION,
        _T._info_complete,
        _T._after_negotiation,
        "8: -> 11 or 3",
    ),
    _Row(
        S.CCS_AUTHORISATION_PROCESS,
        _T._authorisation_done,
        _T._authorisation_decided,
        "9.3",
    ),
    _Row(
        S.CONNECTED_WITH_FULL_INFO,
        _T._cable_check_requested,
        _T._start_insulation_test,
        "9.4/9.5 steps 11-15: parameters, System_Enable, cable check",
    ),
    _Row(
        S.INSULATION_TEST,
        _T._insulation_finished,
        _T._after_insulation,
        "9.5 steps 17-19",
    ),
    _Row(S.PRECHARGE, _T._precharge_over, _T._after_precharge, "9.6 step 23"),
    _Row(
        S.WAITING_FOR_CHARGE,
        _T._vehicle_stopping,
        _T._ending_charge,
        "9.11: stop before",
    ),
    _Row(
        S.WAITING_FOR_CHARGE,
        _T._current_requested,
        _T._start_charging,
        "9.8 step 27",
    ),
    _Row(S.CHARGING, _T._vehicle_stopping, _T._ending_charge, "9.9 step 31"),
    _Row(
        S.ENDING_CHARGE,
        _T._contactors_opened,
        _T._after_ending,
        "9.9 step 32 -> 9 or 10",
    ),
    _Row(
        S.ENDING_CHARGE,
        _T._safe_to_unlock,
        _T._finish_session,
        "9.10 steps 34-35",
    ),
    _Row(
        S.WELDING_DETECTION,
        _T._welding_done,
        _T._start_finishing,
        "9.10 step 33",
    ),
    _Row(
        S.WELDING_DETECTION,
        _T._safe_to_unlock,
        _T._finish_session,
        "9.10 steps 34-35",
    ),
    _Row(
        S.CLOSING_COMMUNICATION,
        _T._closed,
        _T._after_closing,
        "9.10 step 36: -> 1 (or 12)",
    ),
)
