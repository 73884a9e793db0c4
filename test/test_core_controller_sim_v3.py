"""Controller emulator in interface v3 against a scripted v3 power side (no ROS, fake clock).

``PowerStubV3`` is a deliberately small customer side speaking v3: it decodes the emulator's
frames with the v3 codec, answers with Power_Modules_Status (signed current) and
DC_Power_Parameters every 100 ms, and follows DC_Power_Control with an ideal converter: the
insulation-test and precharge voltages, active lowering only when asked (and only with the battery
off the output, B2), and in Power_Transfer the operating point of the command (Target_Mode: the
target; Range_Mode: OCPP_Control's setpoint if any, else the range maximum, clamped, B3), ramped
at ``ramp`` A/s through 0 (B4) if set. What it measures (V x I over time) is kept to check the
energy against the battery model.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest

from evse_can_ros.config import ConfigError, from_mapping
from evse_can_ros.core.controller_sim import ControllerSimConfig, ControllerSimulator, Scenario
from evse_can_ros.core.vehicle import Vehicle, VehicleParams
from evse_can_ros.protocol import (
    CanFrame,
    CanMessage,
    ChargeSessionFinished,
    ChargeStatusChange,
    Codec,
    ControllerState,
    DcPowerControl,
    DcPowerParameters,
    EmergencyStop,
    EmergencyStopOrigin,
    EvInformationBattery,
    EvInformationDischargeLimits,
    EvInformationEnergy,
    NewChargeSessionV3,
    OcppControl,
    Permission,
    PowerFunction,
    PowerModulesStatus,
    SequenceControl,
    SessionEnd,
    SetpointsMode,
    VoltageLowering,
    load_codec,
)

S = ControllerState
F = PowerFunction
DT = 0.01
ISO20 = "CCS_ISO_15118_2022"
FAST = {"soc_time_scale": 200.0, "negotiation_time": 0.5, "current_request_delay": 0.3}
V3 = load_codec(protocol_version=3)
LOWERING = VoltageLowering.LOWERING


@dataclass
class PowerStubV3:
    """The customer side in v3, scripted (see module docstring)."""

    codec: Codec
    vehicle: Vehicle
    pistol: int = 1
    system_enable: bool = True
    insulation_kohm: float = 500.0
    silent: bool = False
    parameters: DcPowerParameters | None = field(
        default_factory=lambda: DcPowerParameters(1000.0, 300.0, 150.0)
    )
    flags: SequenceControl | None = None  # sent on the next step
    ramp: float | None = None  # A/s; None = the current follows at once
    lowering: bool = True  # honour Lower_Output_Voltage
    voltage: float = 0.0
    current: float = 0.0
    command: DcPowerControl | None = None
    ocpp: float | None = None
    next_status: float = 0.0
    measured_wh: float = 0.0  # V x I over (unscaled) time
    log: list[tuple[float, CanMessage]] = field(default_factory=list)  # from the controller
    statuses: list[tuple[float, PowerModulesStatus]] = field(default_factory=list)  # sent

    def handle(self, now: float, frames: list[CanFrame]) -> None:
        for f in frames:
            m = self.codec.decode(f, self.pistol)
            self.log.append((now, m))
            if isinstance(m, DcPowerControl):
                self.command = m
            elif isinstance(m, OcppControl):
                self.ocpp = m.dynamic_target_current
            elif isinstance(m, EmergencyStop | ChargeSessionFinished):
                self.command, self.ocpp = None, None

    def _target_current(self) -> float:
        c = self.command
        if c is None or c.power_function is not F.POWER_TRANSFER:
            return 0.0
        return c.operating_current(self.ocpp)

    def step(self, now: float) -> list[CanFrame]:
        inlet = self.vehicle.inlet
        target = self._target_current() if inlet.battery_connected else 0.0
        if self.ramp is None or not inlet.battery_connected:
            self.current = target
        else:
            self.current += max(-self.ramp * DT, min(self.ramp * DT, target - self.current))
        c = self.command
        if inlet.battery_connected:
            self.voltage = inlet.battery.terminal_voltage(self.current)
            self.measured_wh += self.voltage * self.current * DT / 3600.0
        elif c is not None and c.power_function in (F.INSULATION_TEST, F.PRECHARGE):
            self.voltage += max(-50.0, min(50.0, c.target_voltage - self.voltage))  # 5 kV/s
        elif (
            self.lowering and c is not None and c.lower_output_voltage is VoltageLowering.LOWERING
        ):
            self.voltage = max(0.0, self.voltage - 30.0)  # active lowering, 3 kV/s
        return self._frames(now)

    def _frames(self, now: float) -> list[CanFrame]:
        out: list[CanFrame] = []
        if self.flags is not None:
            out.append(self.codec.encode(self.flags, self.pistol, now))
            self.flags = None
        if self.silent or now + 1e-9 < self.next_status:
            return out
        self.next_status = now + 0.1
        enable = Permission.ALLOWED if self.system_enable else Permission.NOT_ALLOWED
        status = PowerModulesStatus(
            round(self.voltage, 1),
            round(self.current, 1),
            35.0,
            30.0,
            enable,
            self.insulation_kohm,
        )
        out.append(self.codec.encode(status, self.pistol, now))
        self.statuses.append((now, status))
        if self.parameters is not None:
            out.append(self.codec.encode(self.parameters, self.pistol, now))
        return out


class Rig:
    """Emulator (v3 codec) + v3 power stub on a fake clock; ``trace`` = (time, state, message)."""

    def __init__(
        self,
        *,
        vehicle: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
        scenario: dict[str, Any] | None = None,
        codec: Codec = V3,
    ) -> None:
        self.vehicle = Vehicle(from_mapping(VehicleParams, {**FAST, **(vehicle or {})}))
        cfg = {"boot_time": 0.2, "closing_time": 0.5, **(config or {})}
        self.sim = ControllerSimulator(
            codec,
            from_mapping(ControllerSimConfig, cfg),
            self.vehicle,
            from_mapping(Scenario, {"plug_in_delay": 0.5, **(scenario or {})}),
        )
        self.power = PowerStubV3(codec, self.vehicle, pistol=cfg.get("pistol_index", 1))
        self.now = 0.0
        self.sent: list[CanFrame] = []
        self.trace: list[tuple[float, ControllerState, CanMessage]] = []
        self.states: list[ControllerState] = []
        self.soc_min = self.vehicle.soc

    def run(self, seconds: float, until: Any = None) -> bool:
        end = self.now + seconds
        pending: list[CanFrame] = []
        while self.now < end:
            frames = self.sim.step(self.now, pending)
            self.sent.extend(frames)
            n = len(self.power.log)
            self.power.handle(self.now, frames)
            self.trace.extend((self.now, self.sim.state, m) for _, m in self.power.log[n:])
            pending = self.power.step(self.now)
            if not self.states or self.states[-1] is not self.sim.state:
                self.states.append(self.sim.state)
            self.soc_min = min(self.soc_min, self.vehicle.soc)
            self.now = round(self.now + DT, 6)
            if until is not None and until(self):
                return True
        return until is None

    def run_to(self, state: ControllerState, seconds: float = 30.0) -> None:
        assert self.run(seconds, lambda r: r.sim.state is state), (
            f"{state.label} not reached; states {[s.label for s in self.states]}, "
            f"events {self.sim.events[-5:]}"
        )

    def session(self, seconds: float = 300.0) -> None:
        """Run one whole session, back to Waiting_For_PEV."""
        assert self.run(
            seconds, lambda r: r.sim.sessions == 1 and r.sim.state is S.WAITING_FOR_PEV
        )

    def messages(self, kind: type[CanMessage]) -> list[Any]:
        return [m for _, m in self.power.log if isinstance(m, kind)]

    def commands(self) -> list[tuple[float, ControllerState, DcPowerControl]]:
        return [(t, s, m) for t, s, m in self.trace if isinstance(m, DcPowerControl)]


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


def label(m: CanMessage) -> str:
    """A short name of a command-like message for transcripts."""
    if isinstance(m, DcPowerControl):
        parts = [m.power_function.label]
        if m.power_function is F.POWER_TRANSFER:
            parts.append(m.setpoints_mode.label)
        parts.append(m.output_contactors.label)
        if m.lower_output_voltage is VoltageLowering.LOWERING:
            parts.append("Lowering")
        return "/".join(parts)
    if isinstance(m, ChargeStatusChange):
        return m.vehicle_ready_for_charging.label
    if isinstance(m, ChargeSessionFinished):
        return m.state.label
    return m.NAME


def collapsed(labels: list[str]) -> list[str]:
    return [k for k, _ in itertools.groupby(labels)]


# --- a v3 charge, frame by frame (v3 digest 6) -----------------------------------------------

COMMANDS = (
    DcPowerControl,
    ChargeStatusChange,
    ChargeSessionFinished,
    NewChargeSessionV3,
    EmergencyStop,
)


def test_v3_charge_completes_with_a_clean_stop() -> None:
    rig = Rig(vehicle={"initial_soc": 10.0, "target_soc": 80.0})
    rig.session()
    assert rig.states == NORMAL_CCS
    assert rig.sim.session_result is SessionEnd.CLEAN_STOP
    assert rig.sim.emergency_count == 0 and rig.sim.rx_errors == 0
    assert rig.vehicle.soc >= 80.0
    assert 0.7 * 60_000 <= rig.sim.energy_wh <= 0.75 * 60_000
    assert rig.vehicle.session_discharged_wh == 0.0


def test_v3_sequence_transcript() -> None:
    """The v3 sequence of the digest (6), one run of equal commands per line."""
    rig = Rig(vehicle={"initial_soc": 70.0, "target_soc": 72.0})
    rig.session()
    labels = [label(m) for _, _, m in rig.trace if isinstance(m, COMMANDS)]
    assert collapsed(labels) == [
        "New_Charge_Session",  # repeated until System_Enable = Allowed
        "Standby/Close",  # power ready
        "Insulation_Test/Close",
        "Standby/Close/Lowering",  # post-test, while the output is > 20 V
        "Precharge/Close",
        "Standby/Close",  # end of precharge: no lowering, the battery is on the output
        "Charge_Started",
        "Standby/Close",  # Waiting_For_Charge (repeated every 100 ms)
        "Power_Transfer/Target_Mode/Close",
        "Charge_Stopped",
        "Standby/Close",  # (Close, No_Lowering)
        "Standby/Open",  # current < 1 A: the relay opens
        "Standby/Open/Lowering",  # then lowering, repeated to the end of the session
        "Clean_Stop",
    ]
    # each command in its state
    where = {label(m): set() for _, _, m in rig.trace}
    for _, state, m in rig.trace:
        where[label(m)].add(state)
    assert where["Insulation_Test/Close"] == {S.INSULATION_TEST}
    assert where["Standby/Close/Lowering"] == {S.INSULATION_TEST}
    assert where["Precharge/Close"] == {S.PRECHARGE}
    assert where["Power_Transfer/Target_Mode/Close"] == {S.CHARGING}
    assert where["Standby/Open"] <= {S.ENDING_CHARGE, S.WELDING_DETECTION}
    assert where["Standby/Open/Lowering"] <= {S.ENDING_CHARGE, S.WELDING_DETECTION}


def test_v3_command_contents() -> None:
    rig = Rig(vehicle={"initial_soc": 70.0, "target_soc": 72.0})
    rig.session()
    frames = {label(V3.decode(f, 1)): f.data.hex(" ") for f in rig.sent}
    assert frames["Standby/Close"] == "00 00 00 00 00 00 41"
    assert frames["Insulation_Test/Close"] == "04 10 00 00 00 00 42"  # 410.0 V, Target_Mode
    assert frames["Standby/Close/Lowering"] == "00 00 00 00 00 00 c1"
    assert frames["Standby/Open"] == "00 00 00 00 00 00 01"
    assert frames["Standby/Open/Lowering"] == "00 00 00 00 00 00 81"
    pre = [m for _, _, m in rig.commands() if m.power_function is F.PRECHARGE]
    assert pre and all(
        m.current_range_max == 2.0
        and m.current_range_min == 0.0
        and m.setpoints_mode is SetpointsMode.RANGE_MODE
        and abs(m.target_voltage - 390.0) < 10
        for m in pre
    )
    transfer = [m for _, _, m in rig.commands() if m.power_function is F.POWER_TRANSFER]
    assert all(m.current_range_min == m.current_range_max > 0 for m in transfer)
    assert max(m.current_range_max for m in transfer) == 200.0
    assert all(m.target_voltage == 410.0 for m in transfer)


def test_dc_power_control_every_100_ms_in_the_powered_phases() -> None:
    rig = Rig(vehicle={"initial_soc": 70.0, "target_soc": 72.0})
    rig.session()
    times = [t for t, s, _ in rig.commands() if s is not S.CLOSING_COMMUNICATION]
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(times)]
    assert max(gaps) <= 0.1 + 1e-6  # never a gap from power ready to the end of the session
    waiting = [t for t, s, _ in rig.commands() if s is S.WAITING_FOR_CHARGE]
    assert len(waiting) >= 3  # 0.3 s in Waiting_For_Charge


def test_without_repeat_standby_frames_are_single_at_the_phase_changes() -> None:
    rig = Rig(vehicle={"initial_soc": 70.0, "target_soc": 72.0}, config={"repeat_standby": False})
    rig.session()
    waiting = [m for _, s, m in rig.commands() if s is S.WAITING_FOR_CHARGE]
    assert [label(m) for m in waiting] == [
        "Standby/Close",
        "Standby/Close",
    ]  # precharge end, start
    ending = [
        label(m) for _, s, m in rig.commands() if s in (S.ENDING_CHARGE, S.WELDING_DETECTION)
    ]
    assert ending == ["Standby/Close", "Standby/Open", "Standby/Open/Lowering"]
    assert rig.sim.session_result is SessionEnd.CLEAN_STOP


def test_the_relay_opens_only_once_the_current_is_below_1_A() -> None:
    rig = Rig(vehicle={"initial_soc": 70.0, "target_soc": 72.0})
    rig.power.ramp = 200.0  # A/s: 200 A take 1 s to fall
    rig.session()
    opened = next(t for t, _, m in rig.commands() if label(m) == "Standby/Open")
    stopped = next(t for t, _, m in rig.trace if label(m) == "Charge_Stopped")
    reported = [(t, m.present_current) for t, m in rig.power.statuses if stopped <= t < opened]
    assert max(i for _, i in reported) > 100.0  # still flowing after Charge_Stopped ...
    assert opened - stopped >= 0.5  # ... for a while (200 A/s)
    assert abs(reported[-1][1]) < 1.0  # the relay opened on the first report below 1 A
    assert all(abs(i) >= 1.0 for _, i in reported[:-1])


# --- every frame is valid v3.6 (issue 18 acceptance) -------------------------------------------

SCENARIOS: dict[str, dict[str, Any]] = {
    "ccs_iso2": {"vehicle": {"initial_soc": 60.0, "target_soc": 70.0}},
    "chademo": {"vehicle": {"protocol": "CHADEMO_V1_0_V1_1_V1_2", "initial_soc": 60.0}},
    "dynamic_csms": {
        "vehicle": {"protocol": ISO20, "bpt_mode": "dynamic", "initial_soc": 60.0,
                    "min_soc": 50.0, "target_soc": 60.0},
        "scenario": {"csms_setpoint": -80.0, "csms_setpoint_at_limit": 120.0},
    },
    "scheduled": {
        "vehicle": {"protocol": ISO20, "bpt_mode": "scheduled", "initial_soc": 60.0,
                    "min_soc": 50.0, "target_soc": 55.0},
    },
    "chademo_v2g": {
        "vehicle": {"protocol": "CHADEMO_V2_0", "bpt_mode": "dynamic", "initial_soc": 60.0,
                    "min_soc": 50.0, "target_soc": 62.0},
        "scenario": {"csms_setpoint": -50.0, "csms_setpoint_at_limit": 100.0},
    },
    "emergency": {"scenario": {"ev_emergency_after": 0.5}},
    "insulation_fault": {"config": {"insulation_timeout": 1.0},
                         "scenario": {"insulation_fault_kohm": 10.0}},
}  # fmt: skip


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_frame_decodes_strictly_with_our_codec_and_the_vendor_kcd(name: str) -> None:
    from .test_protocol_v3 import vendor_strict_decode

    kw = SCENARIOS[name]
    rig = Rig(**{**kw, "config": {"pistol_index": 7, **kw.get("config", {})}})
    rig.session()
    names = set()
    for frame in rig.sent:
        assert frame.arbitration_id >> 24 == 7
        ours = V3.decode(frame, 7)
        assert V3.spec(ours.NAME).from_controller
        assert vendor_strict_decode("kcd", frame)["name"] == ours.NAME
        names.add(ours.NAME)
    info = {
        "EV_Information_Battery",
        "EV_Information_Voltages",
        "EV_Information_Charge_Limits",
        "EV_Information_Discharge_Limits",
        "EV_Information_Energy",
    }
    common = {"Advantics_Controller_Status", "New_Charge_Session", "DC_Power_Control"}
    assert common | info | {"Charge_Session_Finished"} <= names
    assert ("OCPP_Control" in names) is (name in ("dynamic_csms", "chademo_v2g"))
    assert ("Emergency_Stop" in names) is (name == "emergency")
    assert ("Charge_Status_Change" in names) is (name != "insulation_fault")
    assert ("CCS_Extra_Information" in names) is not name.startswith("chademo")
    clean = name not in ("emergency", "insulation_fault")
    assert (rig.sim.session_result is SessionEnd.CLEAN_STOP) is clean, rig.sim.end_reason


# --- bidirectional sessions (issue 18 item 5) --------------------------------------------------


def energy_checks(rig: Rig, soc0: float) -> None:
    """The session's energy agrees with the battery model and with what the power side measured."""
    v = rig.vehicle
    model = (v.soc - soc0) * v.params.capacity_kwh * 10.0  # Wh, 1 % = capacity x 10 Wh
    assert rig.sim.energy_wh == pytest.approx(model, rel=0.05)
    assert rig.sim.energy_wh == pytest.approx(
        v.session_charged_wh - v.session_discharged_wh, rel=1e-9
    )
    measured = rig.power.measured_wh * v.params.soc_time_scale
    assert rig.sim.energy_wh == pytest.approx(measured, rel=0.05)


