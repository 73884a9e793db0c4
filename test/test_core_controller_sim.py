"""Controller emulator against a scripted power side (transcript tests, no ROS, fake clock).

``ScriptedPowerSide`` is a deliberately tiny customer side: it decodes the emulator's frames with
the codec and answers with Power_Modules_Status every 100 ms (plus Sequence_Control /
Power_Modules_Limits when a test asks). Its "converter" follows the requests ideally: the
insulation-test voltage, a ramp-down, the precharge target, and the requested current into the
vehicle's battery when the contactors are closed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from evse_can_ros.config import ConfigError, from_mapping
from evse_can_ros.core.controller_sim import ControllerSimConfig, ControllerSimulator, Scenario
from evse_can_ros.core.vehicle import Vehicle, VehicleParams, VehiclePhase
from evse_can_ros.protocol import (
    AdvanticsControllerStatus,
    ButtonState,
    CanFrame,
    CanMessage,
    ChargeSessionFinished,
    ChargeStatus,
    ChargeStatusChange,
    ChargingLoop,
    Codec,
    Completion,
    ControllerState,
    EmergencyStop,
    EmergencyStopOrigin,
    InsulationTest,
    NewChargeSession,
    Permission,
    PowerModulesLimits,
    PowerModulesStatus,
    Precharge,
    SequenceControl,
    SessionEnd,
    Validity,
    load_codec,
)

S = ControllerState
DT = 0.01
CHADEMO = "CHADEMO_V1_0_V1_1_V1_2"
FAST = {"soc_time_scale": 200.0, "negotiation_time": 0.5, "current_request_delay": 0.3}


@dataclass
class ScriptedPowerSide:
    """The customer side, scripted (see module docstring)."""

    codec: Codec
    vehicle: Vehicle
    pistol: int = 1
    system_enable: bool = True
    insulation_kohm: float = 500.0
    silent: bool = False  # stop sending Power_Modules_Status
    flags: SequenceControl | None = None  # send on the next step
    limits: PowerModulesLimits | None = None  # send on the next step
    bleed: bool = True  # let the output voltage fall when nothing holds it
    voltage: float = 0.0
    current: float = 0.0
    mode: str = "off"  # off / test / rampdown / precharge / charge
    target_v: float = 0.0
    target_i: float = 0.0
    next_status: float = 0.0
    log: list[tuple[float, CanMessage]] = field(default_factory=list)

    def handle(self, now: float, frames: list[CanFrame]) -> None:
        for f in frames:
            m = self.codec.decode(f, self.pistol)
            self.log.append((now, m))
            if isinstance(m, InsulationTest):
                self.mode, self.target_v = (
                    ("test", m.test_voltage)
                    if m.test_voltage
                    else (
                        "rampdown",
                        0.0,
                    )
                )
            elif isinstance(m, Precharge):
                if m.maximum_current > 0:
                    self.mode, self.target_v = "precharge", m.target_voltage
                else:
                    self.mode = "off"
            elif isinstance(m, ChargingLoop):
                if m.is_standby:
                    if self.mode == "charge":
                        self.mode = "off"
                else:
                    self.mode, self.target_v, self.target_i = (
                        "charge",
                        m.target_voltage,
                        m.target_current,
                    )
            elif isinstance(m, EmergencyStop | ChargeSessionFinished):
                self.mode = "off"

    def step(self, now: float) -> list[CanFrame]:
        inlet = self.vehicle.inlet
        battery = inlet.battery_connected
        if battery:
            if self.mode == "charge":
                self.current = max(0.0, self.target_i)
            else:
                self.current = 0.0
            self.voltage = inlet.battery.terminal_voltage(self.current)
        else:
            self.current = 0.0
            if self.mode in ("test", "precharge"):
                self.voltage += max(-50.0, min(50.0, self.target_v - self.voltage))  # 5 kV/s
            elif self.bleed:
                self.voltage = max(0.0, self.voltage - 30.0)  # bleed 3 kV/s
        out: list[CanFrame] = []
        if self.flags is not None:
            out.append(self.codec.encode(self.flags, self.pistol, now))
            self.flags = None
        if self.limits is not None:
            out.append(self.codec.encode(self.limits, self.pistol, now))
            self.limits = None
        if not self.silent and now + 1e-9 >= self.next_status:
            self.next_status = now + 0.1
            status = PowerModulesStatus(
                round(self.voltage, 1),
                round(self.current, 1),
                35.0,
                30.0,
                Permission.ALLOWED if self.system_enable else Permission.NOT_ALLOWED,
                self.insulation_kohm,
            )
            out.append(self.codec.encode(status, self.pistol, now))
        return out


class Rig:
    """Emulator + scripted power side on a fake clock."""

    def __init__(
        self,
        codec: Codec,
        *,
        vehicle: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
        scenario: dict[str, Any] | None = None,
    ) -> None:
        self.codec = codec
        self.vehicle = Vehicle(from_mapping(VehicleParams, {**FAST, **(vehicle or {})}))
        cfg = {"boot_time": 0.2, "closing_time": 0.5, **(config or {})}
        sc = {"plug_in_delay": 0.5, **(scenario or {})}
        self.sim = ControllerSimulator(
            codec,
            from_mapping(ControllerSimConfig, cfg),
            self.vehicle,
            from_mapping(Scenario, sc),
        )
        self.power = ScriptedPowerSide(codec, self.vehicle)
        self.now = 0.0
        self.sent: list[CanFrame] = []
        self.states: list[ControllerState] = []

    def run(self, seconds: float, until: Any = None) -> bool:
        """Step for ``seconds`` or until ``until(self)`` holds; return whether it did."""
        end = self.now + seconds
        pending: list[CanFrame] = []
        while self.now < end:
            frames = self.sim.step(self.now, pending)
            self.sent.extend(frames)
            self.power.handle(self.now, frames)
            pending = self.power.step(self.now)
            if not self.states or self.states[-1] is not self.sim.state:
                self.states.append(self.sim.state)
            self.now = round(self.now + DT, 6)
            if until is not None and until(self):
                return True
        return until is None

    def run_to(self, state: ControllerState, seconds: float = 30.0) -> None:
        assert self.run(seconds, lambda r: r.sim.state is state), (
            f"{state.label} not reached; states {[s.label for s in self.states]}, "
            f"events {self.sim.events[-5:]}"
        )

    def messages(self, kind: type[CanMessage]) -> list[Any]:
        return [m for _, m in self.power.log if isinstance(m, kind)]

    def flags(self, **kw: Any) -> None:
        base = self.power.flags or self.sim.flags
        self.power.flags = replace(base, **kw)


@pytest.fixture(scope="module")
def codec() -> Codec:
    return load_codec()


NORMAL_CCS = [
    S.INITIALISING,
    S.WAITING_FOR_PEV,
    S.NEGOTIATING_CONNECTION,
    S.CONNECTED_WITH_FULL_INFO,
    S.INSULATION_TEST,
    S.PRECHARGE,
    S.WAITING_FOR_CHARGE,
    S.CHARGING,
    S.ENDING_CHARGE,
    S.WELDING_DETECTION,
    S.CLOSING_COMMUNICATION,
    S.WAITING_FOR_PEV,
]


def test_full_ccs_session_clean_stop(codec: Codec) -> None:
    rig = Rig(codec, vehicle={"initial_soc": 10.0, "target_soc": 80.0})
    assert rig.run(120, lambda r: r.sim.state is S.WAITING_FOR_PEV and r.sim.sessions == 1)
    assert rig.states == NORMAL_CCS
    assert rig.sim.session_result is SessionEnd.CLEAN_STOP
    assert rig.vehicle.soc >= 80.0
    assert rig.sim.emergency_count == 0
    # energy consistent with the battery model: 70 % of 60 kWh (+ losses in R_i)
    assert 0.7 * 60_000 <= rig.sim.energy_wh <= 0.75 * 60_000
    assert len(rig.messages(ChargeSessionFinished)) == 1
    statuses = rig.messages(ChargeStatusChange)
    assert [s.vehicle_ready_for_charging for s in statuses] == [
        ChargeStatus.CHARGE_STARTED,
        ChargeStatus.CHARGE_STOPPED,
    ]


def test_heartbeat_every_100_ms_in_every_state(codec: Codec) -> None:
    rig = Rig(codec)
    rig.run(60, lambda r: r.sim.sessions == 1 and r.sim.state is S.WAITING_FOR_PEV)
    times = [
        f.timestamp for f in rig.sent if isinstance(codec.decode(f, 1), AdvanticsControllerStatus)
    ]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) > 100
    assert min(gaps) >= 0.099 and max(gaps) <= 0.101


def test_new_charge_session_repeats_until_system_enable(codec: Codec) -> None:
    rig = Rig(codec)
    rig.power.system_enable = False
    rig.run_to(S.CONNECTED_WITH_FULL_INFO)
    rig.run(1.0)
    assert rig.sim.state is S.CONNECTED_WITH_FULL_INFO  # wake-up gate (9.5 step 13)
    n = len(rig.messages(NewChargeSession))
    assert 9 <= n <= 11
    first = rig.messages(NewChargeSession)[0]
    assert first.ev_maximum_voltage == 410.0 and first.state_of_charge == 20
    rig.power.system_enable = True
    rig.run_to(S.INSULATION_TEST, 2.0)
    rig.run(1.0)
    assert len(rig.messages(NewChargeSession)) <= n + 2  # stops once Allowed is seen
    # one standby Charging_Loop right before the insulation test (9.5 step 14)
    loops = rig.messages(ChargingLoop)
    assert loops and loops[0].is_standby


def test_insulation_pass_ramp_down_and_precharge(codec: Codec) -> None:
    rig = Rig(codec)
    rig.run_to(S.INSULATION_TEST)
    tests = []
    rig.run_to(S.PRECHARGE, 10)
    tests = rig.messages(InsulationTest)
    voltages = [t.test_voltage for t in tests]
    assert voltages[0] == 410.0  # min(vehicle permitted = max voltage, charger max)
    assert 0.0 in voltages  # ramp-down frames
    assert rig.sim.test_voltage == 410.0
    rig.run_to(S.WAITING_FOR_CHARGE, 10)
    pre = rig.messages(Precharge)
    assert pre[-1].maximum_current == 0.0 and all(p.maximum_current == 2.0 for p in pre[:-1])
    assert rig.vehicle.contactors_closed


@pytest.mark.parametrize("iterations", [10, 50])
def test_insulation_pass_rule_counts_iterations(codec: Codec, iterations: int) -> None:
    rig = Rig(codec, config={"insulation_pass_iterations": iterations})
    rig.run_to(S.INSULATION_TEST)
    rig.run(60, lambda r: r.sim.test_voltage and r.power.voltage >= 0.9 * 410)
    start = rig.now
    rig.run(60, lambda r: 0.0 in [t.test_voltage for t in r.messages(InsulationTest)])
    assert iterations * 0.1 - 0.15 <= rig.now - start <= iterations * 0.1 + 0.25


def test_insulation_below_100_ohm_per_volt_times_out(codec: Codec) -> None:
    rig = Rig(codec, config={"insulation_timeout": 3.0}, vehicle={"cable_check_timeout": 60})
    rig.power.insulation_kohm = 40.0  # 40 kOhm at 410 V < 100 Ohm/V (41 kOhm)
    rig.run_to(S.INSULATION_TEST)
    t0 = rig.now
    rig.run_to(S.CLOSING_COMMUNICATION, 10)
    assert 2.9 <= rig.now - t0 <= 3.2
    assert rig.sim.session_result is SessionEnd.RUSHED_STOP
    assert "insulation test failed" in rig.sim.end_reason
    assert rig.messages(InsulationTest)[-1].test_voltage == 0.0
    assert rig.vehicle.phase is VehiclePhase.DONE


def test_scenario_insulation_fault_fails_the_test(codec: Codec) -> None:
    rig = Rig(codec, config={"insulation_timeout": 2.0}, scenario={"insulation_fault_kohm": 20})
    rig.run_to(S.CLOSING_COMMUNICATION, 30)
    assert "insulation test failed" in rig.sim.end_reason
    assert S.PRECHARGE not in rig.states


def test_power_status_timeout_is_an_emergency_stop(codec: Codec) -> None:
    rig = Rig(codec)
    rig.run_to(S.CHARGING)
    rig.power.silent = True
    t0 = rig.now
    rig.run_to(S.CLOSING_COMMUNICATION, 5)
    assert 0.5 <= rig.now - t0 <= 0.7
    assert rig.sim.emergency is EmergencyStopOrigin.EVSE
    assert "Power_Modules_Status timeout" in rig.sim.end_reason
    rig.run(0.5)
    stops = rig.messages(EmergencyStop)
    assert len(stops) >= 4 and all(s.origin is EmergencyStopOrigin.EVSE for s in stops)
    assert rig.messages(ChargeSessionFinished)[-1].state is SessionEnd.RUSHED_STOP
    assert not rig.vehicle.contactors_closed


def test_power_status_not_supervised_before_the_session(codec: Codec) -> None:
    rig = Rig(codec, scenario={"plug_in_delay": 5.0})
    rig.power.silent = True
    rig.run(4.0)
    assert rig.sim.state is S.WAITING_FOR_PEV and rig.sim.emergency is None
    rig.power.silent = False
    rig.run_to(S.CHARGING)


def test_system_enable_zero_in_charging_is_an_emergency_stop(codec: Codec) -> None:
    rig = Rig(codec)
    rig.run_to(S.CHARGING)
    rig.run(0.5)
    rig.power.system_enable = False
    rig.run_to(S.CLOSING_COMMUNICATION, 1)
    assert rig.sim.emergency is EmergencyStopOrigin.EVSE
    assert rig.messages(ChargeStatusChange)[-1].vehicle_ready_for_charging is (
        ChargeStatus.CHARGE_STOPPED
    )
    assert rig.messages(ChargingLoop)[-1].is_standby


def test_system_enable_zero_before_charging_refuses_the_session(codec: Codec) -> None:
    rig = Rig(codec)
    rig.run_to(S.INSULATION_TEST)
    rig.power.system_enable = False
    rig.run_to(S.CLOSING_COMMUNICATION, 1)
    assert rig.sim.emergency is None
    assert rig.sim.session_result is SessionEnd.RUSHED_STOP
    assert "service unavailable" in rig.sim.end_reason


def test_insulation_interlock_during_charging(codec: Codec) -> None:
    rig = Rig(codec)
    rig.run_to(S.CHARGING)
    rig.power.insulation_kohm = 30.0  # < 100 Ohm/V x 410 V
    rig.run_to(S.CLOSING_COMMUNICATION, 1)
    assert rig.sim.emergency is EmergencyStopOrigin.EVSE
    assert "insulation" in rig.sim.end_reason


def test_emergency_stop_clears_when_the_controller_returns_to_idle(codec: Codec) -> None:
    rig = Rig(codec)
    rig.run_to(S.CHARGING)
    rig.power.system_enable = False
    rig.run_to(S.CLOSING_COMMUNICATION, 1)
    rig.power.system_enable = True
    rig.run_to(S.WAITING_FOR_PEV, 2)
    n = len(rig.messages(EmergencyStop))
    rig.run(1.0)
    assert len(rig.messages(EmergencyStop)) == n
    assert rig.sim.emergency is None


def test_user_stop_button_ends_the_charge_normally(codec: Codec) -> None:
    rig = Rig(codec, config={"use_sequence_flags": True})
    rig.flags(start_charge_authorisation=Permission.ALLOWED)
    rig.run_to(S.CHARGING)
    rig.run(0.5)
    rig.flags(user_stop_button=ButtonState.PRESSED)
    rig.run_to(S.ENDING_CHARGE, 1)
    assert rig.vehicle.stop_reason == "user stop button"
    rig.flags(user_stop_button=ButtonState.NOT_PRESSED)
    rig.run_to(S.CLOSING_COMMUNICATION, 10)
    assert rig.sim.session_result is SessionEnd.CLEAN_STOP


def test_user_stop_ignored_without_sequence_flags(codec: Codec) -> None:
    rig = Rig(codec)
    rig.run_to(S.CHARGING)
    rig.flags(user_stop_button=ButtonState.PRESSED)
    rig.run(1.0)
    assert rig.sim.state is S.CHARGING


def test_not_available_until_start_authorisation(codec: Codec) -> None:
    rig = Rig(codec, config={"use_sequence_flags": True})
    rig.run(3.0)  # vehicle plugged in at 0.5 s, user intent remembered
    assert rig.sim.state is S.NOT_AVAILABLE and rig.vehicle.plugged_in
    rig.flags(start_charge_authorisation=Permission.ALLOWED)
    rig.run(0.1)
    assert rig.sim.state is S.NEGOTIATING_CONNECTION
    texts = [t for _, t in rig.sim.events]
    assert any(t.startswith("Not_Available -> Waiting_For_PEV") for t in texts)
    rig.flags(start_charge_authorisation=Permission.NOT_ALLOWED)  # no effect in a session
    rig.run_to(S.CHARGING)


def test_idle_controller_returns_to_not_available(codec: Codec) -> None:
    rig = Rig(codec, config={"use_sequence_flags": True}, scenario={"plug_in_delay": -1})
    rig.flags(start_charge_authorisation=Permission.ALLOWED)
    rig.run_to(S.WAITING_FOR_PEV, 2)
    rig.flags(start_charge_authorisation=Permission.NOT_ALLOWED)
    rig.run_to(S.NOT_AVAILABLE, 1)


def test_chademo_session_without_precharge(codec: Codec) -> None:
    rig = Rig(codec, vehicle={"protocol": CHADEMO, "initial_soc": 10.0, "target_soc": 80.0})
    assert rig.run(120, lambda r: r.sim.sessions == 1 and r.sim.state is S.WAITING_FOR_PEV)
    assert S.PRECHARGE not in rig.states
    assert rig.states[4:8] == [
        S.INSULATION_TEST,
        S.WAITING_FOR_CHARGE,
        S.CHARGING,
        S.ENDING_CHARGE,
    ]
    assert rig.sim.session_result is SessionEnd.CLEAN_STOP
    assert not rig.messages(Precharge)
    ncs = rig.messages(NewChargeSession)[0]
    assert ncs.plug_and_pins.label == "CHAdeMO" and ncs.ev_maximum_current == 0.0


def test_chademo_start_button_withheld(codec: Codec) -> None:
    rig = Rig(
        codec,
        vehicle={"protocol": CHADEMO},
        config={"use_sequence_flags": True},
        scenario={"withhold_start": True},
    )
    rig.flags(start_charge_authorisation=Permission.ALLOWED)
    rig.run(3.0)
    assert rig.sim.state is S.WAITING_FOR_PEV and rig.vehicle.plugged_in
    rig.flags(chademo_start_button=ButtonState.PRESSED)
    rig.run_to(S.NEGOTIATING_CONNECTION, 0.2)
    rig.flags(chademo_start_button=ButtonState.NOT_PRESSED)
    rig.run_to(S.CHARGING)


def test_ccs_authorisation_accepted(codec: Codec) -> None:
    cfg = {"use_sequence_flags": True, "ccs_external_authorisation": True}
    rig = Rig(codec, config=cfg)
    rig.flags(start_charge_authorisation=Permission.ALLOWED)
    rig.run_to(S.CCS_AUTHORISATION_PROCESS)
    rig.run(2.0)
    assert rig.sim.state is S.CCS_AUTHORISATION_PROCESS
    rig.flags(ccs_authorisation_valid=Validity.VALID, ccs_authorisation_done=Completion.DONE)
    rig.run_to(S.CONNECTED_WITH_FULL_INFO, 0.2)
    rig.run_to(S.CHARGING)


def test_ccs_authorisation_refused_by_customer(codec: Codec) -> None:
    cfg = {"use_sequence_flags": True, "ccs_external_authorisation": True}
    rig = Rig(codec, config=cfg)
    rig.flags(start_charge_authorisation=Permission.ALLOWED)
    rig.run_to(S.CCS_AUTHORISATION_PROCESS)
    rig.flags(ccs_authorisation_done=Completion.DONE)  # Valid = 0
    rig.run_to(S.CLOSING_COMMUNICATION, 0.2)
    assert rig.sim.session_result is SessionEnd.RUSHED_STOP
    assert not rig.messages(NewChargeSession)
    assert rig.vehicle.phase is VehiclePhase.DONE


def test_scenario_ccs_authorisation_refused(codec: Codec) -> None:
    rig = Rig(codec, scenario={"ccs_authorisation_refused": True})
    rig.run_to(S.CLOSING_COMMUNICATION)
    assert "refused" in rig.sim.end_reason
    assert S.CONNECTED_WITH_FULL_INFO not in rig.states


def test_charge_parameters_done_gates_the_cable_check(codec: Codec) -> None:
    cfg = {"use_sequence_flags": True, "wait_charge_parameters": True}
    rig = Rig(codec, config=cfg)
    rig.flags(start_charge_authorisation=Permission.ALLOWED)
    rig.run_to(S.CONNECTED_WITH_FULL_INFO)
    rig.run(2.0)
    assert rig.sim.state is S.CONNECTED_WITH_FULL_INFO
    assert rig.vehicle.charger_max_current is None
    rig.power.limits = PowerModulesLimits(400.0, 100.0)
    rig.run(0.2)
    rig.flags(charge_parameters_done=Completion.DONE)
    rig.run_to(S.INSULATION_TEST, 0.3)
    assert rig.vehicle.charger_max_voltage == 400.0
    assert rig.sim.test_voltage == 400.0
    rig.run_to(S.CHARGING)
    rig.run(1.0)
    assert max(m.target_current for m in rig.messages(ChargingLoop)) <= 100.0


def test_vehicle_stops_early(codec: Codec) -> None:
    rig = Rig(codec, scenario={"stop_after": 1.0})
    rig.run_to(S.CHARGING)
    t0 = rig.now
    rig.run_to(S.ENDING_CHARGE, 2)
    assert 0.95 <= rig.now - t0 <= 1.1
    rig.run_to(S.CLOSING_COMMUNICATION, 10)
    assert rig.sim.session_result is SessionEnd.CLEAN_STOP
    assert rig.vehicle.soc < 80


def test_unplug_mid_charge(codec: Codec) -> None:
    rig = Rig(codec, scenario={"unplug_after": 1.0})
    rig.run_to(S.CHARGING)
    rig.run_to(S.CLOSING_COMMUNICATION, 2)
    assert rig.sim.session_result is SessionEnd.RUSHED_STOP
    assert "unplugged" in rig.sim.end_reason
    assert rig.messages(ChargingLoop)[-1].is_standby
    assert not rig.vehicle.plugged_in


def test_ev_emergency_stop(codec: Codec) -> None:
    rig = Rig(codec, scenario={"ev_emergency_after": 1.0})
    rig.run_to(S.CHARGING)
    rig.run_to(S.CLOSING_COMMUNICATION, 2)
    assert rig.sim.emergency is EmergencyStopOrigin.PEV
    rig.run(0.3)
    assert {m.origin for m in rig.messages(EmergencyStop)} == {EmergencyStopOrigin.PEV}


def test_controller_reset(codec: Codec) -> None:
    rig = Rig(codec, scenario={"reset_after": 1.0, "reset_duration": 1.0})
    rig.run_to(S.CHARGING)
    rig.run(1.05)
    assert rig.sim.silent
    n = len(rig.sent)
    rig.run(0.9)
    assert len(rig.sent) == n  # heartbeat stopped
    assert not rig.vehicle.contactors_closed and rig.vehicle.phase is VehiclePhase.DONE
    rig.run(0.2)
    assert codec.decode(rig.sent[n], 1) == AdvanticsControllerStatus(S.INITIALISING)
    rig.run_to(S.WAITING_FOR_PEV, 1)
    assert not rig.messages(ChargeSessionFinished)


def test_delayed_charge(codec: Codec) -> None:
    rig = Rig(codec, scenario={"delayed_charge": 5.0})
    rig.run_to(S.WAITING_FOR_CHARGE)
    t0 = rig.now
    rig.run_to(S.CHARGING, 10)
    assert 5.2 <= rig.now - t0 <= 5.5


def test_replug_runs_many_sessions(codec: Codec) -> None:
    rig = Rig(
        codec,
        vehicle={"initial_soc": 70.0, "target_soc": 75.0, "unplug_delay": 0.2},
        scenario={"replug_delay": 0.3},
    )
    assert rig.run(120, lambda r: r.sim.sessions == 3 and r.sim.state is S.WAITING_FOR_PEV)
    assert rig.vehicle.sessions == 3
    assert len(rig.messages(ChargeSessionFinished)) == 3


def test_stays_unplugged_after_the_session_by_default(codec: Codec) -> None:
    rig = Rig(codec, vehicle={"initial_soc": 70.0, "target_soc": 72.0, "unplug_delay": 0.2})
    rig.run(60, lambda r: r.sim.sessions == 1 and r.sim.state is S.WAITING_FOR_PEV)
    rig.run(5.0)
    assert rig.sim.sessions == 1 and not rig.vehicle.plugged_in


def test_frames_of_other_pistols_and_garbage_are_ignored(codec: Codec) -> None:
    rig = Rig(codec)
    status = PowerModulesStatus(400.0, 0.0, 30.0, 30.0, Permission.NOT_ALLOWED, 0.0)
    other = codec.encode(status, 2)
    bad = CanFrame(0x01060010, b"\x00")
    rig.sim.step(0.0, [other, bad])
    assert rig.sim.power_status is None and rig.sim.rx_errors == 2


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="needs use_sequence_flags"):
        ControllerSimConfig(ccs_external_authorisation=True)
    with pytest.raises(ConfigError, match="pistol_index"):
        ControllerSimConfig(pistol_index=32)
    with pytest.raises(ConfigError, match="reset_state"):
        Scenario(reset_state="Sleeping")


@pytest.mark.parametrize(
    "vehicle",
    [
        {"protocol": "CCS_DIN_70121_2012_V2"},
        {"protocol": "CCS_ISO_15118_2013_V2"},
        {"protocol": CHADEMO},
    ],
)
def test_every_frame_decodes_with_the_vendor_kcd(
    codec: Codec, vendor_kcd: Any, vehicle: dict[str, Any]
) -> None:
    rig = Rig(
        codec,
        vehicle={**vehicle, "initial_soc": 60.0, "target_soc": 70.0},
        config={"pistol_index": 7},
        scenario={"replug_delay": 0.3},
    )
    rig.power.pistol = 7
    rig.run(120, lambda r: r.sim.sessions == 2 and r.sim.state is S.WAITING_FOR_PEV)
    names = set()
    for frame in rig.sent:
        assert frame.arbitration_id >> 24 == 7
        message = vendor_kcd.get_message_by_frame_id(frame.arbitration_id & 0x00FFFFFF)
        assert len(frame.data) == message.length
        message.decode(frame.data, decode_choices=True)
        names.add(message.name)
    expected = {
        "Advantics_Controller_Status",
        "New_Charge_Session",
        "Insulation_Test",
        "Charging_Loop",
        "Charge_Status_Change",
        "Charge_Session_Finished",
    }
    assert expected <= names
    chademo = vehicle["protocol"] == CHADEMO
    assert ("Precharge" in names) is not chademo
    assert ("CCS_Extra_Information" in names) is not chademo


def test_user_stop_in_waiting_for_charge(codec: Codec) -> None:
    rig = Rig(codec, config={"use_sequence_flags": True}, scenario={"delayed_charge": 10.0})
    rig.flags(start_charge_authorisation=Permission.ALLOWED)
    rig.run_to(S.WAITING_FOR_CHARGE)
    rig.flags(user_stop_button=ButtonState.PRESSED)
    rig.run_to(S.CLOSING_COMMUNICATION, 5)
    assert S.CHARGING not in rig.states
    texts = [t for _, t in rig.sim.events]
    assert any(t.startswith("Waiting_For_Charge -> Ending_Charge") for t in texts)
    assert rig.sim.session_result is SessionEnd.CLEAN_STOP


def test_user_stop_before_the_charge_ends_the_session(codec: Codec) -> None:
    rig = Rig(codec, config={"use_sequence_flags": True})
    rig.flags(start_charge_authorisation=Permission.ALLOWED)
    rig.run_to(S.INSULATION_TEST)
    rig.flags(user_stop_button=ButtonState.PRESSED)
    rig.run_to(S.CLOSING_COMMUNICATION, 0.5)
    assert rig.sim.session_result is SessionEnd.RUSHED_STOP


def test_without_welding_detection_ending_goes_to_closing(codec: Codec) -> None:
    rig = Rig(codec, vehicle={"welding_detection": False}, scenario={"stop_after": 0.5})
    rig.run_to(S.ENDING_CHARGE)
    rig.run_to(S.CLOSING_COMMUNICATION, 5)
    assert S.WELDING_DETECTION not in rig.states
    assert rig.sim.session_result is SessionEnd.CLEAN_STOP


@pytest.mark.parametrize("protocol", ["CCS_ISO_15118_2013_V2", CHADEMO])
def test_output_voltage_that_does_not_fall_makes_a_rushed_stop(
    codec: Codec, protocol: str
) -> None:
    rig = Rig(
        codec,
        vehicle={"protocol": protocol},
        config={"unlock_timeout": 2.0},
        scenario={"stop_after": 0.5},
    )
    rig.run_to(S.CHARGING)
    rig.power.bleed = False  # output held at battery voltage after the contactors open
    rig.run_to(S.CLOSING_COMMUNICATION, 10)
    assert rig.sim.session_result is SessionEnd.RUSHED_STOP
    assert "forced" in rig.sim.end_reason


def test_chademo_waits_for_10_V_before_unlocking(codec: Codec) -> None:
    rig = Rig(codec, vehicle={"protocol": CHADEMO}, scenario={"stop_after": 0.5})
    rig.run_to(S.WELDING_DETECTION)
    rig.run_to(S.CLOSING_COMMUNICATION, 10)
    assert rig.power.voltage <= 10.0
    assert rig.sim.session_result is SessionEnd.CLEAN_STOP
