"""One charge goal from acceptance to result: the session tracker behind the Charge action.

Pure: the action server feeds what the bridge and the converter driver publish
(:meth:`ChargeSession.on_controller`, :meth:`on_message`, :meth:`on_power`) and calls
:meth:`ChargeSession.step` periodically. ``step`` returns the commands to send through the
bridge's services and, once the session has ended and the output voltage is safe, the result.

Policy (spec 9, README "Charge action"):

* At acceptance: ``Start_Charge_Authorisation`` = Allowed if the goal says so.
* While the controller waits in Waiting_For_PEV: a CHAdeMO start-button pulse every
  ``chademo_press_interval`` (CCS controllers ignore it).
* In CCS_Authorisation_Process: the goal's decision, once per session.
* When the session opens (New_Charge_Session / Connected_With_Full_Info): Power_Modules_Limits
  with the goal's limits, then Charge_Parameters_Done (max_power becomes a current limit at the
  vehicle's maximum voltage).
* Stop conditions (target SoC, energy, duration) and cancel: a User_Stop_Button pulse, repeated
  every ``stop_repeat_interval`` until the session ends.
* V2G (interface v3): a goal with ``max_discharge_current`` > 0 allows that discharge current
  (sent in DC_Power_Parameters, enforced by the converter driver) and sets the Range_Mode
  operating point (:meth:`ChargeSession.operating_point`): discharge at that current while the
  vehicle's SoC is above ``min_soc`` (and the vehicle's own minimum), then charge (the range
  maximum) to ``target_soc``, which is checked only after the discharge part. The energy is
  counted per direction: ``energy_delivered`` (to the vehicle, >= 0) and ``energy_exported``
  (from the vehicle, <= 0: the sign of a discharge current). In Target_Mode the vehicle decides
  the direction itself (scheduled), within the same limit.
* The result is returned only when the session has ended (Charge_Session_Finished, or the
  controller back in Waiting_For_PEV / Not_Available) **and** the output is at or below
  ``safe_voltage``. If the voltage stays high for ``safe_voltage_timeout``, the result carries
  UNSAFE_VOLTAGE and ``safe_to_unplug`` false. Every fault maps to one error code, in one place
  (:func:`_classify`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from enum import IntEnum

from evse_can_ros.config import ConfigError, check, param
from evse_can_ros.protocol import (
    CanMessage,
    ChargeSessionFinished,
    ChargingLoop,
    ControllerState,
    EmergencyStop,
    EmergencyStopOrigin,
    EvInformationBattery,
    EvInformationChargeLimits,
    EvInformationVoltages,
    NewChargeSession,
    NewChargeSessionV3,
    ProtocolVersion,
    SessionEnd,
)

log = logging.getLogger(__name__)
S = ControllerState


class Stage(IntEnum):
    """Feedback stage (values = Charge.action STAGE_*)."""

    WAITING_FOR_PLUG = 0
    NEGOTIATING = 1
    AUTHORISING = 2
    INSULATION_TEST = 3
    PRECHARGE = 4
    WAITING_FOR_CHARGE = 5
    CHARGING = 6
    ENDING = 7
    WELDING_DETECTION = 8
    CLOSING = 9
    FINISHED = 10


class ErrorCode(IntEnum):
    """Result error codes (values = Charge.action Result constants)."""

    NONE = 0
    PLUG_IN_TIMEOUT = 101
    AUTHORISATION_REFUSED = 102
    NOT_AUTHORISED = 103
    INSULATION_FAULT = 104
    EMERGENCY_STOP_EVSE = 105
    EMERGENCY_STOP_PEV = 106
    CONTROLLER_LOST = 107
    CONVERTER_FAULT = 108
    VEHICLE_ABORTED = 109
    CANCELLED = 110
    SESSION_ABORTED = 111
    UNSAFE_VOLTAGE = 112
    INVALID_GOAL = 113
    BUSY = 114
    BRIDGE_UNAVAILABLE = 115


class Outcome(IntEnum):
    """Result outcome (values = Charge.action OUTCOME_*)."""

    COMPLETED = 0
    LIMIT_REACHED = 1
    CANCELLED = 2
    FAILED = 3


SESSION_END_NONE = 255

_STAGE_OF_STATE = {
    S.INITIALISING: Stage.WAITING_FOR_PLUG,
    S.WAITING_FOR_PEV: Stage.WAITING_FOR_PLUG,
    S.NOT_AVAILABLE: Stage.WAITING_FOR_PLUG,
    S.NEGOTIATING_CONNECTION: Stage.NEGOTIATING,
    S.CONNECTED_WITH_FULL_INFO: Stage.NEGOTIATING,
    S.CCS_AUTHORISATION_PROCESS: Stage.AUTHORISING,
    S.INSULATION_TEST: Stage.INSULATION_TEST,
    S.PRECHARGE: Stage.PRECHARGE,
    S.WAITING_FOR_CHARGE: Stage.WAITING_FOR_CHARGE,
    S.CHARGE_PAUSE: Stage.WAITING_FOR_CHARGE,
    S.CHARGING: Stage.CHARGING,
    S.ENDING_CHARGE: Stage.ENDING,
    S.WELDING_DETECTION: Stage.WELDING_DETECTION,
    S.CLOSING_COMMUNICATION: Stage.CLOSING,
}  # spec 8
_IDLE = (S.INITIALISING, S.WAITING_FOR_PEV, S.NOT_AVAILABLE)


@dataclass(frozen=True)
class ChargeGoal:
    """What the client asked for (Charge.action Goal; 0 = no limit / default)."""

    target_soc: float = param(
        0.0, "end at this SoC, 0 = vehicle decides", unit="%", min=0, max=100
    )
    max_energy: float = param(0.0, "end after this energy, 0 = no limit", unit="Wh", min=0)
    max_duration: float = param(
        0.0, "end after this time in Charging, 0 = no limit", unit="s", min=0
    )
    plug_in_timeout: float = param(
        300.0, "wait this long for a session, 0 = forever", unit="s", min=0
    )
    max_voltage: float = param(
        0.0, "session voltage limit, 0 = controller default", unit="V", min=0, max=6553.5
    )
    max_current: float = param(
        0.0, "session current limit, 0 = controller default", unit="A", min=0, max=3276.7
    )
    max_power: float = param(0.0, "session power limit, 0 = none", unit="W", min=0, max=5e6)
    max_discharge_current: float = param(
        0.0,
        "V2G (v3): largest current to take from the vehicle, 0 = no discharge",
        unit="A",
        min=0,
        max=6553.5,
    )
    min_soc: float = param(
        0.0,
        "V2G (v3): discharge down to this SoC, 0 = the vehicle's minimum",
        unit="%",
        min=0,
        max=100,
    )
    authorise_start: bool = param(True, "send Start_Charge_Authorisation = Allowed")
    accept_ccs_authorisation: bool = param(True, "CCS external authorisation decision")
    press_chademo_start: bool = param(True, "emulate the CHAdeMO start button")

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class SessionConfig:
    """Server-side policy (parameters of the charge server)."""

    safe_voltage: float = param(
        60.0, "output voltage below which unplugging is safe", unit="V", min=0.0, max=120.0
    )
    safe_voltage_timeout: float = param(
        30.0, "give up waiting for a safe voltage after the session", unit="s", min=1.0, max=600.0
    )
    chademo_press_interval: float = param(
        5.0, "repeat the CHAdeMO start pulse while waiting", unit="s", min=0.5, max=60.0
    )
    stop_repeat_interval: float = param(
        10.0, "repeat the stop pulse until the session ends", unit="s", min=0.5, max=120.0
    )
    controller_lost_grace: float = param(
        5.0,
        "after a controller loss, end the goal after this time unless the controller comes back",
        unit="s",
        min=0.0,
        max=120.0,
    )
    authorisation: str = param(
        "goal",
        "Start_Charge_Authorisation: goal = only while a goal runs, always = also without a "
        "goal, never = charging disabled",
        choices=("goal", "always", "never"),
    )
    ccs_decision: str = param(
        "accept",
        "CCS authorisation of a session without a goal: accept, refuse, or goal (wait for one)",
        choices=("accept", "refuse", "goal"),
    )
    default_max_voltage: float = param(
        0.0,
        "Power_Modules_Limits of a session without a goal, 0 = controller default",
        unit="V",
        min=0.0,
        max=6553.5,
    )
    default_max_current: float = param(
        0.0,
        "Power_Modules_Limits of a session without a goal, 0 = controller default",
        unit="A",
        min=0.0,
        max=3276.7,
    )
    default_max_power: float = param(
        0.0, "power limit of a session without a goal (local), 0 = none", unit="W", min=0.0
    )
    node_timeout: float = param(
        1.0,
        "no controller_state from the bridge / no status from the converter driver for this "
        "long: that node counts as gone",
        unit="s",
        min=0.3,
        max=60.0,
    )
    command_retry: float = param(
        0.5, "repeat a bridge command that was not confirmed after", unit="s", min=0.05, max=10.0
    )
    command_timeout: float = param(
        10.0,
        "a goal whose bridge commands stay unconfirmed this long ends with BRIDGE_UNAVAILABLE",
        unit="s",
        min=1.0,
        max=600.0,
    )

    def __post_init__(self) -> None:
        check(self)


def validate_goal(
    version: ProtocolVersion = ProtocolVersion.V2, **values: float | bool
) -> ChargeGoal:
    """Build a goal, raising ConfigError with one line for invalid values."""
    goal = ChargeGoal(**values)  # type: ignore[arg-type]
    if goal.target_soc and goal.target_soc < 1:
        raise ConfigError(f"target_soc = {goal.target_soc} %: use 0 (vehicle decides) or 1..100")
    if (goal.max_discharge_current or goal.min_soc) and version is not ProtocolVersion.V3:
        raise ConfigError(
            "max_discharge_current / min_soc (V2G) need interface v3: this charger runs "
            f"protocol_version {int(version)}"
        )
    if goal.min_soc and not goal.max_discharge_current:
        raise ConfigError("min_soc applies to a discharge: set max_discharge_current too")
    if goal.min_soc and goal.target_soc and goal.min_soc >= goal.target_soc:
        raise ConfigError(
            f"min_soc = {goal.min_soc} % must be below target_soc = {goal.target_soc} %"
        )
    return goal


# --- commands --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetStartAuthorisation:
    """Call the bridge's set_start_authorisation."""

    allowed: bool


