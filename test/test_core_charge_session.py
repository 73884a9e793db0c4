"""Charge session tracker transcripts: controller events in, bridge commands and results out."""

from __future__ import annotations

import math

import pytest

from evse_can_ros.config import ConfigError
from evse_can_ros.core.charge_session import (
    Availability,
    ChargeGoal,
    ChargeSession,
    ErrorCode,
    Outcome,
    PressChademoStart,
    PressUserStop,
    SessionConfig,
    SetCcsAuthorisation,
    SetLimits,
    SetStartAuthorisation,
    Stage,
    availability,
    safe_to_unplug,
    validate_goal,
)
from evse_can_ros.protocol import (
    ChargeSessionFinished,
    ChargingLoop,
    CommunicationProtocol,
    ControllerState,
    EmergencyStop,
    EmergencyStopOrigin,
    NewChargeSession,
    PlugAndPins,
    SessionEnd,
)

S = ControllerState
NCS = NewChargeSession(
    CommunicationProtocol.CCS_ISO_15118_2013_V2, PlugAndPins.CCS_DC_CORE, 450.0, 200.0, 60.0, 30
)
CHADEMO = NewChargeSession(
    CommunicationProtocol.CHADEMO_V1_0_V1_1_V1_2, PlugAndPins.CHADEMO, 400.0, 125.0, 40.0, 50
)


class Script:
    """Drives a session through states with a fake clock and records commands."""

    def __init__(
        self, goal: ChargeGoal | None = None, config: SessionConfig | None = None
    ) -> None:
        self.t = 0.0
        self.s = ChargeSession(goal or ChargeGoal(), 0.0, config)
        self.commands: list[tuple[float, object]] = []
        self.stages: list[Stage] = []
        self.voltage, self.current = 0.0, 0.0

    def state(self, state: ControllerState, dt: float = 0.1, alive: bool = True) -> Script:
        self.advance(dt)
        self.s.on_controller(self.t, state, alive)
        return self.tick()

    def msg(self, message: object) -> Script:
        self.s.on_message(self.t, message)  # type: ignore[arg-type]
        return self.tick()

    def power(self, voltage: float, current: float, fault: str = "") -> Script:
        self.voltage, self.current = voltage, current
        self.s.on_power(self.t, voltage, current)
        if fault:
            self.s.on_fault(self.t, fault)
        return self

    def advance(self, dt: float) -> Script:
        steps = max(1, round(dt / 0.1))
        for _ in range(steps):
            self.t = round(self.t + dt / steps, 6)
            self.s.on_power(self.t, self.voltage, self.current)
            self.tick()
        return self

    def tick(self) -> Script:
        for c in self.s.step(self.t):
            self.commands.append((self.t, c))
        stage = self.s.stage
        if not self.stages or self.stages[-1] != stage:
            self.stages.append(stage)
        return self

    def kinds(self) -> list[str]:
        return [type(c).__name__ for _, c in self.commands]

    def ccs_session(self, ccs_auth: bool = False) -> Script:
        self.state(S.WAITING_FOR_PEV).state(S.NEGOTIATING_CONNECTION)
        if ccs_auth:
            self.state(S.CCS_AUTHORISATION_PROCESS)
        self.state(S.CONNECTED_WITH_FULL_INFO).msg(NCS)
        self.power(0, 0).state(S.INSULATION_TEST).power(500, 0).advance(3).power(10, 0)
        self.state(S.PRECHARGE).power(380, 0.5).state(S.WAITING_FOR_CHARGE)
        return self.state(S.CHARGING).power(385, 100.0)

    def end_clean(self, voltage_after: float = 5.0) -> Script:
        self.power(385, 0).state(S.ENDING_CHARGE).state(S.WELDING_DETECTION)
        self.power(voltage_after, 0).state(S.CLOSING_COMMUNICATION)
        self.msg(ChargeSessionFinished(SessionEnd.CLEAN_STOP))
        return self.state(S.WAITING_FOR_PEV)


