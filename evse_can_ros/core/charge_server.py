"""The charge server's decisions, without ROS: goals, goal-less sessions, depot state.

:class:`ChargeServer` is what the ``charge_server`` node runs for one pistol (and what the
in-memory charger, :mod:`evse_can_ros.core.charger`, steps on a simulated clock). The node feeds
it the bridge's and the converter driver's topics, calls :meth:`ChargeServer.step` every 100 ms,
delivers the returned :class:`~evse_can_ros.core.charge_session.Command` objects as bridge
service calls and reports each call's outcome with :meth:`ChargeServer.command_result`.

Authorisation (``authorisation`` parameter, spec 6.3/9.1, checklist PM-15/21):

* ``goal``: Start_Charge_Authorisation is Allowed only while a goal that asks for it runs; with
  a controller that uses sequence flags no session starts without a goal.
* ``always``: Allowed all the time: a person can plug in and charge without a goal.
* ``never``: Not_Allowed all the time (out of service); goals end at once with NOT_AUTHORISED.

Whatever happens to a goal (success, failure, cancel, abort), Start_Charge_Authorisation returns
to the configured default when it ends. The level is re-sent whenever the bridge reports
different flags (a restarted bridge starts with Not_Allowed).

Sessions without a goal (``authorisation: always``, or a controller without sequence flags) are
answered exactly as with a goal: ``Power_Modules_Limits`` with the configured ``default_*``
limits, then Charge_Parameters_Done (PM-19); in CCS_Authorisation_Process the ``ccs_decision``
(``accept``, ``refuse``, or ``goal``: wait for a goal to decide, PM-18). A goal that arrives
during such a session takes it over (its stop conditions and limits apply from then on).

Delivery (issue "commands reach the controller even during bring-up"): every command is kept
until the bridge confirms it; an unconfirmed or failed call is repeated every ``command_retry``.
Levels (authorisation, CCS decision, limits) replace their older value. A goal whose commands
stay unconfirmed for ``command_timeout`` ends with BRIDGE_UNAVAILABLE.

Depot state: availability and safe-to-unplug, with the reason, in one place
(:meth:`ChargeServer.depot`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from enum import Enum

from evse_can_ros.config import ConfigError
from evse_can_ros.core.charge_session import (
    Availability,
    ChargeGoal,
    ChargeSession,
    Command,
    ErrorCode,
    Feedback,
    Outcome,
    Result,
    SessionConfig,
    SetCcsAuthorisation,
    SetLimits,
    SetStartAuthorisation,
    availability,
    safe_to_unplug,
    validate_goal,
)
from evse_can_ros.core.controller_states import NO_SESSION, POWERED
from evse_can_ros.core.power_module import FaultKind
from evse_can_ros.protocol import (
    CanMessage,
    ChargeSessionFinished,
    ControllerState,
    EmergencyStop,
    NewChargeSession,
    NewChargeSessionV3,
    ProtocolVersion,
)

log = logging.getLogger(__name__)
S = ControllerState
FEEDBACK_PERIOD = 0.5
"""s: feedback rate while a goal runs (and at once on every stage change)."""


class Authorisation(str, Enum):
    """Values of the ``authorisation`` parameter (module docstring)."""

    GOAL = "goal"
    ALWAYS = "always"
    NEVER = "never"


class CcsDecision(str, Enum):
    """Values of the ``ccs_decision`` parameter (module docstring)."""

    ACCEPT = "accept"
    REFUSE = "refuse"
    GOAL = "goal"


@dataclass(frozen=True)
class GoalDecision:
    """The answer to a new goal: running, or ended at once with a code and a reason."""

    accepted: bool
    result: Result | None = None  # set when not accepted


@dataclass(frozen=True)
class DepotState:
    """What the depot sees of the pistol (charger_availability and safe_to_unplug topics)."""

    availability: Availability
    goal_active: bool
    safe_to_unplug: bool
    reason: str  # why (not) safe to unplug, one line
    output_voltage: float  # [V] NaN if unknown


@dataclass(frozen=True)
class StepOutput:
    """What :meth:`ChargeServer.step` asks the node to do."""

    commands: list[Command]
    feedback: Feedback | None
    result: Result | None  # the running goal has ended with this
    depot: DepotState
    depot_changed: bool
    operating_point: float | None = None  # v3 Range_Mode policy for the driver (None = maximum)


@dataclass
class _Pending:
    command: Command
    since: float  # first posted
    next_try: float  # send when now >= next_try
    in_flight: bool = False
    failures: int = 0


@dataclass
class _GoalLess:
    """A session that runs without a goal (per-session memory)."""

    limits_sent: bool = False
    ccs_decided: bool = False


@dataclass
class _Observed:
    state: ControllerState | None = None
    alive: bool = False
    state_time: float | None = None  # last controller_state from the bridge
    lost_reason: str = ""
    voltage: float = math.nan
    power_time: float | None = None  # last power_modules_status from the driver
    fault: str = ""
    fault_kind: FaultKind = FaultKind.NONE
    emergency: bool = False
    start_authorised: bool | None = None  # as last reported by the bridge
    session_open: bool = False
    goal_less: _GoalLess = field(default_factory=_GoalLess)


def _kind(command: Command) -> str:
    return type(command).__name__


def _allowed(flag: bool) -> str:
    return "Allowed" if flag else "Not_Allowed"


def _valid(flag: bool) -> str:
    return "valid" if flag else "refused"


class ChargeServer:
    """See module docstring."""

    def __init__(
        self,
        config: SessionConfig | None = None,
        pistol_index: int = 1,
        version: ProtocolVersion = ProtocolVersion.V2,
    ) -> None:
        self.config = config or SessionConfig()
        self.pistol_index = pistol_index
        self.version = ProtocolVersion.of(version)
        self.authorisation = Authorisation(self.config.authorisation)
        self.ccs_decision = CcsDecision(self.config.ccs_decision)
        self.session: ChargeSession | None = None
        self.goal_id = ""
        self.obs = _Observed()
        self._outbox: dict[str, _Pending] = {}
        self._desired_start: bool | None = None
        self._last_feedback = -math.inf
        self._feedback_stage: object = None
        self._depot: DepotState | None = None

    # --- inputs -----------------------------------------------------------------------------

    def on_controller(
        self, now: float, state: ControllerState | None, alive: bool, reason: str = ""
    ) -> None:
        """Take the bridge's controller_state (``reason``: why it is not alive)."""
        o = self.obs
        o.state_time = now
        o.lost_reason = "" if alive else reason
        if alive and state is not None:
            if state in (S.WAITING_FOR_PEV, S.NOT_AVAILABLE):
                o.emergency = False
            was_open = o.session_open
            o.session_open = state not in NO_SESSION
            if was_open and not o.session_open:
                o.goal_less = _GoalLess()
            o.state = state
        o.alive = alive and state is not None
        if self.session is not None:
            self.session.on_controller(now, state if alive else None, alive, reason)

    def on_message(self, now: float, message: CanMessage) -> None:
        """Take a controller message (session info, SoC, emergency, end)."""
        if isinstance(message, EmergencyStop):
            self.obs.emergency = True
        elif isinstance(message, (NewChargeSession, NewChargeSessionV3)):
            self.obs.session_open = True
        elif isinstance(message, ChargeSessionFinished):
            self.obs.goal_less = _GoalLess()
        if self.session is not None:
            self.session.on_message(now, message)

    def on_power(self, now: float, voltage: float, current: float) -> None:
        """Take the power side's measured output (power_modules_status)."""
        self.obs.voltage, self.obs.power_time = voltage, now
        if self.session is not None:
            self.session.on_power(now, voltage, current)

    def on_converter_fault(self, now: float, kind: FaultKind, fault: str) -> None:
        """Take the converter driver's latched fault (``FaultKind.NONE``, "" = none)."""
        o = self.obs
        new = (kind, fault) != (o.fault_kind, o.fault)
        o.fault, o.fault_kind = fault, kind
        if new and self.session is not None and kind.power_side:  # latched now, not before
            self.session.on_fault(now, fault, insulation=kind is FaultKind.INSULATION)

    def on_flags(self, start_authorised: bool) -> None:
        """Take the Sequence_Control flags the bridge has sent (re-send on a mismatch)."""
        self.obs.start_authorised = start_authorised

    # --- goals ------------------------------------------------------------------------------

    def submit_goal(
        self, now: float, goal_id: str, values: dict[str, float | bool]
    ) -> GoalDecision:
        """Start a new goal, or end it at once (invalid, busy, charging disabled)."""
        try:
            goal = validate_goal(self.version, **values)
        except ConfigError as exc:
            return self._refuse(now, ErrorCode.INVALID_GOAL, f"invalid goal: {exc}")
        if self.session is not None:
            return self._refuse(
                now,
                ErrorCode.BUSY,
                f"pistol {self.pistol_index} is busy with goal {self.goal_id} "
                f"(stage {self.session.stage.name.lower()}); one goal per pistol",
            )
        if self.authorisation is Authorisation.NEVER:
            return self._refuse(
                now, ErrorCode.NOT_AUTHORISED, "charging is disabled (authorisation: never)"
            )
        self.session = ChargeSession(goal, now, self.config)
        self.goal_id = goal_id
        self._last_feedback = -math.inf
        o = self.obs
        self.session.on_controller(now, o.state if o.alive else None, o.alive)
        if o.session_open:
            log.info("goal %s takes over the session in progress", goal_id)
        log.info("goal %s accepted: %s", goal_id, goal)
        return GoalDecision(True)

    def cancel(self, now: float) -> bool:
        """Cancel the running goal (User_Stop_Button); False if there is none."""
        if self.session is None:
            return False
        self.session.cancel(now)
        return True

    @property
    def goal(self) -> ChargeGoal | None:
        """The running goal, if any."""
        return self.session.goal if self.session is not None else None

    # --- command delivery -------------------------------------------------------------------

    def command_result(self, now: float, command: Command, ok: bool, text: str = "") -> None:
        """Take the outcome of a bridge call: confirmed (ok), failed or service missing."""
        pending = self._outbox.get(_kind(command))
        if pending is None or pending.command != command:
            return  # superseded meanwhile
        if ok:
            del self._outbox[_kind(command)]
            return
        pending.in_flight = False
        pending.next_try = now + self.config.command_retry
        pending.failures += 1
        level = logging.WARNING if pending.failures == 1 else logging.DEBUG  # once, not per try
        log.log(
            level,
            "bridge command %s not confirmed: %s (retrying for up to %g s)",
            command,
            text or "failed",
            self.config.command_timeout,
        )

    def _post(self, now: float, command: Command) -> None:
        kind = _kind(command)
        old = self._outbox.get(kind)
        if old is not None and old.command == command:
            return
        self._outbox[kind] = _Pending(command, now if old is None else old.since, now)

    def _due(self, now: float) -> list[Command]:
        out = []
        for p in self._outbox.values():
            if now >= p.next_try:
                p.in_flight = True
                p.next_try = now + self.config.command_retry  # no answer by then: send again
                out.append(p.command)
        return out

    def _unconfirmed_for(self, now: float) -> float:
        return max((now - p.since for p in self._outbox.values()), default=0.0)

    # --- step -------------------------------------------------------------------------------

    def step(self, now: float) -> StepOutput:
        """Decide the commands due now, the feedback, the result and the depot state."""
        self._supervise(now)
        session = self.session
        result: Result | None = None
        feedback: Feedback | None = None
        operating_point = None
        if session is not None:
            operating_point = session.operating_point()
            for command in session.step(now):
                if not isinstance(command, SetStartAuthorisation):  # a level, decided below
                    self._post(now, command)
            if session.result is None and self._unconfirmed_for(now) > self.config.command_timeout:
                kinds = ", ".join(sorted(self._outbox))
                session.fail(
                    now,
                    ErrorCode.BRIDGE_UNAVAILABLE,
                    f"the bridge did not confirm {kinds} within {self.config.command_timeout:g} s",
                )
            if session.result is None and (
                now - self._last_feedback >= FEEDBACK_PERIOD
                or session.stage != self._feedback_stage
            ):
                self._last_feedback = now
                self._feedback_stage = session.stage
                feedback = session.feedback(now)
            if session.result is not None:
                result = session.result
                log.info(
                    "goal %s finished: %s %s",
                    self.goal_id,
                    result.error_code.name,
                    result.error_msg,
                )
                self.session = None
                self.goal_id = ""
                for kind in ("PressUserStop", "PressChademoStart"):
                    self._outbox.pop(kind, None)
        else:
            self._goal_less(now)
        self._authorisation(now)
        depot = self.depot()
        changed = depot != self._depot
        self._depot = depot
        return StepOutput(self._due(now), feedback, result, depot, changed, operating_point)

    def _supervise(self, now: float) -> None:
        """Notice silent nodes: no controller_state (bridge), no power status (driver)."""
        o, c = self.obs, self.config
        if o.alive and o.state_time is not None and now - o.state_time > c.node_timeout:
            self.on_controller(now, None, False, "no controller_state from the bridge")
        if (
            o.power_time is not None
            and now - o.power_time > c.node_timeout
            and self.session is not None
        ):
            self.session.on_fault(now, "no status from the converter driver", since=o.power_time)

    def _authorisation(self, now: float) -> None:
        if self.authorisation is Authorisation.NEVER:
            desired = False
        elif self.authorisation is Authorisation.ALWAYS:
            desired = True
        else:
            session = self.session  # a goal authorises one session: not the next one
            desired = (
                session is not None
                and session.goal.authorise_start
                and session.obs.ended_at is None
            )
        reported = self.obs.start_authorised
        if desired != self._desired_start or (reported is not None and reported != desired):
            if desired != self._desired_start:
                log.info(
                    "Start_Charge_Authorisation -> %s", "Allowed" if desired else "Not_Allowed"
                )
            self._desired_start = desired
            self.obs.start_authorised = None  # until the bridge reports the new level
            self._post(now, SetStartAuthorisation(desired))

    def _goal_less(self, now: float) -> None:
        o = self.obs
        if not (o.alive and o.session_open):
            return
        c, g = self.config, o.goal_less
        if not g.limits_sent:
            g.limits_sent = True
            self._post(
                now,
                SetLimits(c.default_max_voltage, c.default_max_current, True, c.default_max_power),
            )
        if o.state == S.CCS_AUTHORISATION_PROCESS and not g.ccs_decided:
            if self.ccs_decision is CcsDecision.GOAL:
                return  # waits for a goal (which takes the session over)
            g.ccs_decided = True
            accept = self.ccs_decision is CcsDecision.ACCEPT
            log.info(
                "session without a goal: CCS authorisation %s", "valid" if accept else "refused"
            )
            self._post(now, SetCcsAuthorisation(accept))

    def _refuse(self, now: float, code: ErrorCode, text: str) -> GoalDecision:
        log.warning("goal refused: %s", text)
        return GoalDecision(
            False,
            Result(code, text, Outcome.FAILED, 0.0, 0.0, math.nan, math.nan, 255, False),
        )

    # --- depot ------------------------------------------------------------------------------

    def depot(self) -> DepotState:
        """Availability and safe-to-unplug now (one place for both)."""
        o = self.obs
        faulted = bool(o.fault) or o.emergency
        avail = availability(o.state if o.alive else None, o.alive, faulted)
        goal_running = self.session is not None and self.session.obs.ended_at is None
        state = o.state if o.alive else None
        safe = safe_to_unplug(state, o.voltage, self.config.safe_voltage) and not goal_running
        if safe:
            reason = f"session over, output at {o.voltage:.0f} V"
        elif state is None:
            reason = "controller not alive: state unknown"
        elif not math.isfinite(o.voltage):
            reason = "no output voltage measurement"
        elif state in POWERED or goal_running:
            reason = f"session in progress ({state.label})"
        elif o.voltage > self.config.safe_voltage:
            reason = f"output at {o.voltage:.0f} V (> {self.config.safe_voltage:g} V)"
        else:
            reason = f"controller state {state.label}"
        return DepotState(avail, self.session is not None, safe, reason, o.voltage)