@dataclass(frozen=True)
class SetCcsAuthorisation:
    """Call the bridge's set_ccs_authorisation."""

    valid: bool


@dataclass(frozen=True)
class SetLimits:
    """Call the bridge's set_power_limits (with charge_parameters_done)."""

    maximum_voltage: float
    maximum_current: float
    charge_parameters_done: bool = True
    maximum_power: float = 0.0  # [W] enforced by the power side only (no CAN signal); 0 = none
    maximum_discharge_current: float = 0.0  # [A] v3 only; 0 = no discharge (power side)


@dataclass(frozen=True)
class PressUserStop:
    """Call the bridge's press_user_stop."""


@dataclass(frozen=True)
class PressChademoStart:
    """Call the bridge's press_chademo_start."""


Command = (
    SetStartAuthorisation | SetCcsAuthorisation | SetLimits | PressUserStop | PressChademoStart
)


@dataclass(frozen=True)
class Feedback:
    """Charge.action Feedback."""

    stage: Stage
    controller_state: int
    controller_state_name: str
    protocol: str
    present_voltage: float
    present_current: float
    present_power: float
    energy_delivered: float
    soc: float
    ev_maximum_voltage: float
    ev_maximum_current: float
    elapsed: float
    energy_exported: float = 0.0  # [Wh] <= 0: taken from the vehicle (v3 V2G)


