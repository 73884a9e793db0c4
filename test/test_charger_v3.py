"""Whole charges on interface v3 on the in-memory charger: charge, V2G discharge, conformance.

Every core speaks v3 (``simulated_charger(protocol_version=3)``): the controller + vehicle
emulator, the bridge, the converter driver on the bidirectional simulated converter and the
charge server. The energy checks compare what the power side measured with the vehicle's
battery model: the vehicle's SoC runs ``soc_time_scale`` times faster than real time, so its
energy is that many times the measured one.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest

from evse_can_ros.core.charge_session import ErrorCode, Outcome, Result
from evse_can_ros.core.charger import InMemoryCharger
from evse_can_ros.protocol import (
    Completion,
    DcPowerParameters,
    EvInformationBattery,
    EvInformationChargeLimits,
    EvInformationVoltages,
    NewChargeSessionV3,
    PowerModulesStatus,
    SequenceControl,
)
from evse_can_ros.simulation import simulated_charger

from .conftest import vendor_database

SCALE = 50.0
V2G = {
    "protocol": "CCS_ISO_15118_2022",
    "bpt_mode": "dynamic",
    "initial_soc": 80.0,
    "min_soc": 20.0,
    "target_soc": 90.0,
    "capacity_kwh": 20.0,
    "soc_time_scale": SCALE,
}
POWER_SIDE_IDS = {0x63000, 0x63001, 0x63002, 0x63201, 0x63202}


def v3_charger(vehicle: dict[str, Any] | None = None, **kwargs: Any) -> InMemoryCharger:
    vehicle = {"protocol": "CCS_ISO_15118_2022", "soc_time_scale": SCALE, **(vehicle or {})}
    return simulated_charger(vehicle=vehicle, protocol_version=3, **kwargs)


def charge(c: InMemoryCharger, **goal: Any) -> Result:
    with c.quiet():
        return c.charge(timeout=3600.0, **goal)


def currents(c: InMemoryCharger) -> list[float]:
    return [i for _, _, i in c.trace.output]


def assert_energy_matches_the_battery(c: InMemoryCharger, result: Result) -> None:
    """Measured energy per direction within 5 % of the vehicle's battery model."""
    charged, discharged = c.vehicle.session_charged_wh, c.vehicle.session_discharged_wh
    assert result.energy_delivered * SCALE == pytest.approx(charged, rel=0.05)
    assert -result.energy_exported * SCALE == pytest.approx(discharged, rel=0.05)


def test_v3_charge_completes_and_every_power_side_frame_conforms() -> None:
    c = v3_charger({"initial_soc": 30.0, "target_soc": 45.0})
    result = charge(c)
    assert result.error_code == ErrorCode.NONE and result.session_end_state == 0, result
    assert result.final_soc >= 45.0 and result.energy_exported == 0.0
    sent = [r for r in c.trace.bus if r.from_power_side]
    assert {type(r.message) for r in sent} >= {PowerModulesStatus, DcPowerParameters}
    for fmt in ("kcd", "dbc"):  # every frame the power side sent, strictly with the vendor's
        vendor = vendor_database(3, fmt)
        for r in sent:
            assert r.frame is not None
            base = r.frame.arbitration_id & 0xFFFFFF
            assert base in POWER_SIDE_IDS and r.frame.arbitration_id >> 24 == 1  # V3-01
            spec = vendor.get_message_by_frame_id(base)
            values = spec.decode(r.frame.data, decode_choices=False, allow_excess=False)
            assert spec.encode(values, strict=True) == r.frame.data


def test_v3_10_dc_power_parameters_before_done_spaced_with_no_range_target() -> None:
    c = v3_charger({"initial_soc": 30.0, "target_soc": 35.0})
    charge(c, max_voltage=800.0, max_current=150.0)
    params = c.trace.sent(DcPowerParameters)
    done = [
        t
        for t, m in c.trace.sent(SequenceControl)
        if isinstance(m, SequenceControl) and m.charge_parameters_done == Completion.DONE
    ]
    assert params and done and params[0][0] < done[0]
    assert all(b - a >= 0.1 - 1e-9 for (a, _), (b, _) in itertools.pairwise(params))
    for _, m in params:
        assert isinstance(m, DcPowerParameters)
        assert (m.maximum_voltage, m.maximum_charge_current) == (800.0, 150.0)
        assert m.maximum_discharge_current == 0.0 and m.range_target_current == 0.0  # B8


def test_v3_status_every_100_ms_through_the_session() -> None:
    c = v3_charger({"initial_soc": 30.0, "target_soc": 35.0})
    charge(c)
    times = [t for t, _ in c.trace.sent(PowerModulesStatus)]
    opened = next(r.time for r in c.trace.bus if isinstance(r.message, NewChargeSessionV3))
    gaps = [b - a for a, b in itertools.pairwise(t for t in times if t >= opened)]
    assert gaps and max(gaps) <= 0.1 + 1e-6