def test_scheduled_discharge_session_exports_energy_and_ends_clean() -> None:
    """80 % -> minimum SoC (40 %) -> back to the target (60 %): net export, Clean_Stop."""
    rig = Rig(
        vehicle={"protocol": ISO20, "bpt_mode": "scheduled", "initial_soc": 80.0,
                 "min_soc": 40.0, "target_soc": 60.0, "max_discharge_current": 120.0},
    )  # fmt: skip
    rig.session(600)
    assert rig.sim.session_result is SessionEnd.CLEAN_STOP, rig.sim.end_reason
    assert 39.0 <= rig.soc_min <= 40.0
    assert 60.0 <= rig.vehicle.soc <= 61.0
    assert rig.sim.energy_wh < 0
    assert rig.vehicle.session_discharged_wh > 0.39 * 60_000
    energy_checks(rig, 80.0)
    transfer = [m for _, _, m in rig.commands() if m.power_function is F.POWER_TRANSFER]
    assert all(m.setpoints_mode is SetpointsMode.TARGET_MODE for m in transfer)
    assert all(m.current_range_min == m.current_range_max for m in transfer)
    assert transfer[0].current_range_max == -120.0 and transfer[-1].current_range_max > 0
    assert min(i for _, s in rig.power.statuses for i in [s.present_current]) == -120.0