@dataclass(frozen=True)
class Result:
    """Charge.action Result."""

    error_code: ErrorCode
    error_msg: str
    outcome: Outcome
    energy_delivered: float
    duration: float
    initial_soc: float
    final_soc: float
    session_end_state: int
    safe_to_unplug: bool
    energy_exported: float = 0.0  # [Wh] <= 0: taken from the vehicle (v3 V2G)


@dataclass
class _Observed:
    """Everything the tracker has seen (what the result is derived from)."""

    state: ControllerState | None = None
    alive: bool = False
    lost_since: float | None = None
    session_opened_at: float | None = None
    stages_seen: list[Stage] = field(default_factory=list)
    session: NewChargeSession | NewChargeSessionV3 | None = None
    initial_soc: float = math.nan
    soc: float = math.nan
    ev_min_soc: float = math.nan  # the vehicle's own minimum (v3)
    ev_max_voltage: float = 0.0  # 0 = unknown
    ev_max_current: float = 0.0
    voltage: float = math.nan
    current: float = 0.0
    power_time: float | None = None
    energy_wh: float = 0.0
    energy_exported_wh: float = 0.0  # <= 0
    discharged: bool = False  # the V2G discharge part is over
    charging_since: float | None = None
    lost_in_session: bool = False
    lost_at: float | None = None  # first loss inside the session
    lost_reason: str = ""
    emergency: EmergencyStopOrigin | None = None
    emergency_at: float | None = None
    converter_fault: str = ""
    insulation_fault: bool = False  # the converter fault is an insulation fault
    session_end: SessionEnd | None = None
    ended_at: float | None = None
    only_not_available: bool = True