def test_normal_ccs_session_completes() -> None:
    sc = Script(ChargeGoal(max_voltage=500, max_current=150))
    sc.ccs_session().advance(36.0)
    assert sc.s.feedback(sc.t).energy_delivered == pytest.approx(385 * 100 * 36 / 3600, rel=0.01)
    sc.msg(ChargingLoop(420, 100, 45)).end_clean()
    r = sc.s.result
    assert r is not None and r.error_code == ErrorCode.NONE and r.outcome == Outcome.COMPLETED
    assert r.safe_to_unplug and r.session_end_state == 0
    assert (r.initial_soc, r.final_soc) == (30.0, 45.0)
    assert sc.kinds()[:3] == ["SetStartAuthorisation", "PressChademoStart", "SetLimits"]
    assert sc.commands[2][1] == SetLimits(500, 150)
    assert sc.stages == [
        Stage.WAITING_FOR_PLUG,
        Stage.NEGOTIATING,
        Stage.INSULATION_TEST,
        Stage.PRECHARGE,
        Stage.WAITING_FOR_CHARGE,
        Stage.CHARGING,
        Stage.ENDING,
        Stage.WELDING_DETECTION,
        Stage.CLOSING,
        Stage.FINISHED,
    ]


def test_result_waits_for_a_safe_voltage() -> None:
    sc = Script()
    sc.ccs_session().end_clean(voltage_after=380.0)
    assert sc.s.result is None and sc.s.stage == Stage.CLOSING
    sc.advance(1.0).power(30.0, 0.0).tick()
    assert sc.s.result is not None and sc.s.result.safe_to_unplug


def test_voltage_that_stays_high_is_reported() -> None:
    sc = Script(config=SessionConfig(safe_voltage_timeout=5.0))
    sc.ccs_session().end_clean(voltage_after=380.0)
    sc.advance(6.0)
    r = sc.s.result
    assert r is not None and r.error_code == ErrorCode.UNSAFE_VOLTAGE and not r.safe_to_unplug
    assert "380 V" in r.error_msg


@pytest.mark.parametrize(
    ("goal", "progress", "text"),
    [
        (ChargeGoal(target_soc=40), lambda sc: sc.msg(ChargingLoop(420, 100, 40)), "target SoC"),
        (ChargeGoal(max_energy=500), lambda sc: sc.advance(48), "energy limit"),
        (ChargeGoal(max_duration=30), lambda sc: sc.advance(31), "duration limit"),
    ],
)
def test_stop_conditions_press_user_stop(goal: ChargeGoal, progress: object, text: str) -> None:
    sc = Script(goal).ccs_session()
    assert "PressUserStop" not in sc.kinds()
    progress(sc)  # type: ignore[operator]
    assert sc.kinds().count("PressUserStop") == 1
    sc.advance(11.0)
    assert sc.kinds().count("PressUserStop") == 2  # repeated until the session ends
    sc.end_clean()
    r = sc.s.result
    assert r is not None and r.outcome == Outcome.LIMIT_REACHED and r.error_code == ErrorCode.NONE


@pytest.mark.parametrize(
    "stage_states",
    [
        [S.NEGOTIATING_CONNECTION],
        [S.NEGOTIATING_CONNECTION, S.INSULATION_TEST],
        [
            S.NEGOTIATING_CONNECTION,
            S.INSULATION_TEST,
            S.PRECHARGE,
            S.WAITING_FOR_CHARGE,
            S.CHARGING,
        ],
    ],
)
def test_cancel_in_each_stage(stage_states: list[ControllerState]) -> None:
    sc = Script().state(S.WAITING_FOR_PEV)
    for st in stage_states:
        sc.state(st)
    sc.s.cancel(sc.t)
    sc.tick()
    assert sc.kinds()[-1] == "PressUserStop"
    assert sc.s.result is None
    sc.end_clean()
    r = sc.s.result
    assert r is not None and r.error_code == ErrorCode.CANCELLED and r.outcome == Outcome.CANCELLED


def test_cancel_before_plug_in_ends_at_once() -> None:
    sc = Script().state(S.WAITING_FOR_PEV)
    sc.s.cancel(sc.t)
    sc.tick()
    assert sc.s.result is not None and sc.s.result.error_code == ErrorCode.CANCELLED
    assert "PressUserStop" not in sc.kinds()


def test_plug_in_timeout() -> None:
    sc = Script(ChargeGoal(plug_in_timeout=10)).state(S.WAITING_FOR_PEV).advance(10.5)
    assert sc.s.result is not None and sc.s.result.error_code == ErrorCode.PLUG_IN_TIMEOUT


def test_start_authorisation_withheld() -> None:
    sc = Script(ChargeGoal(plug_in_timeout=10, authorise_start=False)).state(S.NOT_AVAILABLE)
    sc.advance(11)
    assert "SetStartAuthorisation" not in sc.kinds()
    assert sc.s.result is not None and sc.s.result.error_code == ErrorCode.NOT_AUTHORISED