def test_dynamic_discharge_session_with_a_csms_setpoint() -> None:
    """Range mode: the CSMS discharges the vehicle to its minimum, then charges it to target."""
    rig = Rig(
        vehicle={"protocol": ISO20, "bpt_mode": "dynamic", "initial_soc": 80.0,
                 "min_soc": 30.0, "target_soc": 60.0, "max_discharge_current": 100.0},
        scenario={"csms_setpoint": -90.0, "csms_setpoint_at_limit": 150.0},
    )  # fmt: skip
    rig.power.ramp = 400.0  # through 0 A at the switch (B4)
    rig.session(600)
    assert rig.sim.session_result is SessionEnd.CLEAN_STOP, rig.sim.end_reason
    assert 29.0 <= rig.soc_min <= 30.0
    assert 60.0 <= rig.vehicle.soc <= 61.5
    assert rig.sim.energy_wh < 0
    energy_checks(rig, 80.0)
    assert [m.dynamic_target_current for m in rig.messages(OcppControl)] == [-90.0, 150.0]
    transfer = [m for _, _, m in rig.commands() if m.power_function is F.POWER_TRANSFER]
    assert all(m.setpoints_mode is SetpointsMode.RANGE_MODE for m in transfer)
    assert transfer[0].current_range_min == -100.0  # the vehicle's limit (charger: 150 A)
    assert transfer[0].current_range_max == 0.0  # above its target SoC: no charge
    ranges = {(m.current_range_min < 0, m.current_range_max > 0) for m in transfer}
    assert ranges == {(True, False), (True, True), (False, True)}
    assert rig.sim.emergency_count == 0