class ChargeSession:
    """Tracks one goal (see module docstring)."""

    def __init__(self, goal: ChargeGoal, now: float, config: SessionConfig | None = None) -> None:
        self.goal = goal
        self.config = config or SessionConfig()
        self.started = now
        self.obs = _Observed()
        self.result: Result | None = None
        self._pending: list[Command] = []
        self._stop_reason: Outcome | None = None  # LIMIT_REACHED or CANCELLED once requested
        self._stop_text = ""
        self._last_stop_press: float | None = None
        self._last_chademo_press: float | None = None
        self._limits_sent_for_session = False
        self._ccs_decided = False
        if goal.authorise_start:
            self._pending.append(SetStartAuthorisation(True))

    # --- inputs -----------------------------------------------------------------------------

    def on_controller(
        self, now: float, state: ControllerState | None, alive: bool, reason: str = ""
    ) -> None:
        """Take the controller state published by the bridge (``controller_state`` topic)."""
        o = self.obs
        if not alive:
            if o.alive or o.lost_since is None:
                o.lost_since = now
            o.alive = False
            if o.session_opened_at is not None and o.ended_at is None:
                if not o.lost_in_session:
                    o.lost_at, o.lost_reason = now, reason
                o.lost_in_session = True
            return
        o.alive, o.lost_since = True, None
        if state is None:
            return
        previous, o.state = o.state, state
        if state != S.NOT_AVAILABLE:
            o.only_not_available = False
        if state not in _IDLE and o.session_opened_at is None and o.ended_at is None:
            o.session_opened_at = now
            log.info("session opened (controller state %s)", state.label)
        stage = _STAGE_OF_STATE.get(state)
        if (
            stage is not None
            and o.session_opened_at is not None
            and o.ended_at is None
            and (not o.stages_seen or o.stages_seen[-1] != stage)
        ):
            o.stages_seen.append(stage)
        if state == S.CHARGING and o.charging_since is None:
            o.charging_since = now
        if state in _IDLE and previous is not None and previous not in _IDLE:
            self._session_ended(now, None)

    def on_message(self, now: float, message: CanMessage) -> None:
        """Take a controller message from the bridge (session info, SoC, emergency, end)."""
        o = self.obs
        if isinstance(message, (NewChargeSession, NewChargeSessionV3)):
            if o.ended_at is None:
                if o.session is None and isinstance(message, NewChargeSession):
                    o.initial_soc = float(message.state_of_charge)
                    o.soc = o.initial_soc
                    o.ev_max_voltage = message.ev_maximum_voltage
                    o.ev_max_current = message.ev_maximum_current
                o.session = message
                if o.session_opened_at is None:
                    o.session_opened_at = now
        elif isinstance(message, ChargingLoop):
            if not message.is_standby and o.session is not None:
                o.soc = float(message.state_of_charge)
        elif isinstance(message, EmergencyStop):
            # also just after Charge_Session_Finished: the frames of one abort may arrive in
            # any order, and the stop is the cause of that end
            if o.emergency is None and (o.ended_at is None or now - o.ended_at < 1.0):
                o.emergency, o.emergency_at = message.origin, now
                log.error("emergency stop, origin %s", message.origin.label)
        elif isinstance(message, ChargeSessionFinished) and o.session_opened_at is not None:
            self._session_ended(now, message.state)
        elif o.session is not None and o.ended_at is None:
            self._on_ev_information(message)

    def _on_ev_information(self, message: CanMessage) -> None:
        """v3 vehicle data (0 = not provided, V3-11): SoC, minimum SoC, maxima for feedback."""
        o = self.obs
        if isinstance(message, EvInformationBattery):
            if message.present_state_of_charge > 0:
                o.soc = float(message.present_state_of_charge)
                if math.isnan(o.initial_soc):
                    o.initial_soc = o.soc
            if message.minimum_state_of_charge > 0:
                o.ev_min_soc = float(message.minimum_state_of_charge)
        elif isinstance(message, EvInformationVoltages) and message.ev_maximum_voltage > 0:
            o.ev_max_voltage = message.ev_maximum_voltage
        elif isinstance(message, EvInformationChargeLimits) and message.ev_maximum_charge_current:
            o.ev_max_current = message.ev_maximum_charge_current

    def on_power(self, now: float, voltage: float, current: float) -> None:
        """Take the measured output (converter driver); integrate the energy per direction."""
        o = self.obs
        if o.power_time is not None and math.isfinite(o.voltage) and o.ended_at is None:
            dt = max(0.0, now - o.power_time)
            energy = (o.voltage * o.current + voltage * current) / 2.0 * dt / 3600.0
            if energy > 0:
                o.energy_wh += energy
            else:
                o.energy_exported_wh += energy
        o.voltage, o.current, o.power_time = voltage, current, now

    def on_fault(
        self, now: float, text: str, insulation: bool = False, since: float | None = None
    ) -> None:
        """Take a fault of the power side itself (not its reaction to a stop or a lost link).

        ``since``: when it began, if earlier than ``now`` (a silent driver is noticed late).
        """
        o = self.obs
        began = now if since is None else since
        if (
            text
            and not o.converter_fault
            and o.session_opened_at is not None
            and (o.ended_at is None or began <= o.ended_at)
        ):
            o.converter_fault, o.insulation_fault = text, insulation
            log.error("power side fault during the session: %s", text)

    def cancel(self, now: float) -> None:
        """Cancel: stop the session (User_Stop_Button) and report CANCELLED."""
        if self._stop_reason != Outcome.CANCELLED:
            self._stop_reason, self._stop_text = Outcome.CANCELLED, "cancelled by the client"
            self._last_stop_press = None

    # --- step ---------------------------------------------------------------------------------

    def step(self, now: float) -> list[Command]:
        """Decide the commands due now; sets :attr:`result` when the goal is over."""
        if self.result is not None:
            return []
        o = self.obs
        out, self._pending = self._pending, []
        if o.session_opened_at is None and self._before_session(now, out):
            return out  # the goal ended before any session
        if o.session_opened_at is not None and o.ended_at is None:
            self._in_session(now, out)
        if o.ended_at is not None:
            self._after_session(now)
        return out

    def _before_session(self, now: float, out: list[Command]) -> bool:
        """Cancel, plug-in timeout, CHAdeMO start pulses; True if the goal has ended."""
        o, g, c = self.obs, self.goal, self.config
        if self._stop_reason == Outcome.CANCELLED:
            self._finish(
                now,
                ErrorCode.CANCELLED,
                "cancelled before a vehicle session opened",
                Outcome.CANCELLED,
            )
            return True
        if g.plug_in_timeout and now - self.started > g.plug_in_timeout:
            if o.only_not_available and o.state == S.NOT_AVAILABLE:
                code = ErrorCode.NOT_AUTHORISED
                text = "the controller stayed Not_Available: start authorisation withheld"
            else:
                code = ErrorCode.PLUG_IN_TIMEOUT
                text = f"no vehicle session within {g.plug_in_timeout:g} s"
            self._finish(now, code, text, Outcome.FAILED)
            return True
        press_due = (
            self._last_chademo_press is None
            or now - self._last_chademo_press >= c.chademo_press_interval
        )
        if g.press_chademo_start and o.alive and o.state == S.WAITING_FOR_PEV and press_due:
            self._last_chademo_press = now
            out.append(PressChademoStart())
        return False

    def _in_session(self, now: float, out: list[Command]) -> None:
        """Send limits and CCS decision, check stop conditions, pulse stop, watch the link."""
        o, g, c = self.obs, self.goal, self.config
        if not self._limits_sent_for_session and (
            o.session is not None or o.state == S.CONNECTED_WITH_FULL_INFO
        ):
            self._limits_sent_for_session = True
            out.append(self._limits(discharge=True))
        if o.state == S.CCS_AUTHORISATION_PROCESS and not self._ccs_decided:
            self._ccs_decided = True
            out.append(SetCcsAuthorisation(g.accept_ccs_authorisation))
        if self._stop_reason is None and o.state == S.CHARGING:
            reason = self._limit_reached(now)
            if reason:
                self._stop_reason, self._stop_text = Outcome.LIMIT_REACHED, reason
                log.info("stopping the charge: %s", reason)
        if self._stop_reason is not None and (
            self._last_stop_press is None or now - self._last_stop_press >= c.stop_repeat_interval
        ):
            self._last_stop_press = now
            out.append(PressUserStop())
        # controller lost: the converter driver has switched off; end the goal after a grace time
        if (
            not o.alive
            and o.lost_since is not None
            and now - o.lost_since >= (c.controller_lost_grace)
        ):
            self._session_ended(now, None)

    def _after_session(self, now: float) -> None:
        """Wait for a safe output voltage (or give up), then decide the result."""
        o, c = self.obs, self.config
        safe = math.isfinite(o.voltage) and o.voltage <= c.safe_voltage
        if not safe and now - (o.ended_at or now) < c.safe_voltage_timeout:
            return
        code, text, outcome = _classify(
            o, self.goal, self._stop_reason, self._stop_text, self._ccs_decided
        )
        if not safe:
            code = code if code != ErrorCode.NONE else ErrorCode.UNSAFE_VOLTAGE
            text = (text + "; " if text else "") + (
                f"output still at {o.voltage:.0f} V after {c.safe_voltage_timeout:g} s"
                if math.isfinite(o.voltage)
                else "no output voltage measurement"
            )
            outcome = outcome if outcome != Outcome.COMPLETED else Outcome.FAILED
        self._finish(now, code, text, outcome, safe)

    def fail(self, now: float, code: ErrorCode, text: str) -> None:
        """End the goal now with ``code`` (e.g. the bridge never confirmed its commands)."""
        if self.result is None:
            self._finish(now, code, text, Outcome.FAILED, safe=False)

    def operating_point(self) -> float | None:
        """Return the V2G Range_Mode operating point [A, signed]; None = the range maximum (B3).

        Discharge at ``max_discharge_current`` while the SoC is above ``min_soc`` and the
        vehicle's own minimum; then (for good) charge. Without a known SoC: no discharge. At the
        goal's ``min_soc`` the session's discharge limit drops to 0, so no later request (a
        scheduled vehicle's target, the CSMS) discharges further; at the vehicle's own minimum
        the vehicle is trusted to stop asking.
        """
        o, g = self.obs, self.goal
        if not g.max_discharge_current or o.discharged or o.ended_at is not None:
            return None
        floor = max(g.min_soc, o.ev_min_soc if math.isfinite(o.ev_min_soc) else 0.0)
        if not math.isfinite(o.soc):
            return None
        if o.soc <= floor:
            o.discharged = True
            log.info("V2G: SoC %g %% reached the minimum %g %%: charging now", o.soc, floor)
            if g.min_soc and o.soc <= g.min_soc:
                # the goal's own minimum holds whatever the vehicle or the CSMS ask: the
                # session's discharge limit becomes 0 (the converter driver enforces it)
                self._pending.append(self._limits(discharge=False))
            return None
        return -g.max_discharge_current

    def _limit_reached(self, now: float) -> str:
        o, g = self.obs, self.goal
        target_due = not g.max_discharge_current or o.discharged
        if target_due and g.target_soc and math.isfinite(o.soc) and o.soc >= g.target_soc:
            return f"target SoC {g.target_soc:g} % reached ({o.soc:g} %)"
        if g.max_energy and o.energy_wh >= g.max_energy:
            return f"energy limit {g.max_energy:g} Wh reached"
        if (
            g.max_duration
            and o.charging_since is not None
            and now - o.charging_since >= g.max_duration
        ):
            return f"duration limit {g.max_duration:g} s reached"
        return ""

    def _limits(self, discharge: bool) -> SetLimits:
        g = self.goal
        return SetLimits(
            g.max_voltage,
            self._current_limit(),
            True,
            g.max_power,
            g.max_discharge_current if discharge else 0.0,
        )

    def _current_limit(self) -> float:
        g, o = self.goal, self.obs
        limit = g.max_current
        if g.max_power and o.ev_max_voltage > 0:
            by_power = g.max_power / o.ev_max_voltage
            limit = by_power if not limit else min(limit, by_power)
        return round(limit, 1)

    def _session_ended(self, now: float, end: SessionEnd | None) -> None:
        o = self.obs
        if o.ended_at is not None:
            if end is not None and o.session_end is None:
                o.session_end = end
            return
        o.ended_at, o.session_end = now, end
        log.info(
            "session ended (%s)", end.label if end is not None else "no Charge_Session_Finished"
        )

    def _finish(
        self, now: float, code: ErrorCode, text: str, outcome: Outcome, safe: bool = True
    ) -> None:
        o = self.obs
        end = int(o.session_end) if o.session_end is not None else SESSION_END_NONE
        self.result = Result(
            code,
            text,
            outcome,
            o.energy_wh,
            now - self.started,
            o.initial_soc,
            o.soc,
            end,
            safe and math.isfinite(o.voltage),
            o.energy_exported_wh,
        )
        log.info("goal finished: %s %s", code.name, text)

    # --- read-outs --------------------------------------------------------------------------

    @property
    def stage(self) -> Stage:
        """Present stage for feedback."""
        o = self.obs
        if self.result is not None or o.ended_at is not None:
            return Stage.FINISHED if self.result is not None else Stage.CLOSING
        if o.session_opened_at is None or o.state is None:
            return Stage.WAITING_FOR_PLUG
        return _STAGE_OF_STATE.get(o.state, Stage.NEGOTIATING)

    def feedback(self, now: float) -> Feedback:
        """Return the Charge.action feedback now."""
        o = self.obs
        session = o.session
        state = o.state
        return Feedback(
            self.stage,
            int(state) if state is not None else 0,
            state.label if state is not None else "",
            session.communication_protocol.label if session else "",
            o.voltage if math.isfinite(o.voltage) else 0.0,
            o.current,
            (o.voltage * o.current) if math.isfinite(o.voltage) else 0.0,
            o.energy_wh,
            o.soc,
            o.ev_max_voltage,
            o.ev_max_current,
            now - self.started,
            o.energy_exported_wh,
        )