def test_chademo_start_pulses_while_waiting() -> None:
    sc = Script().state(S.WAITING_FOR_PEV).advance(12)
    assert sc.kinds().count("PressChademoStart") == 3  # t=0.1, 5.1, 10.1
    sc.state(S.NEGOTIATING_CONNECTION).msg(CHADEMO).advance(12)
    assert sc.kinds().count("PressChademoStart") == 3
    assert Script(ChargeGoal(press_chademo_start=False)).state(S.WAITING_FOR_PEV).kinds() == [
        "SetStartAuthorisation"
    ]


@pytest.mark.parametrize(
    ("accept", "code"), [(True, ErrorCode.NONE), (False, ErrorCode.AUTHORISATION_REFUSED)]
)
def test_ccs_authorisation(accept: bool, code: ErrorCode) -> None:
    sc = Script(ChargeGoal(accept_ccs_authorisation=accept))
    if accept:
        sc.ccs_session(ccs_auth=True).end_clean()
        assert SetCcsAuthorisation(True) in [c for _, c in sc.commands]
    else:
        sc.state(S.WAITING_FOR_PEV).state(S.NEGOTIATING_CONNECTION)
        sc.state(S.CCS_AUTHORISATION_PROCESS)
        assert sc.commands[-1][1] == SetCcsAuthorisation(False)
        sc.power(0, 0).state(S.CLOSING_COMMUNICATION).msg(
            ChargeSessionFinished(SessionEnd.RUSHED_STOP)
        )
    assert sc.s.result is not None and sc.s.result.error_code == code
    assert sc.kinds().count("SetCcsAuthorisation") == 1


def test_insulation_fault() -> None:
    sc = Script().state(S.WAITING_FOR_PEV).state(S.NEGOTIATING_CONNECTION)
    sc.state(S.CONNECTED_WITH_FULL_INFO).msg(NCS).power(500, 0).state(S.INSULATION_TEST)
    sc.power(0, 0).state(S.CLOSING_COMMUNICATION).msg(
        ChargeSessionFinished(SessionEnd.RUSHED_STOP)
    )
    r = sc.s.result
    assert (
        r is not None
        and r.error_code == ErrorCode.INSULATION_FAULT
        and not math.isnan(r.initial_soc)
    )


@pytest.mark.parametrize(
    ("origin", "code"),
    [
        (EmergencyStopOrigin.EVSE, ErrorCode.EMERGENCY_STOP_EVSE),
        (EmergencyStopOrigin.PEV, ErrorCode.EMERGENCY_STOP_PEV),
    ],
)
def test_emergency_stop(origin: EmergencyStopOrigin, code: ErrorCode) -> None:
    sc = Script().ccs_session().msg(EmergencyStop(origin))
    sc.power(380, 0).state(S.CLOSING_COMMUNICATION).msg(
        ChargeSessionFinished(SessionEnd.RUSHED_STOP)
    )
    assert sc.s.result is None  # the output is still at battery voltage
    sc.power(4, 0).state(S.WAITING_FOR_PEV)
    r = sc.s.result
    assert r is not None and r.error_code == code and r.outcome == Outcome.FAILED
    assert origin.label in r.error_msg


def test_emergency_stop_just_after_the_session_end_still_counts() -> None:
    # the frames of one abort can arrive in any order: Charge_Session_Finished first
    sc = Script().ccs_session()
    sc.power(380, 0).state(S.CLOSING_COMMUNICATION).msg(
        ChargeSessionFinished(SessionEnd.RUSHED_STOP)
    )
    sc.msg(EmergencyStop(EmergencyStopOrigin.PEV))
    sc.power(4, 0).state(S.WAITING_FOR_PEV)
    r = sc.s.result
    assert r is not None and r.error_code == ErrorCode.EMERGENCY_STOP_PEV


def test_controller_lost_then_reset() -> None:
    sc = Script().ccs_session()
    sc.state(S.CHARGING, alive=False).power(380, 0).advance(1.0)
    assert sc.s.result is None
    sc.state(S.INITIALISING).power(2, 0).state(S.WAITING_FOR_PEV)
    r = sc.s.result
    assert r is not None and r.error_code == ErrorCode.CONTROLLER_LOST