def test_dynamic_range_mode_charge_without_a_csms() -> None:
    """No OCPP_Control: a power side that uses the range maximum (B3) charges it to target."""
    rig = Rig(vehicle={"protocol": ISO20, "bpt_mode": "dynamic", "initial_soc": 40.0,
                       "target_soc": 50.0})  # fmt: skip
    rig.session()
    assert rig.sim.session_result is SessionEnd.CLEAN_STOP
    assert not rig.messages(OcppControl)
    assert rig.vehicle.session_discharged_wh == 0.0
    transfer = [m for _, _, m in rig.commands() if m.power_function is F.POWER_TRANSFER]
    assert transfer[0].current_range_min == -100.0 and transfer[0].current_range_max == 200.0
    energy_checks(rig, 40.0)


def test_the_power_sides_discharge_limit_narrows_the_range() -> None:
    rig = Rig(vehicle={"protocol": ISO20, "bpt_mode": "dynamic", "initial_soc": 40.0,
                       "target_soc": 45.0})  # fmt: skip
    rig.power.parameters = DcPowerParameters(450.0, 100.0, 40.0)
    rig.session()
    transfer = [m for _, _, m in rig.commands() if m.power_function is F.POWER_TRANSFER]
    assert {m.current_range_min for m in transfer} == {-40.0}
    assert max(m.current_range_max for m in transfer) == 100.0
    assert {m.target_voltage for m in transfer} == {410.0}  # the vehicle's, below 450 V
    assert rig.sim.charger_limits == (450.0, 100.0) and rig.sim.charger_discharge_limit == 40.0