def _classify(
    o: _Observed, g: ChargeGoal, stop_reason: Outcome | None, stop_text: str, ccs_decided: bool
) -> tuple[ErrorCode, str, Outcome]:
    """Map what was observed to (error code, message, outcome): the one place that decides.

    Causes: a fault of the power side itself comes first (the converter driver latches the
    *first* cause it sees, so a fault it reports came before any emergency stop or link loss it
    saw; e.g. our System_Enable = 0 after a converter fault makes the controller stop with origin
    EVSE, and the result says CONVERTER_FAULT); then the earlier of an emergency stop and a lost
    controller link (a bus-off makes our status stop, and the controller's stop that follows is
    its consequence).
    """
    clean = o.session_end == SessionEnd.CLEAN_STOP
    fault = _fault_cause(o, clean)
    if fault is not None:
        return fault[0], fault[1], Outcome.FAILED
    if ccs_decided and not g.accept_ccs_authorisation:
        return (
            ErrorCode.AUTHORISATION_REFUSED,
            "CCS authorisation refused by the goal",
            Outcome.FAILED,
        )
    if stop_reason == Outcome.CANCELLED:
        return ErrorCode.CANCELLED, stop_text, Outcome.CANCELLED
    if stop_reason == Outcome.LIMIT_REACHED and clean:
        return ErrorCode.NONE, "", Outcome.LIMIT_REACHED
    if clean:
        return ErrorCode.NONE, "", Outcome.COMPLETED
    return _where_it_ended(o)