def test_controller_lost_for_good() -> None:
    sc = Script(config=SessionConfig(controller_lost_grace=5)).ccs_session()
    sc.state(S.CHARGING, alive=False).power(3, 0).advance(6)
    r = sc.s.result
    assert (
        r is not None and r.error_code == ErrorCode.CONTROLLER_LOST and r.session_end_state == 255
    )


def test_converter_fault() -> None:
    sc = Script().ccs_session().power(380, 0, fault="module trip")
    sc.power(0, 0).state(S.CLOSING_COMMUNICATION).msg(
        ChargeSessionFinished(SessionEnd.RUSHED_STOP)
    )
    r = sc.s.result
    assert (
        r is not None
        and r.error_code == ErrorCode.CONVERTER_FAULT
        and "module trip" in r.error_msg
    )


def test_vehicle_aborted() -> None:
    sc = Script().ccs_session().power(380, 0).state(S.CLOSING_COMMUNICATION)
    sc.power(0, 0).msg(ChargeSessionFinished(SessionEnd.RUSHED_STOP))
    r = sc.s.result
    assert (
        r is not None
        and r.error_code == ErrorCode.VEHICLE_ABORTED
        and "Rushed_Stop" in r.error_msg
    )


def test_unplug_without_session_finished() -> None:
    sc = Script().ccs_session().power(0, 0).state(S.WAITING_FOR_PEV)
    r = sc.s.result
    assert (
        r is not None and r.error_code == ErrorCode.VEHICLE_ABORTED and r.session_end_state == 255
    )


def test_power_limit_becomes_a_current_limit() -> None:
    sc = Script(ChargeGoal(max_current=200, max_power=45000)).state(S.NEGOTIATING_CONNECTION)
    sc.msg(NCS)
    assert sc.commands[-1][1] == SetLimits(0, 100.0, True, 45000)  # 45 kW / 450 V, and local


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"target_soc": 120}, "target_soc"),
        ({"target_soc": 0.5}, "target_soc"),
        ({"max_energy": -1}, "max_energy"),
        ({"plug_in_timeout": math.inf}, "plug_in_timeout"),
        ({"max_current": 5000}, "max_current"),
    ],
)
def test_invalid_goals_are_rejected(values: dict[str, float], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        validate_goal(**values)


def test_feedback() -> None:
    sc = Script().ccs_session().advance(10)
    f = sc.s.feedback(sc.t)
    assert f.stage == Stage.CHARGING and f.controller_state_name == "Charging"
    assert f.protocol == "CCS_ISO_15118_2013_v2" and f.present_power == 38500
    assert f.ev_maximum_voltage == 450 and f.soc == 30 and f.elapsed == pytest.approx(sc.t)


def test_commands_are_typed() -> None:
    sc = Script().ccs_session()
    assert isinstance(sc.commands[0][1], SetStartAuthorisation)
    assert all(
        isinstance(c, (SetStartAuthorisation, SetLimits, PressChademoStart, PressUserStop))
        for _, c in sc.commands
    )


@pytest.mark.parametrize(
    ("state", "alive", "faulted", "expected"),
    [
        (S.WAITING_FOR_PEV, True, False, Availability.AVAILABLE),
        (S.INSULATION_TEST, True, False, Availability.OCCUPIED),
        (S.CHARGING, True, False, Availability.CHARGING),
        (S.CHARGING, True, True, Availability.FAULTED),
        (S.CHARGING, False, False, Availability.UNAVAILABLE),
        (S.NOT_AVAILABLE, True, False, Availability.UNAVAILABLE),
        (None, True, False, Availability.UNAVAILABLE),
    ],
)
def test_availability(
    state: ControllerState | None, alive: bool, faulted: bool, expected: Availability
) -> None:
    assert availability(state, alive, faulted) == expected


@pytest.mark.parametrize(
    ("state", "voltage", "expected"),
    [
        (S.CLOSING_COMMUNICATION, 5.0, True),
        (S.WAITING_FOR_PEV, 0.0, True),
        (S.CLOSING_COMMUNICATION, 200.0, False),
        (S.WELDING_DETECTION, 5.0, False),
        (S.CHARGING, 0.0, False),
        (S.WAITING_FOR_PEV, math.nan, False),
        (None, 0.0, False),
    ],
)
def test_safe_to_unplug(state: ControllerState | None, voltage: float, expected: bool) -> None:
    assert safe_to_unplug(state, voltage, 60.0) == expected