@pytest.mark.parametrize(
    ("bidirectional", "parameters", "limit"),
    [
        (False, DcPowerParameters(0.0, 0.0, 150.0), 0.0),  # the pistol is not bidirectional
        (True, DcPowerParameters(0.0, 0.0, 0.0), 500.0),  # 0 = the controller's config value
        (True, None, 500.0),  # no DC_Power_Parameters at all: the config
    ],
)
def test_discharge_limit_given_to_the_vehicle(
    bidirectional: bool, parameters: DcPowerParameters | None, limit: float
) -> None:
    rig = Rig(
        vehicle={"protocol": ISO20, "bpt_mode": "scheduled", "initial_soc": 60.0},
        config={"bidirectional": bidirectional},
    )
    rig.power.parameters = parameters
    rig.run_to(S.CHARGING)
    assert rig.vehicle.charger_max_discharge_current == limit
    assert rig.vehicle.discharging is (limit > 0)


def test_a_bidirectional_vehicle_needs_interface_v3() -> None:
    with pytest.raises(ConfigError, match="needs interface v3"):
        Rig(vehicle={"protocol": ISO20, "bpt_mode": "dynamic"}, codec=load_codec())
    Rig(vehicle={"protocol": ISO20}, codec=load_codec())  # charge only: fine in v2


