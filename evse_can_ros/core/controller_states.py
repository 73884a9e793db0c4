"""Named groups of controller states (spec 8), defined once for every core.

``Advantics_Controller_Status.State`` is informative; the cores use it as a cross-check and a
safety gate (spec A9, A18, PM-43, PM-45, PM-48).
"""

from __future__ import annotations

from evse_can_ros.protocol import ControllerState

S = ControllerState

NO_SESSION = frozenset({S.INITIALISING, S.WAITING_FOR_PEV, S.NOT_AVAILABLE})
"""No session exists (spec 8): returning to one of these from a session ends it (PM-48)."""

BEFORE_POWER = NO_SESSION | {S.NEGOTIATING_CONNECTION, S.CCS_AUTHORISATION_PROCESS}
"""No power session yet: the power side has nothing to do (a New_Charge_Session opens one)."""

SESSION_START = frozenset({S.NEGOTIATING_CONNECTION})
"""Entered only from Waiting_For_PEV (spec 8): seeing it after any other state means that a new
session has started, also when the idle state in between was missed (heartbeat gap)."""

SOURCING = frozenset(
    {S.CONNECTED_WITH_FULL_INFO, S.INSULATION_TEST, S.PRECHARGE, S.WAITING_FOR_CHARGE, S.CHARGING}
)
"""Power may be sourced (A9: 3..7; 3 and 6 because the state frame can lag a command)."""

DISCHARGE_ALLOWED = frozenset({S.CONNECTED_WITH_FULL_INFO, S.INSULATION_TEST})
"""The post-insulation active discharge may run (A20: battery guaranteed disconnected)."""

LOWERING_AT_CLOSE = frozenset({S.CLOSING_COMMUNICATION})
"""v3 only: Lower_Output_Voltage on entering Closing_Communication (v3 digest 5.3, situation 3:
the vehicle has opened its contactors after welding detection) may also discharge the output.
In Ending_Charge it is ignored (B2: we have no output contactors of our own)."""

STANDBY_ON_ENTRY = frozenset(
    {
        S.PRECHARGE,
        S.WAITING_FOR_CHARGE,
        S.ENDING_CHARGE,
        S.WELDING_DETECTION,
        S.CLOSING_COMMUNICATION,
        S.CHARGE_PAUSE,
    }
)
"""Entering one implies the controller's last command was standby (A18, PM-45); Precharge only
ends the insulation test and its discharge."""

POWERED = frozenset(
    {
        S.INSULATION_TEST,
        S.PRECHARGE,
        S.WAITING_FOR_CHARGE,
        S.CHARGING,
        S.ENDING_CHARGE,
        S.WELDING_DETECTION,
        S.CHARGE_PAUSE,
    }
)
"""The vehicle or the charger may apply voltage: never safe to unplug (spec 8-9)."""


def is_session_boundary(previous: ControllerState | None, state: ControllerState) -> bool:
    """Return True if the change ``previous -> state`` shows that a session ended or began.

    A change into a no-session state, or into Negotiating_Connection from anything but
    Waiting_For_PEV (the only state it follows, spec 8): the idle state was missed.
    """
    if state == previous:
        return False
    if state in NO_SESSION:
        return True
    return state in SESSION_START and previous is not None and previous != S.WAITING_FOR_PEV