def _fault_cause(o: _Observed, clean: bool) -> tuple[ErrorCode, str] | None:
    """Return the fault that ended the session, most specific first (see :func:`_classify`)."""
    if o.converter_fault:
        code = ErrorCode.INSULATION_FAULT if o.insulation_fault else ErrorCode.CONVERTER_FAULT
        return code, f"power side fault: {o.converter_fault}"
    lost = o.lost_in_session and not clean and o.lost_at is not None
    if o.emergency is not None and (not lost or (o.emergency_at or 0.0) <= (o.lost_at or 0.0)):
        pev = o.emergency == EmergencyStopOrigin.PEV
        code = ErrorCode.EMERGENCY_STOP_PEV if pev else ErrorCode.EMERGENCY_STOP_EVSE
        return code, f"emergency stop, origin {o.emergency.label}"
    if lost:
        why = f": {o.lost_reason}" if o.lost_reason else ""
        return ErrorCode.CONTROLLER_LOST, f"controller link lost during the session{why}"
    return None


def _where_it_ended(o: _Observed) -> tuple[ErrorCode, str, Outcome]:
    """Classify an abnormal end without a fault by the stage it happened in."""
    last = o.stages_seen[-1] if o.stages_seen else Stage.NEGOTIATING
    before_charging = [s for s in o.stages_seen if s <= Stage.CHARGING]
    where = before_charging[-1] if before_charging else last
    if where == Stage.INSULATION_TEST:
        return (
            ErrorCode.INSULATION_FAULT,
            "the session ended in the insulation test",
            Outcome.FAILED,
        )
    if Stage.CHARGING in o.stages_seen or where in (Stage.PRECHARGE, Stage.WAITING_FOR_CHARGE):
        how = (
            "Rushed_Stop"
            if o.session_end == SessionEnd.RUSHED_STOP
            else "without Charge_Session_Finished"
        )
        return (
            ErrorCode.VEHICLE_ABORTED,
            f"the vehicle ended the session ({how}) in {where.name.lower()}",
            Outcome.FAILED,
        )
    return ErrorCode.SESSION_ABORTED, f"the session ended in {where.name.lower()}", Outcome.FAILED