# --- EV information ----------------------------------------------------------------------------


def test_ev_information_once_after_the_session_opens_then_on_change() -> None:
    rig = Rig(vehicle={"protocol": ISO20, "bpt_mode": "dynamic", "initial_soc": 40.0,
                       "min_soc": 25.0, "target_soc": 45.0, "max_discharge_current": 80.0,
                       "max_discharge_power_kw": 30.0, "max_power_kw": 100.0})  # fmt: skip
    rig.session()
    names = [m.NAME for _, _, m in rig.trace if m.NAME != "Advantics_Controller_Status"]
    first = names.index("New_Charge_Session")
    assert names[first + 1 : first + 6] == [
        "EV_Information_Battery",
        "EV_Information_Voltages",
        "EV_Information_Charge_Limits",
        "EV_Information_Discharge_Limits",
        "EV_Information_Energy",
    ]
    for static in ("EV_Information_Charge_Limits", "EV_Information_Discharge_Limits"):
        assert names.count(static) == 1  # never changes
    battery = rig.messages(EvInformationBattery)
    assert battery[0] == EvInformationBattery(60.0, 40, 25, 45, 45)
    socs = [b.present_state_of_charge for b in battery]
    assert socs == sorted(socs) and len(socs) == len(set(socs))  # sent on change only
    assert 45 <= socs[-1] <= 46  # the last reported current flows until the next report
    limits = rig.messages(EvInformationDischargeLimits)[0]
    assert (limits.ev_maximum_discharge_current, limits.ev_maximum_discharge_power) == (80, 30)
    energy = rig.messages(EvInformationEnergy)[0]
    assert (energy.ev_minimum_energy_request, energy.ev_target_energy_request) == (-9.0, 3.0)
    ended = max(t for t, _, m in rig.trace if isinstance(m, ChargeSessionFinished))
    assert not [m for t, _, m in rig.trace if t > ended and m.NAME.startswith("EV_Information")]


