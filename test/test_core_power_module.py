"""Transcript tests of the pure power-module state machine, one per power-side checklist item.

Each test drives :class:`PowerModule` through :class:`ControlLoop` with the simulated converter
(fast: simulated time, 20 ms control period) and asserts on the setpoints, the measured output
and the ``Power_Modules_Status`` content. Targets marked † in the spec are asserted as stated.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import pytest

from evse_can_ros.config import ConfigError
from evse_can_ros.converter.base import Mode
from evse_can_ros.converter.simulated import SimulatedConverter, SimulatedConverterParams
from evse_can_ros.core.battery import Battery, BatteryParams, VehicleInlet
from evse_can_ros.core.power_module import (
    ControlLoop,
    Phase,
    PowerModule,
    PowerModuleConfig,
    PowerModuleOutput,
)
from evse_can_ros.protocol import (
    AdvanticsControllerStatus,
    CanMessage,
    ChargeSessionFinished,
    ChargeStatus,
    ChargeStatusChange,
    ChargingLoop,
    CommunicationProtocol,
    ControllerState,
    EmergencyStop,
    EmergencyStopOrigin,
    EvIdCcsPart2Din,
    InsulationTest,
    NewChargeSession,
    Permission,
    PlugAndPins,
    Precharge,
    SessionEnd,
)

DT = 0.02
CCS = CommunicationProtocol.CCS_ISO_15118_2013_V2
CHADEMO = CommunicationProtocol.CHADEMO_V1_0_V1_1_V1_2


class Rig:
    """PowerModule + simulated converter + a battery behind the inlet, in simulated time."""

    def __init__(self, cfg: PowerModuleConfig | None = None, **sim: Any) -> None:
        sim.setdefault("wake_time", 0.2)
        self.inlet = VehicleInlet(
            battery=Battery(BatteryParams(initial_soc=50.0)), plugged_in=True
        )
        self.conv = SimulatedConverter(SimulatedConverterParams(**sim), self.inlet)
        self.conv.open()
        self.pm = PowerModule(cfg)
        self.loop = ControlLoop(self.pm, self.conv)
        self.t = 0.0
        self.hb: int | None = None
        self._next_hb = 0.0
        self._repeat: list[tuple[CanMessage, float]] = []
        self.trace: list[tuple[float, PowerModuleOutput]] = []
        self.out: PowerModuleOutput | None = None

    # inputs
    def send(self, *msgs: CanMessage) -> None:
        for m in msgs:
            self.pm.on_message(m, self.t)

    def state(self, s: int) -> None:
        """Heartbeat with state ``s`` every 100 ms from now on (and one frame at once)."""
        self.hb = s
        self.send(AdvanticsControllerStatus(ControllerState(s)))
        self._next_hb = self.t + 0.1

    def repeat(self, *msgs: CanMessage) -> None:
        """Send ``msgs`` now and every 100 ms (replaces the previous repeated set)."""
        self._repeat = [(m, self.t) for m in msgs]
        self.send(*msgs)

    # time
    def run(self, seconds: float, until: Callable[[Rig], bool] | None = None) -> float:
        """Run up to ``seconds``; return the time taken until ``until`` held (or math.inf)."""
        start, end = self.t, self.t + seconds
        while self.t < end - 1e-9:
            self.t = round(self.t + DT, 9)
            if self.hb is not None and self.t >= self._next_hb - 1e-9:
                self.send(AdvanticsControllerStatus(ControllerState(self.hb)))
                self._next_hb += 0.1
            for i, (m, last) in enumerate(self._repeat):
                if self.t - last >= 0.1 - 1e-9:
                    self.send(m)
                    self._repeat[i] = (m, self.t)
            self.out = self.loop.tick(self.t)
            self.trace.append((self.t, self.out))
            if until is not None and until(self):
                return self.t - start
        return math.inf if until is not None else self.t - start

    # observations
    @property
    def v(self) -> float:
        assert self.out is not None
        return self.out.status.present_voltage

    @property
    def i(self) -> float:
        assert self.out is not None
        return self.out.status.present_current

    @property
    def enable(self) -> bool:
        assert self.out is not None
        return self.out.status.system_enable == Permission.ALLOWED

    @property
    def phase(self) -> str:
        assert self.out is not None
        return self.out.phase

    def max_current_since(self, t0: float) -> float:
        return max(o.status.present_current for t, o in self.trace if t >= t0)


def new_session(protocol: CommunicationProtocol = CCS, plug: PlugAndPins | None = None) -> Any:
    if plug is None:
        plug = PlugAndPins.CHADEMO if protocol.is_chademo else PlugAndPins.CCS_DC_CORE
    return NewChargeSession(protocol, plug, 500.0, 200.0, 60.0, 50)


def open_session(rig: Rig, protocol: CommunicationProtocol = CCS) -> float:
    rig.state(1)
    rig.run(0.2)
    rig.state(2)
    rig.run(0.2)
    rig.state(3)
    rig.repeat(new_session(protocol))
    took = rig.run(5.0, until=lambda r: r.enable)
    rig.repeat()
    rig.send(ChargingLoop(0.0, 0.0, 50))
    return took


def insulation_test(rig: Rig, volts: float = 500.0, hold: float = 1.0) -> float:
    rig.state(4)
    rig.repeat(InsulationTest(volts))
    took = rig.run(10.0, until=lambda r: r.v >= 0.9 * volts)
    rig.run(hold)
    rig.repeat(InsulationTest(0.0), ChargingLoop(0.0, 0.0, 50))
    rig.run(5.0, until=lambda r: r.v <= 20.0)
    rig.repeat()
    return took


def precharge(rig: Rig) -> None:
    ocv = rig.inlet.battery.ocv()
    rig.state(5)
    rig.repeat(Precharge(round(ocv, 1), 2.0))
    rig.run(10.0, until=lambda r: abs(r.v - ocv) <= 5.0)
    rig.run(0.5)
    rig.inlet.contactors_closed = True
    rig.repeat()
    rig.send(Precharge(round(ocv, 1), 0.0), ChargingLoop(0.0, 0.0, 50))
    rig.run(0.2)


def to_charging(rig: Rig, protocol: CommunicationProtocol = CCS) -> None:
    open_session(rig, protocol)
    insulation_test(rig)
    if protocol.is_chademo:
        rig.inlet.contactors_closed = True
    else:
        precharge(rig)
    rig.state(6)
    rig.send(ChargeStatusChange(ChargeStatus.CHARGE_STARTED), ChargingLoop(0.0, 0.0, 50))
    rig.run(0.3)
    rig.state(7)


def charge(rig: Rig, volts: float, amps: float, seconds: float = 2.0) -> None:
    rig.repeat(ChargingLoop(volts, amps, 50))
    rig.run(seconds)


# --- heartbeat / link (PM-07, PM-08, PM-44) ---------------------------------------------------


def test_pm07_link_lost_stops_power_at_once() -> None:
    rig = Rig()
    to_charging(rig)
    charge(rig, 450.0, 100.0)
    assert rig.i == pytest.approx(100.0, abs=1.0)
    rig.pm.on_link_lost(rig.t, "no Advantics_Controller_Status for 200 ms")
    rig.run(DT)  # the next control step commands OFF; the step after measures it
    assert rig.conv.setpoint.mode is Mode.OFF
    rig.run(DT)
    assert rig.out is not None and rig.out.setpoint.mode is Mode.OFF
    assert rig.i == 0.0
    assert not rig.enable and rig.phase == "OFF_LATCHED"


def test_pm07_controller_silence_link_timeout_of_the_node_itself() -> None:
    rig = Rig(PowerModuleConfig(link_timeout=0.2))
    to_charging(rig)
    charge(rig, 450.0, 100.0)
    rig.hb = None
    rig.repeat()
    t0 = rig.t
    took = rig.run(2.0, until=lambda r: r.i == 0.0)
    assert took <= 0.2 + 2 * DT
    assert rig.t - t0 > 0.2 - 1e-9
    assert "no controller message" in rig.pm.fault


def test_a_late_step_defers_the_link_timeout_to_the_next_step() -> None:
    """A step late by more than link_timeout / 2 (this process starved, the controller's
    messages still in its queue) does not trip; the next step does if the silence is real."""
    rig = Rig(PowerModuleConfig(link_timeout=0.2))
    to_charging(rig)
    charge(rig, 450.0, 100.0)
    # the executor stalls 0.24 s: the control step runs first, then the queued frames
    rig.t = round(rig.t + 0.24, 9)
    rig.loop.tick(rig.t)
    rig.send(AdvanticsControllerStatus(ControllerState(rig.hb or 7)))
    rig._next_hb = rig.t + 0.1
    rig.run(0.5)
    assert not rig.pm.fault and rig.i > 0.0
    # the same stall with nothing queued: tripped at the next step
    rig.hb = None
    rig.repeat()
    rig.t = round(rig.t + 0.24, 9)
    rig.loop.tick(rig.t)
    assert not rig.pm.fault
    rig.run(DT)
    assert "no controller message" in rig.pm.fault


def test_pm08_no_power_after_heartbeat_restore_until_new_session() -> None:
    rig = Rig()
    to_charging(rig)
    charge(rig, 450.0, 100.0)
    rig.pm.on_link_lost(rig.t, "heartbeat lost")
    rig.run(0.1)
    rig.state(7)  # heartbeat back mid-charge
    charge(rig, 450.0, 100.0, 1.0)
    assert rig.max_current_since(rig.t - 0.9) == 0.0
    rig.repeat(new_session())  # repeated frames of the old session do not clear the latch
    rig.run(0.5)
    assert rig.phase == "OFF_LATCHED" and not rig.enable
    rig.repeat()
    rig.state(1)  # controller back to idle, then a new session
    rig.run(0.2)
    assert open_session(rig) < 5.0
    assert rig.pm.fault == ""


def test_pm44_bus_off_behaves_like_heartbeat_loss() -> None:
    rig = Rig()
    to_charging(rig)
    charge(rig, 450.0, 50.0)
    rig.pm.on_link_lost(rig.t, "CAN bus-off")
    rig.run(2 * DT)
    assert rig.i == 0.0 and "bus-off" in rig.pm.fault


# --- status and wake-up (PM-09..14, PM-22, PM-23) -----------------------------------------------


def test_pm09_status_every_control_period_while_awake() -> None:
    rig = Rig()
    open_session(rig)
    n = len(rig.trace)
    rig.run(1.0)
    assert len(rig.trace) - n == round(1.0 / DT)  # the node publishes from every step


def test_pm10_wake_on_new_charge_session() -> None:
    rig = Rig(wake_time=0.3)
    rig.state(1)
    rig.run(0.5)
    assert rig.out is not None and not rig.out.wake and not rig.conv.ready
    rig.state(3)
    rig.send(new_session())
    rig.run(DT)
    assert rig.out.wake and rig.phase == "WAKING"


def test_pm11_status_carries_the_measurements() -> None:
    rig = Rig()
    to_charging(rig)
    charge(rig, 450.0, 80.0)
    m = rig.loop.measurement
    assert m is not None and rig.out is not None
    assert rig.out.status.present_voltage == m.voltage
    assert rig.out.status.present_current == m.current == pytest.approx(80.0, abs=0.5)
    assert rig.out.status.power_modules_temperature == m.module_temperature


def test_pm13_system_enable_is_a_permission() -> None:
    rig = Rig()
    open_session(rig)
    assert all(
        o.status.system_enable in (Permission.ALLOWED, Permission.NOT_ALLOWED)
        for _, o in rig.trace
    )


def test_pm14_insulation_resistance_reported_in_kohm() -> None:
    rig = Rig(insulation_resistance=300e3)
    open_session(rig)
    assert rig.out is not None and rig.out.status.insulation_resistance == pytest.approx(300.0)


def test_pm22_system_enable_within_5_s_of_new_charge_session() -> None:
    rig = Rig(wake_time=1.0)
    took = open_session(rig)
    assert 1.0 <= took < 5.0
    assert not any(o.status.system_enable for _, o in rig.trace[:-1])


def test_pm22_system_enable_regardless_of_the_state_value() -> None:
    rig = Rig()
    rig.state(2)  # controller state lags: still Negotiating_Connection
    rig.repeat(new_session())
    assert rig.run(2.0, until=lambda r: r.enable) < 1.0


def test_pm23_enable_kept_for_the_session_and_dropped_on_module_fault() -> None:
    rig = Rig()
    to_charging(rig)
    first = next(i for i, (_, o) in enumerate(rig.trace) if o.status.system_enable)
    assert all(o.status.system_enable for _, o in rig.trace[first:])
    charge(rig, 450.0, 100.0)
    rig.conv.inject("module_trip")
    rig.run(DT * 2)
    assert not rig.enable and rig.i == 0.0 and "module trip" in rig.pm.fault


# --- insulation test (PM-24..29) ------------------------------------------------------------


def test_pm24_standby_stops_conversion_without_bleeding_after_precharge() -> None:
    rig = Rig()
    to_charging(rig)
    charge(rig, 450.0, 100.0)
    v_batt = rig.v
    rig.repeat()
    rig.send(ChargingLoop(0.0, 0.0, 50))
    took = rig.run(1.0, until=lambda r: r.i == 0.0)
    assert took <= 0.1  # † 100 ms
    rig.run(1.0)
    assert rig.out is not None and rig.out.setpoint.mode is Mode.OFF
    assert rig.v == pytest.approx(rig.inlet.battery.ocv(), abs=1.0) and rig.v > v_batt - 10
    assert rig.phase == "STANDBY"


def test_pm25_insulation_reaches_90_percent() -> None:
    rig = Rig()
    open_session(rig)
    took = insulation_test(rig, 500.0)
    assert took < 5.0  # †
    assert rig.pm._insulation_tested


def test_pm26_test_voltage_changes_are_followed() -> None:
    rig = Rig()
    open_session(rig)
    rig.state(4)
    rig.repeat(InsulationTest(500.0))
    rig.run(2.0)
    assert rig.v == pytest.approx(500.0, abs=2.0)
    rig.repeat(InsulationTest(800.0))
    rig.run(2.0)
    assert rig.v == pytest.approx(800.0, abs=2.0)
    rig.repeat(InsulationTest(600.0))
    rig.run(3.0)
    assert rig.v == pytest.approx(600.0, abs=5.0)


def test_pm27_real_insulation_resistance_every_frame() -> None:
    rig = Rig()
    open_session(rig)
    rig.state(4)
    rig.repeat(InsulationTest(500.0))
    rig.run(1.0)
    assert rig.out is not None and rig.out.status.insulation_resistance > 500
    rig.conv.inject("insulation_fault")  # 40 kOhm at 500 V: the controller fails the test
    rig.run(DT)
    assert rig.out.status.insulation_resistance == pytest.approx(40.0)
    assert rig.phase == "INSULATION_TEST"  # the controller decides pass/fail, not us


def test_pm28_post_insulation_ramp_down_below_20_v_in_2_s() -> None:
    rig = Rig()
    open_session(rig)
    rig.state(4)
    rig.repeat(InsulationTest(1000.0))
    rig.run(3.0)
    assert rig.v > 990.0
    rig.repeat(InsulationTest(0.0), ChargingLoop(0.0, 0.0, 50))
    took = rig.run(5.0, until=lambda r: r.v <= 20.0)
    assert took < 2.0  # †
    rig.run(0.5)
    assert rig.phase == "STANDBY" and rig.v <= 20.0


def test_pm29_insulation_fault_during_charging_stops_and_reports() -> None:
    rig = Rig(insulation_fault_resistance=20e3)  # < 100 Ohm/V at ~380 V
    to_charging(rig)
    charge(rig, 450.0, 100.0)
    rig.conv.inject("insulation_fault")
    took = rig.run(1.0, until=lambda r: r.i == 0.0)
    assert took <= 2 * DT + 1e-9
    assert rig.out is not None and rig.out.status.insulation_resistance == pytest.approx(20.0)
    assert not rig.enable and "insulation fault" in rig.pm.fault


# --- precharge (PM-30..32) ---------------------------------------------------------------------


def test_pm30_precharge_current_limited_and_tracking() -> None:
    rig = Rig(voltage_slope=0.0)  # a step: only the current limit holds the current back
    open_session(rig)
    insulation_test(rig)
    rig.state(5)
    t0 = rig.t
    rig.repeat(Precharge(360.0, 2.0))
    rig.run(2.0)
    assert rig.max_current_since(t0) <= 2.0 + 1e-9
    rig.repeat(Precharge(370.0, 2.0))
    rig.run(1.0)
    assert rig.v == pytest.approx(370.0, abs=5.0)


def test_pm31_precharge_within_5_v() -> None:
    rig = Rig()
    open_session(rig)
    insulation_test(rig)
    rig.state(5)
    rig.repeat(Precharge(365.2, 2.0))
    rig.run(3.0)
    steady = [o.status.present_voltage for t, o in rig.trace if t > rig.t - 1.0]
    assert all(abs(v - 365.2) <= 5.0 for v in steady)


def test_pm32_final_precharge_frame_keeps_output_up() -> None:
    rig = Rig()
    open_session(rig)
    insulation_test(rig)
    precharge(rig)
    rig.run(2.0)
    assert rig.phase == "STANDBY"
    assert rig.out is not None and rig.out.setpoint.mode is Mode.OFF
    assert rig.v == pytest.approx(rig.inlet.battery.ocv(), abs=1.0)


# --- charging (PM-33..38) ---------------------------------------------------------------------


def test_pm33_waiting_for_charge_stays_ready_for_hours() -> None:
    rig = Rig()
    to_charging(rig)
    rig.state(6)
    rig.run(120.0)  # stands for the 2 h soak (simulated time, no timeout involved)
    assert rig.enable and rig.phase == "STANDBY" and rig.i == 0.0
    rig.state(7)
    charge(rig, 450.0, 50.0)
    assert rig.i == pytest.approx(50.0, abs=0.5)


def test_pm34_current_clamped_to_capability_and_limits_without_exceeding_voltage() -> None:
    rig = Rig(max_current=150.0)
    to_charging(rig)
    charge(rig, 450.0, 300.0)
    assert rig.i == pytest.approx(150.0, abs=0.5)  # capability
    rig.pm.set_limits(max_current=80.0)
    rig.run(0.5)
    assert rig.i == pytest.approx(80.0, abs=0.5)  # operator limit
    rig.pm.set_limits()
    ocv = rig.inlet.battery.ocv()
    charge(rig, ocv + 4.0, 200.0)  # CV: 4 V above OCV through 0.08 Ohm = 50 A
    assert rig.v <= ocv + 4.0 + 1e-6
    assert rig.i == pytest.approx(50.0, abs=1.0)


def test_pm34_power_limit_is_honoured() -> None:
    rig = Rig(max_power=20000.0)
    to_charging(rig)
    charge(rig, 450.0, 200.0)
    assert rig.v * rig.i <= 20000.0 * 1.01


def test_pm35_step_changes_are_ramped_without_overshoot() -> None:
    rig = Rig(current_slope=0.0)  # the ramp under test is the state machine's own
    to_charging(rig)
    charge(rig, 450.0, 10.0, 1.0)
    t0 = rig.t
    charge(rig, 450.0, 150.0, 2.0)
    setpoints = [o.setpoint.current_limit for t, o in rig.trace if t > t0]
    steps = [b - a for a, b in itertools.pairwise(setpoints)]
    assert max(steps) <= 200.0 * DT + 1e-6  # 200 A/s
    assert rig.max_current_since(t0) <= 150.0 + 1e-6
    assert rig.i == pytest.approx(150.0, abs=0.5)
    charge(rig, 450.0, 20.0, 0.1)  # decreases act at once
    assert rig.i == pytest.approx(20.0, abs=0.5)


def test_pm36_last_target_kept_over_a_30_s_gap() -> None:
    rig = Rig()
    to_charging(rig)
    rig.repeat()
    rig.send(ChargingLoop(450.0, 120.0, 50))
    rig.run(30.0)
    assert rig.i == pytest.approx(120.0, abs=0.5) and rig.phase == "CHARGING"


def test_pm37_negative_current_zero_and_zero_voltage_is_standby() -> None:
    rig = Rig()
    to_charging(rig)
    charge(rig, 450.0, -50.0, 1.0)
    assert rig.i == 0.0 and rig.phase == "CHARGING"
    assert rig.out is not None and rig.out.setpoint.mode is Mode.REGULATE
    charge(rig, 0.0, 50.0, 1.0)
    assert rig.i == 0.0 and rig.phase == "STANDBY"
    rig.repeat(ChargingLoop(450.0, 60.0, 3))  # SoC is informative only
    rig.run(1.0)
    a = rig.i
    rig.repeat(ChargingLoop(450.0, 60.0, 99))
    rig.run(1.0)
    assert rig.i == a == pytest.approx(60.0, abs=0.5)


def test_pm38_end_of_charge_current_below_1_a_promptly() -> None:
    rig = Rig()
    to_charging(rig)
    charge(rig, 450.0, 150.0)
    rig.repeat()
    rig.state(8)
    rig.send(ChargeStatusChange(ChargeStatus.CHARGE_STOPPED), ChargingLoop(0.0, 0.0, 80))
    took = rig.run(2.0, until=lambda r: r.i < 1.0)
    assert took <= 0.1
    assert rig.v == pytest.approx(rig.inlet.battery.ocv(), abs=1.0)  # not forced down


# --- end of session (PM-39..41) ------------------------------------------------------------------


def test_pm39_welding_detection_reports_true_voltage() -> None:
    rig = Rig()
    to_charging(rig)
    charge(rig, 450.0, 100.0)
    rig.repeat()
    rig.state(8)
    rig.send(ChargingLoop(0.0, 0.0, 80))
    rig.run(0.5)
    rig.state(9)
    rig.inlet.contactors_closed = False
    rig.run(1.0)
    assert rig.i == 0.0 and rig.v < rig.inlet.battery.ocv() - 100  # falls: nothing holds it
    rig.inlet.contactors_closed = True
    rig.run(0.1)
    assert rig.v == pytest.approx(rig.inlet.battery.ocv(), abs=1.0)


def test_pm40_chademo_output_falls_below_10_v_after_contactors_open() -> None:
    rig = Rig(passive_bleed_resistance=500.0)
    to_charging(rig, CHADEMO)
    charge(rig, 450.0, 100.0)
    rig.repeat()
    rig.state(8)
    rig.send(ChargeStatusChange(ChargeStatus.CHARGE_STOPPED), ChargingLoop(0.0, 0.0, 80))
    rig.run(0.5)
    rig.inlet.contactors_closed = False
    took = rig.run(10.0, until=lambda r: r.v <= 10.0)
    assert took < 3.0


def test_pm41_session_finished_returns_to_off() -> None:
    rig = Rig()
    to_charging(rig)
    charge(rig, 450.0, 100.0)
    rig.repeat()
    rig.state(10)
    rig.send(ChargeSessionFinished(SessionEnd.CLEAN_STOP))
    rig.run(0.2)
    assert rig.phase == "IDLE" and not rig.enable and rig.i == 0.0
    assert rig.out is not None and not rig.out.wake


# --- emergency and state gating (PM-42, PM-43, PM-45) -------------------------------------------


@pytest.mark.parametrize("origin", [EmergencyStopOrigin.EVSE, EmergencyStopOrigin.PEV])
def test_pm42_emergency_stop_off_at_once_and_latched(origin: EmergencyStopOrigin) -> None:
    rig = Rig()
    to_charging(rig)
    charge(rig, 450.0, 150.0)
    rig.repeat(EmergencyStop(origin), ChargingLoop(450.0, 150.0, 50))
    took = rig.run(1.0, until=lambda r: r.i == 0.0)
    assert (
        took <= 2 * DT + 1e-9
    )  # † < 50 ms (OFF commanded in the first step, measured in the next)
    rig.run(1.0)
    assert rig.max_current_since(rig.t - 0.95) == 0.0
    assert origin.label in rig.pm.fault
    rig.state(1)  # still arriving: stay off even across a new session frame
    rig.run(0.3)
    rig.state(3)
    rig.send(new_session())
    rig.run(0.3)
    assert rig.phase == "OFF_LATCHED"
    rig.repeat()  # emergency over; idle again; new session
    rig.state(1)
    rig.run(0.3)
    assert open_session(rig) < 5.0


@pytest.mark.parametrize("state", [0, 1, 2, 8, 9, 10, 11, 12, 13, 200])
def test_pm43_no_current_in_non_power_states(state: int) -> None:
    rig = Rig()
    to_charging(rig)
    rig.state(state)
    rig.repeat(ChargingLoop(450.0, 100.0, 50), Precharge(400.0, 2.0))
    rig.run(1.0)
    assert rig.max_current_since(rig.t - 0.95) == 0.0
    assert all(o.setpoint.mode is not Mode.REGULATE for t, o in rig.trace if t > rig.t - 0.95)


def test_pm43_commands_outside_a_session_are_ignored() -> None:
    rig = Rig()
    rig.state(7)
    rig.repeat(ChargingLoop(450.0, 100.0, 50), InsulationTest(500.0))
    rig.run(1.0)
    assert rig.phase == "IDLE" and rig.v == 0.0 and rig.i == 0.0


@pytest.mark.parametrize("state", [6, 8])
def test_pm45_state_change_implies_standby_when_frames_are_missed(state: int) -> None:
    rig = Rig()
    open_session(rig)
    insulation_test(rig)
    rig.state(5)
    rig.repeat(Precharge(round(rig.inlet.battery.ocv(), 1), 2.0))
    rig.run(1.0)
    rig.inlet.contactors_closed = True
    rig.repeat()  # the final Precharge frame and the standby are lost
    rig.state(state)
    rig.run(0.1)
    assert rig.phase == "STANDBY" and rig.out is not None
    assert rig.out.setpoint.mode is Mode.OFF


def test_pm45_lagging_state_does_not_stop_a_fresh_request() -> None:
    rig = Rig()
    to_charging(rig)
    rig.state(6)
    rig.run(0.3)
    rig.repeat(ChargingLoop(450.0, 50.0, 50))  # arrives before the state frame says 7
    rig.run(0.3)
    assert rig.phase == "CHARGING" and rig.i > 0


def test_pm46_auxiliary_messages_have_no_effect() -> None:
    rig = Rig()
    to_charging(rig)
    charge(rig, 450.0, 50.0)
    rig.send(EvIdCcsPart2Din(1, 2, 3, 4, 5, 6))
    rig.run(0.2)
    assert rig.phase == "CHARGING" and rig.i == pytest.approx(50.0, abs=0.5)


# --- whole sessions and decisions --------------------------------------------------------------


def test_full_ccs_session_transcript() -> None:
    rig = Rig()
    to_charging(rig)
    charge(rig, 450.0, 150.0)
    phases = [o.phase for _, o in rig.trace]
    order = [
        "IDLE",
        "WAKING",
        "STANDBY",
        "INSULATION_TEST",
        "DISCHARGE",
        "PRECHARGE",
        "STANDBY",
        "CHARGING",
    ]
    compressed = [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p]
    assert compressed == order, compressed
    assert rig.pm.session_energy_wh > 0


def test_chademo_session_without_precharge() -> None:
    rig = Rig()
    to_charging(rig, CHADEMO)
    charge(rig, 450.0, 100.0)
    assert rig.i == pytest.approx(100.0, abs=0.5)
    assert "PRECHARGE" not in {o.phase for _, o in rig.trace}


def test_a17_ac_session_refused() -> None:
    rig = Rig()
    rig.state(3)
    rig.repeat(new_session(CommunicationProtocol.CCS_PWM, PlugAndPins.CCS_AC))
    rig.run(1.0)
    assert not rig.enable and "A17" in rig.pm.fault


def test_converter_communication_loss_latches_off() -> None:
    rig = Rig()
    to_charging(rig)
    charge(rig, 450.0, 100.0)
    rig.conv.inject("communication_loss")
    rig.run(DT)
    assert rig.conv.setpoint.mode is Mode.OFF and rig.phase == "OFF_LATCHED"
    assert not rig.enable and "no answer from the power modules" in rig.pm.fault
    rig.conv.inject("communication_loss", False)
    charge(rig, 450.0, 100.0, 0.5)
    assert rig.i == 0.0  # latched until a new session


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="discharge_voltage"):
        PowerModuleConfig(discharge_voltage=25.0)
    assert Phase.CHARGING.value == "CHARGING"
    with pytest.raises(ValueError, match="max_current"):
        PowerModule().set_limits(max_current=-1.0)


# --- issue 13: deviations D1-D3 ------------------------------------------------------------------


def test_d1_state_frame_lagging_the_first_request_keeps_it() -> None:
    """Spec A9: the first Waiting_For_Charge frame can arrive after the first Charging_Loop."""
    rig = Rig()
    open_session(rig)
    insulation_test(rig)
    precharge(rig)  # the last state frame said 5
    rig.hb = None  # the next state frame (6) is composed before the request and sent late
    rig.run(0.05)
    rig.send(ChargeStatusChange(ChargeStatus.CHARGE_STARTED), ChargingLoop(0.0, 0.0, 50))
    rig.send(ChargingLoop(450.0, 120.0, 50))  # the first request
    rig.run(0.02)
    rig.state(6)  # the lagging frame
    rig.run(0.05)
    rig.state(7)
    took = rig.run(2.0, until=lambda r: r.i >= 119.0)
    assert took < 1.0 and rig.phase == "CHARGING"  # not cancelled, no wait for a new request


def test_d1_an_older_request_is_still_stopped_by_state_6() -> None:
    rig = Rig()
    to_charging(rig)
    charge(rig, 450.0, 100.0)
    rig.repeat()
    rig.run(0.25)  # two state frames after the last request
    rig.state(6)  # e.g. a missed standby frame: resynchronise (PM-45)
    rig.run(0.1)
    assert rig.phase == "STANDBY" and rig.i == 0.0


def test_d2_session_limits_are_enforced_locally() -> None:
    rig = Rig()
    to_charging(rig)
    rig.pm.set_limits(420.0, 60.0, 20000.0)  # Power_Modules_Limits + the goal's power limit
    charge(rig, 450.0, 150.0)
    assert rig.conv.setpoint.voltage <= 420.0 + 1e-6
    assert rig.i <= 60.0 + 0.5
    assert rig.conv.setpoint.voltage * rig.conv.setpoint.current_limit <= 20000.0 + 1.0
    rig.pm.set_limits(0.0, 0.0, 0.0)  # 0 = no limit of ours (controller default)
    assert rig.pm.limits == (math.inf, math.inf, math.inf)
    with pytest.raises(ValueError):
        rig.pm.set_limits(math.nan, None, None)


def _latched_in(state: int) -> Rig:
    """A rig whose output latched off (heartbeat lost) while the controller was in ``state``."""
    rig = Rig()
    rig.state(1)
    rig.run(0.2)
    rig.state(2)
    rig.run(0.2)
    if state in (3, 7):
        rig.state(3)
        rig.repeat(new_session())
        rig.run(1.0, until=lambda r: r.enable)
        rig.repeat()
        if state == 7:
            to_state = [4, 5, 6, 7]
            for s in to_state:
                rig.state(s)
                rig.run(0.1)
    elif state == 11:
        rig.state(11)
        rig.run(0.2)
    rig.pm.on_link_lost(rig.t, "heartbeat lost")
    rig.run(0.1)
    return rig


@pytest.mark.parametrize("state", [2, 11])
def test_d3_loss_before_the_session_opened_is_cleared_by_its_first_new_charge_session(
    state: int,
) -> None:
    rig = _latched_in(state)
    rig.state(state)  # heartbeat back in the same state
    rig.run(0.2)
    rig.state(3)
    rig.repeat(new_session())
    assert rig.run(5.0, until=lambda r: r.enable) < 5.0  # the session works
    assert rig.pm.fault == ""


def test_d3_repeated_frames_of_the_faulted_session_never_clear_it() -> None:
    rig = _latched_in(3)
    rig.state(3)
    rig.repeat(new_session())
    rig.run(1.0)
    assert rig.phase == "OFF_LATCHED" and not rig.enable


def test_d3_a_missed_idle_state_still_counts_as_a_new_session() -> None:
    """Lost while charging, back in Negotiating_Connection: a new session started meanwhile."""
    rig = _latched_in(7)
    rig.state(2)
    rig.run(0.2)
    rig.state(3)
    rig.repeat(new_session())
    assert rig.run(5.0, until=lambda r: r.enable) < 5.0


def test_d3_session_finished_re_arms_after_an_emergency_stop() -> None:
    rig = _latched_in(3)
    rig.send(EmergencyStop(EmergencyStopOrigin.EVSE))
    rig.repeat(new_session())
    rig.run(0.5)
    assert rig.phase == "OFF_LATCHED"
    rig.repeat()
    rig.send(ChargeSessionFinished(SessionEnd.RUSHED_STOP))
    rig.state(3)
    rig.repeat(new_session())
    assert rig.run(5.0, until=lambda r: r.enable) < 5.0


# --- issue 12 item 6: CHAdeMO-safe active discharge ----------------------------------------------


def test_discharge_stops_when_a_battery_appears_and_does_not_drain_it() -> None:
    rig = Rig(voltage_slope=0.0)
    open_session(rig, CHADEMO)
    rig.state(4)
    rig.repeat(InsulationTest(500.0))
    rig.run(1.0)
    rig.repeat(InsulationTest(0.0), ChargingLoop(0.0, 0.0, 50))
    rig.run(0.1)  # discharging
    assert rig.phase == "DISCHARGE"
    soc = rig.inlet.battery.soc
    rig.inlet.contactors_closed = True  # the vehicle closes its contactors during the ramp-down
    rig.run(0.3)
    assert rig.phase == "STANDBY" and rig.conv.setpoint.mode is Mode.OFF
    assert (
        "battery is connected" in "".join(r for r in [rig.pm.phase.value])
        or rig.phase == "STANDBY"
    )
    rig.run(5.0)
    assert rig.inlet.battery.soc == soc  # nothing drawn from the battery
    assert rig.v == pytest.approx(rig.inlet.battery.ocv(), abs=1.0)


def test_discharge_stops_when_the_state_leaves_the_test() -> None:
    rig = Rig()
    open_session(rig)
    rig.state(4)
    rig.repeat(InsulationTest(500.0))
    rig.run(1.0)
    rig.repeat(InsulationTest(0.0), ChargingLoop(0.0, 0.0, 50))
    rig.run(0.05)
    assert rig.phase == "DISCHARGE"
    rig.repeat()
    rig.state(6)
    rig.run(0.05)
    assert rig.phase == "STANDBY" and rig.conv.setpoint.mode is Mode.OFF
