"""Transcript tests of the power-module state machine on interface v3 (v3 digest 5, 9, 10).

The same :class:`PowerModule` as v2, built with ``ProtocolVersion.V3``, driven through
``DC_Power_Control`` frames with the simulated converter (bidirectional unless a test says
otherwise) and a battery behind the inlet. Tests named ``test_v3_NN_...`` cover the power-side
part of item V3-NN of the digest's delta checklist; ``test_bN_...`` the recommended decisions.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from evse_can_ros.converter.base import Mode
from evse_can_ros.core.power_module import ControlLoop, FaultKind, PowerModule, PowerModuleConfig
from evse_can_ros.protocol import (
    ChargeSessionFinished,
    ChargeStatus,
    ChargeStatusChange,
    CommunicationProtocol,
    ContactorState,
    DcPowerControl,
    EvInformationVoltages,
    NewChargeSessionV3,
    OcppControl,
    PlugAndPins,
    PowerFunction,
    ProtocolVersion,
    SessionEnd,
    SetpointsMode,
    VoltageLowering,
)

from .test_core_power_module import Rig

F = PowerFunction
BIDIRECTIONAL = {"max_discharge_current": 200.0, "max_discharge_power": 150000.0}


class RigV3(Rig):
    """:class:`Rig` with a v3 power module and (by default) a bidirectional converter."""

    def __init__(self, cfg: PowerModuleConfig | None = None, **sim: Any) -> None:
        super().__init__(cfg, **{**BIDIRECTIONAL, **sim})
        self.pm = PowerModule(cfg, ProtocolVersion.V3)
        self.loop = ControlLoop(self.pm, self.conv)


def dpc(
    function: PowerFunction = F.STANDBY,
    voltage: float = 0.0,
    high: float = 0.0,
    low: float | None = None,
    *,
    range_mode: bool = False,
    contactors: ContactorState = ContactorState.CLOSE,
    lowering: bool = False,
) -> DcPowerControl:
    return DcPowerControl(
        voltage,
        high,
        high if low is None else low,
        function,
        SetpointsMode.RANGE_MODE if range_mode else SetpointsMode.TARGET_MODE,
        contactors,
        VoltageLowering.LOWERING if lowering else VoltageLowering.NO_LOWERING,
    )


STANDBY = dpc()
LOWER = dpc(contactors=ContactorState.OPEN, lowering=True)


def open_session(rig: RigV3) -> None:
    rig.state(1)
    rig.run(0.2)
    rig.state(2)
    rig.run(0.2)
    rig.state(3)
    rig.repeat(
        NewChargeSessionV3(CommunicationProtocol.CCS_ISO_15118_2022, PlugAndPins.CCS_DC_CORE)
    )
    assert rig.run(5.0, until=lambda r: r.enable) < 5.0
    rig.repeat()
    rig.send(STANDBY)


def insulation_test(rig: RigV3, volts: float = 500.0) -> None:
    rig.state(4)
    rig.repeat(dpc(F.INSULATION_TEST, volts))
    assert rig.run(5.0, until=lambda r: r.v >= 0.9 * volts) < 5.0  # V3-04
    rig.run(0.5)
    rig.repeat(dpc(lowering=True))
    assert rig.run(2.0, until=lambda r: r.v <= 20.0) < 2.0  # V3-04: lowered on request
    rig.repeat()


def precharge(rig: RigV3) -> None:
    ocv = rig.inlet.battery.ocv()
    rig.state(5)
    t0 = rig.t
    rig.repeat(dpc(F.PRECHARGE, round(ocv, 1), 2.0, 0.0, range_mode=True))
    assert rig.run(10.0, until=lambda r: abs(r.v - ocv) <= 5.0) < 10.0
    assert rig.max_current_since(t0) <= 2.0 + 0.2  # V3-05: current <= Current_Range_Max
    rig.run(0.3)
    rig.inlet.contactors_closed = True
    rig.repeat()
    rig.send(STANDBY)
    rig.run(0.2)


def to_transfer(rig: RigV3) -> None:
    open_session(rig)
    insulation_test(rig)
    precharge(rig)
    rig.state(6)
    rig.send(ChargeStatusChange(ChargeStatus.CHARGE_STARTED), STANDBY)
    rig.run(0.3)
    rig.state(7)


def transfer(rig: RigV3, high: float, low: float | None = None, seconds: float = 1.5) -> None:
    rig.repeat(dpc(F.POWER_TRANSFER, 450.0, high, low, range_mode=low is not None))
    rig.run(seconds)


def allow_discharge(rig: RigV3, amps: float = 150.0) -> None:
    rig.pm.set_limits(max_discharge_current=amps)


# --- V3-03 .. V3-05: standby, insulation test, precharge ---------------------------------------


@pytest.mark.parametrize("function", [F.OFF, F.STANDBY])
def test_v3_03_off_and_standby_convert_nothing_and_keep_the_capacitors(function: F) -> None:
    rig = RigV3()
    open_session(rig)
    insulation_test(rig)
    precharge_v = rig.inlet.battery.ocv()
    rig.state(5)
    rig.repeat(dpc(F.PRECHARGE, round(precharge_v, 1), 2.0, 0.0, range_mode=True))
    rig.run(3.0, until=lambda r: abs(r.v - precharge_v) <= 5.0)
    rig.repeat(dpc(function))
    rig.run(0.2)
    assert rig.conv.setpoint.mode is Mode.OFF and rig.phase == "STANDBY"
    assert rig.v > 0.7 * precharge_v  # only the passive bleed: no active discharge (V3-03)


def test_v3_04_standby_without_lowering_after_the_test_does_not_discharge() -> None:
    rig = RigV3()
    open_session(rig)
    rig.state(4)
    rig.repeat(dpc(F.INSULATION_TEST, 500.0))
    rig.run(1.0)
    rig.repeat(STANDBY)
    rig.run(0.1)
    assert rig.phase == "STANDBY" and rig.conv.setpoint.mode is Mode.OFF
    rig.repeat(dpc(lowering=True))  # the controller asks for it: now it lowers
    rig.run(0.1)
    assert rig.phase == "DISCHARGE"
    assert rig.run(2.0, until=lambda r: r.v <= 20.0) < 2.0


def test_v3_04_insulation_resistance_is_reported_every_cycle() -> None:
    rig = RigV3(insulation_resistance=300e3)
    open_session(rig)
    rig.state(4)
    rig.repeat(dpc(F.INSULATION_TEST, 500.0))
    rig.run(1.0)
    assert rig.out is not None and rig.out.status is not None
    assert rig.out.status.insulation_resistance == pytest.approx(300.0)  # kOhm


def test_v3_05_no_discharge_after_precharge() -> None:
    rig = RigV3()
    open_session(rig)
    insulation_test(rig)
    precharge(rig)
    soc = rig.inlet.battery.soc
    rig.repeat(dpc(lowering=False), STANDBY)
    rig.run(1.0)
    assert rig.conv.setpoint.mode is Mode.OFF and rig.inlet.battery.soc == soc


# --- V3-06, V3-07, V3-09: power transfer in both directions -------------------------------------


def test_v3_06_target_mode_follows_the_target_in_both_directions() -> None:
    rig = RigV3()
    to_transfer(rig)
    transfer(rig, 80.0)
    assert rig.i == pytest.approx(80.0, abs=1.0)
    allow_discharge(rig)
    transfer(rig, -60.0)
    assert rig.i == pytest.approx(-60.0, abs=1.0)  # V3-09: Present_Current is negative
    assert rig.pm.session_energy_exported_wh < 0 < rig.pm.session_energy_wh


def test_v3_06_no_discharge_without_the_session_limit_or_a_capable_stage() -> None:
    rig = RigV3()
    to_transfer(rig)
    transfer(rig, -60.0)  # the goal allowed no discharge: regulate at 0 A
    assert abs(rig.i) <= 0.5
    uni = RigV3(max_discharge_current=0.0, max_discharge_power=0.0)
    to_transfer(uni)
    allow_discharge(uni)
    transfer(uni, -60.0)  # a unidirectional stage: 0 A as well
    assert abs(uni.i) <= 0.5


def test_v3_07_range_mode_operating_point() -> None:
    rig = RigV3()
    to_transfer(rig)
    allow_discharge(rig)
    transfer(rig, 100.0, -80.0)
    assert rig.i == pytest.approx(100.0, abs=1.0)  # B3: no CSMS, no local policy: the maximum
    rig.pm.set_operating_point(-50.0)
    rig.run(1.5)
    assert rig.i == pytest.approx(-50.0, abs=1.0)  # the local policy
    rig.pm.set_operating_point(-500.0)
    rig.run(1.5)
    assert rig.i == pytest.approx(-80.0, abs=1.0)  # clamped into the range
    rig.send(OcppControl(30.0))
    rig.run(1.5)
    assert rig.i == pytest.approx(30.0, abs=1.0)  # the CSMS setpoint wins
    transfer(rig, 20.0, 0.0)
    assert rig.i == pytest.approx(20.0, abs=1.0)  # re-clamped on every new range


def test_v3_07_local_discharge_needs_a_capable_stage() -> None:
    rig = RigV3(max_discharge_current=0.0, max_discharge_power=0.0)
    to_transfer(rig)
    allow_discharge(rig)
    rig.pm.set_operating_point(-50.0)
    transfer(rig, 60.0, -80.0)
    assert rig.i == pytest.approx(60.0, abs=1.0)  # charges: the range maximum


def test_v3_discharge_keeps_the_vehicle_minimum_voltage() -> None:
    rig = RigV3()
    to_transfer(rig)
    allow_discharge(rig)
    ocv = rig.inlet.battery.ocv()
    rig.send(EvInformationVoltages(ocv - 2.0, 500.0, ocv))
    transfer(rig, -150.0)
    assert rig.v >= ocv - 2.0 - 0.5 and -150.0 < rig.i < 0.0  # the floor limits the current


def test_b4_a_direction_change_ramps_through_zero() -> None:
    rig = RigV3()
    to_transfer(rig)
    allow_discharge(rig)
    transfer(rig, 100.0)
    t0 = rig.t
    transfer(rig, -100.0)
    transfer(rig, 100.0)
    limits = [o.setpoint.current_limit for t, o in rig.trace if t > t0]
    for a, b in itertools.pairwise(limits):
        assert a * b >= 0, (a, b)  # never + to - (or - to +) in one step
    assert min(limits) == pytest.approx(-100.0) and 0.0 in limits


# --- V3-08, V3-12, V3-13: lowering, end of charge, contactors ------------------------------------


def end_of_charge(rig: RigV3) -> None:
    rig.repeat()
    rig.send(ChargeStatusChange(ChargeStatus.CHARGE_STOPPED), STANDBY)
    rig.state(8)
    rig.run(0.3)


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_v3_12_end_of_charge_standby_frames_in_any_order(order: tuple[int, ...]) -> None:
    rig = RigV3()
    to_transfer(rig)
    transfer(rig, 50.0)
    end_of_charge(rig)
    frames = [STANDBY, dpc(contactors=ContactorState.OPEN), LOWER]
    soc = rig.inlet.battery.soc
    t0 = rig.t
    for i in order:
        rig.send(frames[i])
        rig.run(0.3)
    # no re-energising, and (B2) no bleeding of the battery that is still on the pins
    assert all(o.setpoint.mode is Mode.OFF for t, o in rig.trace if t > t0)
    assert rig.inlet.battery.soc == soc


def test_v3_08_lowering_on_closing_communication_after_the_session() -> None:
    rig = RigV3(voltage_slope=0.0)
    to_transfer(rig)
    transfer(rig, 50.0)
    end_of_charge(rig)
    rig.send(LOWER)
    rig.run(0.3)
    assert rig.phase == "STANDBY"  # Ending_Charge: ignored (B2)
    rig.inlet.contactors_closed = False  # the vehicle opens its contactors
    rig.state(9)
    rig.run(0.3)
    rig.state(10)
    rig.send(ChargeSessionFinished(SessionEnd.CLEAN_STOP))
    rig.run(0.1)
    assert rig.v > 20.0
    rig.repeat(LOWER)  # situation 3: after Charge_Session_Finished
    assert rig.run(2.0, until=lambda r: r.v <= 20.0) < 2.0
    assert rig.run(2.0, until=lambda r: r.phase == "IDLE") < 2.0  # done at discharge_voltage
    rig.run(0.1)
    assert rig.conv.setpoint.mode is Mode.OFF


def test_v3_08_a_battery_holding_the_voltage_stops_the_lowering_for_the_session() -> None:
    rig = RigV3(PowerModuleConfig(discharge_timeout=1.0))
    open_session(rig)
    rig.state(4)
    rig.repeat(dpc(F.INSULATION_TEST, 500.0))
    rig.run(1.0)
    rig.inlet.contactors_closed = True  # a battery on the pins (a fault of the vehicle)
    soc = rig.inlet.battery.soc
    rig.repeat(LOWER)
    rig.run(1.5)
    assert rig.phase == "STANDBY" and rig.pm._discharge_blocked
    rig.run(2.0)  # the repeated Lowering frames do not start it again
    assert rig.conv.setpoint.mode is Mode.OFF
    assert soc - rig.inlet.battery.soc < 0.01  # a bounded sip at most


def test_v3_13_output_contactors_is_information_only() -> None:
    applied = []
    for contactors in (ContactorState.CLOSE, ContactorState.OPEN):
        rig = RigV3()
        to_transfer(rig)
        rig.repeat(dpc(F.POWER_TRANSFER, 450.0, 40.0, contactors=contactors))
        rig.run(1.0)
        applied.append((rig.conv.setpoint.mode, round(rig.i)))
    assert applied[0] == applied[1] == (Mode.REGULATE, 40)


# --- B1 and the shared safety rules -----------------------------------------------------------


@pytest.mark.parametrize("raw", [3, 5, 9, 15])
def test_b1_an_undefined_power_function_latches_the_output_off(raw: int) -> None:
    rig = RigV3()
    to_transfer(rig)
    transfer(rig, 50.0)
    rig.repeat()
    rig.send(dpc(PowerFunction(raw), 450.0, 50.0))
    rig.run(0.1)
    assert rig.conv.setpoint.mode is Mode.OFF and not rig.enable
    assert rig.pm.fault_kind is FaultKind.PROTOCOL and f"Power_Function {raw}" in rig.pm.fault


def test_v3_heartbeat_loss_stops_a_discharge_at_once() -> None:
    rig = RigV3()
    to_transfer(rig)
    allow_discharge(rig)
    transfer(rig, -80.0)
    rig.pm.on_link_lost(rig.t, "test")
    rig.run(0.02)
    assert rig.conv.setpoint.mode is Mode.OFF and abs(rig.i) <= 1.0 and not rig.enable