def test_v3_chademo_charge_without_precharge() -> None:
    c = v3_charger({"protocol": "CHADEMO_V2_0", "initial_soc": 30.0, "target_soc": 40.0})
    result = charge(c)
    assert result.error_code == ErrorCode.NONE and result.final_soc >= 40.0, result


def test_v2g_session_discharges_to_the_minimum_then_charges_back() -> None:
    """Issue 18 acceptance: 80 % -> min SoC -> back, Clean_Stop, energy per direction."""
    c = v3_charger(V2G)
    result = charge(c, max_discharge_current=100.0, min_soc=40.0, target_soc=60.0)
    assert result.error_code == ErrorCode.NONE, result
    assert result.outcome == Outcome.LIMIT_REACHED and result.session_end_state == 0
    assert result.energy_exported < 0 < result.energy_delivered
    assert_energy_matches_the_battery(c, result)
    socs = [f.soc for f in c.trace.feedback if math.isfinite(f.soc)]
    assert min(socs) <= 41.0 and result.final_soc >= 60.0 and result.initial_soc == 80.0
    assert min(currents(c)) == pytest.approx(-100.0, abs=2.0)
    assert min(f.energy_exported for f in c.trace.feedback) < 0  # feedback carries it too
    limits = [m.maximum_discharge_current for _, m in c.trace.sent(DcPowerParameters)]
    assert limits[0] == 100.0 and limits[-1] == 0.0  # none once the goal's minimum is reached


def test_v2g_scheduled_vehicle_decides_the_direction() -> None:
    c = v3_charger({**V2G, "bpt_mode": "scheduled", "min_soc": 60.0, "target_soc": 70.0})
    result = charge(c, max_discharge_current=80.0)
    assert result.error_code == ErrorCode.NONE, result
    assert result.energy_exported < 0 < result.energy_delivered
    assert_energy_matches_the_battery(c, result)
    assert min(currents(c)) == pytest.approx(-80.0, abs=2.0)  # the goal's limit, enforced


def test_v3_07_the_csms_setpoint_overrides_the_local_policy() -> None:
    c = v3_charger(
        {**V2G, "min_soc": 70.0, "target_soc": 82.0},
        scenario={"csms_setpoint": -40.0, "csms_setpoint_at_limit": 60.0},
    )
    result = charge(c, max_discharge_current=100.0)  # down to the vehicle's minimum
    assert result.error_code == ErrorCode.NONE, result
    assert min(currents(c)) == pytest.approx(-40.0, abs=2.0)  # never the goal's 100 A
    assert result.final_soc >= 82.0


def test_the_goals_minimum_soc_holds_against_the_csms() -> None:
    c = v3_charger(V2G, scenario={"csms_setpoint": -40.0})
    result = charge(c, max_discharge_current=100.0, min_soc=76.0, max_duration=120.0)
    assert result.error_code == ErrorCode.NONE, result  # ended by the duration limit
    socs = [f.soc for f in c.trace.feedback if math.isfinite(f.soc)]
    assert min(socs) >= 75.0  # the CSMS asked for more, the goal kept 76 %
    assert all(i >= -1.0 for t, _, i in c.trace.output if t > c.now - 60.0)


def test_no_discharge_without_a_goal_that_allows_it() -> None:
    c = v3_charger({**V2G, "target_soc": 84.0})
    result = charge(c)  # a plain goal: the range maximum, charging only
    assert result.error_code == ErrorCode.NONE and result.energy_exported == 0.0, result
    assert min(currents(c)) >= -1.0


def test_a_unidirectional_stage_charges_in_a_v2g_session() -> None:
    c = v3_charger(
        {**V2G, "target_soc": 84.0},
        converter={"max_discharge_current": 0.0, "max_discharge_power": 0.0},
    )
    result = charge(c, max_discharge_current=100.0, min_soc=40.0)
    assert result.error_code == ErrorCode.NONE, result
    assert min(currents(c)) >= -1.0 and result.final_soc >= 84.0


@pytest.mark.parametrize(
    ("version", "goal", "text"),
    [
        (2, {"max_discharge_current": 50.0}, "need interface v3"),
        (3, {"min_soc": 30.0}, "set max_discharge_current too"),
        (3, {"max_discharge_current": 50.0, "min_soc": 60.0, "target_soc": 50.0}, "below"),
    ],
)
def test_invalid_v2g_goals_are_refused(version: int, goal: dict[str, Any], text: str) -> None:
    c = simulated_charger(protocol_version=version)
    decision = c.submit_goal(**goal)
    assert not decision.accepted and decision.result is not None
    assert (
        decision.result.error_code == ErrorCode.INVALID_GOAL and text in decision.result.error_msg
    )


def test_v3_11_the_charge_never_needs_ev_information() -> None:
    c = v3_charger({"initial_soc": 30.0, "target_soc": 40.0})
    c.dropped = (EvInformationBattery, EvInformationVoltages, EvInformationChargeLimits)
    result = charge(c)  # the vehicle ends the charge at its own target
    assert result.error_code == ErrorCode.NONE and result.session_end_state == 0, result
    assert math.isnan(result.final_soc) and result.energy_delivered > 0