# --- depot-level state -----------------------------------------------------------------------


class Availability(IntEnum):
    """Charger availability for the depot (values of the charger_availability topic)."""

    AVAILABLE = 0  # idle, ready for a vehicle
    OCCUPIED = 1  # a session is open, not (yet) charging
    CHARGING = 2
    FAULTED = 3  # emergency stop or converter fault
    UNAVAILABLE = 4  # controller lost / initialising / not available


def availability(state: ControllerState | None, alive: bool, faulted: bool) -> Availability:
    """Availability from the controller state, its heartbeat and the converter fault flag."""
    if not alive or state is None or state == S.INITIALISING:
        return Availability.UNAVAILABLE
    if faulted:
        return Availability.FAULTED
    if state == S.NOT_AVAILABLE:
        return Availability.UNAVAILABLE
    if state == S.WAITING_FOR_PEV:
        return Availability.AVAILABLE
    if state == S.CHARGING:
        return Availability.CHARGING
    return Availability.OCCUPIED


def safe_to_unplug(state: ControllerState | None, voltage: float, safe_voltage: float) -> bool:
    """Return True when no session is in a powered phase and the output voltage is safe.

    Session states from Negotiating_Connection to Welding_Detection are never safe (the
    vehicle or the charger may apply voltage). Closing_Communication and the idle states are,
    once the measured output voltage is safe.
    """
    if state is None or not math.isfinite(voltage) or voltage > safe_voltage:
        return False
    return state in (S.CLOSING_COMMUNICATION, *_IDLE)