def test_a_charge_only_vehicle_reports_no_discharge() -> None:
    rig = Rig(vehicle={"initial_soc": 70.0, "target_soc": 72.0})
    rig.session()
    assert rig.messages(EvInformationDischargeLimits) == [
        EvInformationDischargeLimits(0.0, 0.0, 0.0, 0.0)
    ]
    assert rig.messages(EvInformationBattery)[0].minimum_state_of_charge == 0
    assert rig.messages(EvInformationEnergy)[0].ev_minimum_energy_request == 0


# --- the controller's own checks and the abnormal ends apply in v3 -----------------------------


def test_power_status_timeout_is_an_emergency_stop_in_v3() -> None:
    rig = Rig()
    rig.run_to(S.CHARGING)
    rig.power.silent = True
    rig.run_to(S.CLOSING_COMMUNICATION, 2)
    assert rig.sim.emergency is EmergencyStopOrigin.EVSE
    assert "Power_Modules_Status timeout" in rig.sim.end_reason
    tail = [label(m) for _, _, m in rig.trace if isinstance(m, COMMANDS)][-5:]
    assert tail == [
        "Emergency_Stop",
        "Standby/Open",  # the abort
        "Charge_Stopped",
        "Rushed_Stop",
        "Standby/Open/Lowering",  # entering Closing_Communication at battery voltage
    ]


def test_system_enable_zero_in_charging_is_an_emergency_stop_in_v3() -> None:
    rig = Rig()
    rig.run_to(S.CHARGING)
    rig.power.system_enable = False
    rig.run_to(S.CLOSING_COMMUNICATION, 1)
    assert rig.sim.emergency is EmergencyStopOrigin.EVSE


def test_insulation_interlock_in_v3() -> None:
    rig = Rig()
    rig.run_to(S.CHARGING)
    rig.power.insulation_kohm = 30.0
    rig.run_to(S.CLOSING_COMMUNICATION, 1)
    assert rig.sim.emergency is EmergencyStopOrigin.EVSE and "insulation" in rig.sim.end_reason


def test_a_failed_insulation_test_lowers_the_output_on_closing() -> None:
    rig = Rig(config={"insulation_timeout": 1.0}, scenario={"insulation_fault_kohm": 10.0})
    rig.session()
    assert rig.sim.session_result is SessionEnd.RUSHED_STOP
    end = [label(m) for _, _, m in rig.trace if isinstance(m, COMMANDS)][-3:]
    assert end == ["Standby/Open", "Rushed_Stop", "Standby/Open/Lowering"]
    assert rig.power.voltage == 0.0  # the stub lowered it


def test_closing_without_voltage_sends_no_lowering() -> None:
    rig = Rig(vehicle={"initial_soc": 70.0, "target_soc": 72.0})
    rig.session()
    closing = [m for _, s, m in rig.commands() if s is S.CLOSING_COMMUNICATION]
    assert closing == []  # the output was already <= 20 V (lowered after the end of charge)


def test_output_left_at_voltage_makes_a_rushed_stop() -> None:
    """A power side that ignores Lowering: the CCS vehicle cannot unlock (60 V)."""
    rig = Rig(vehicle={"initial_soc": 70.0, "target_soc": 72.0}, config={"unlock_timeout": 1.0})
    rig.run_to(S.ENDING_CHARGE)
    rig.power.lowering = False
    rig.run_to(S.CLOSING_COMMUNICATION, 10)
    assert rig.sim.session_result is SessionEnd.RUSHED_STOP
    closing = [label(m) for _, s, m in rig.commands() if s is S.CLOSING_COMMUNICATION]
    assert closing == ["Standby/Open/Lowering"]  # on entering Closing_Communication (> 20 V)
