"""The bidirectional vehicle (interface v3): ranges at its SoC limits, schedules, energy, checks.

The vehicle is driven directly with an ideal charger (what it reports is what the test says), on a
fake clock, as in test_core_vehicle.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from evse_can_ros.config import ConfigError, from_mapping
from evse_can_ros.core.vehicle import Vehicle, VehicleParams, VehiclePhase

P = VehiclePhase
ISO20 = "CCS_ISO_15118_2022"
DT = 0.1


def vehicle(**kw: Any) -> Vehicle:
    values = {"protocol": ISO20, "negotiation_time": 0.5, "bpt_mode": "dynamic", **kw}
    return Vehicle(from_mapping(VehicleParams, values))


def to_charging(v: Vehicle, discharge: float = 150.0, now: float = 0.0) -> float:
    """Take ``v`` to CHARGING with a charger of 500 V / 300 A / ``discharge`` A; return now."""
    v.plug_in(now)
    v.start_session(now, charge_delay=0.0)
    now += 1.0
    v.step(now, 0.0, 0.0)
    v.set_charger_limits(now, 500.0, 300.0, max_discharge_current=discharge)
    v.cable_check_passed(now)
    if v.phase is P.PRECHARGE:
        v.step(now + 0.1, v.battery.ocv(), 0.5)
    assert v.phase is P.READY and v.contactors_closed
    now += 0.2
    v.step(now, v.battery.ocv(), 0.0)
    assert v.phase is P.CHARGING
    return now


def drive(v: Vehicle, now: float, current: float, seconds: float) -> float:
    """Report ``current`` (at the battery's terminal voltage) for ``seconds`` of charging."""
    end = now + seconds
    while now < end - 1e-9 and v.phase is P.CHARGING:
        now = round(now + DT, 6)
        v.step(now, v.battery.terminal_voltage(current), current)
    return now


# --- parameters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"protocol": "CCS_ISO_15118_2013_V2"}, "needs protocol CCS_ISO_15118_2022 or CHAdeMO"),
        ({"protocol": "CHADEMO_V2_0", "bpt_mode": "scheduled"}, "ISO 15118-20 only"),
        ({"min_soc": 80.0, "target_soc": 80.0}, "min_soc = 80.0 % must be below target_soc"),
        ({"bpt_mode": "sometimes"}, "bpt_mode"),
        ({"max_discharge_current": -1.0}, "max_discharge_current"),
    ],
)
def test_invalid_bpt_parameters(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        vehicle(**kw)


def test_charge_only_vehicles_keep_their_parameters() -> None:
    v = Vehicle(from_mapping(VehicleParams, {"min_soc": 90.0, "target_soc": 80.0}))
    assert not v.params.bidirectional and v.discharge_limit() == 0.0


# --- dynamic mode: a range that follows the SoC limits ---------------------------------------


def test_dynamic_range_spans_both_directions_between_the_soc_limits() -> None:
    v = vehicle(initial_soc=50.0, min_soc=20.0, target_soc=80.0, max_discharge_current=90.0)
    to_charging(v)
    r = v.power_request()
    assert r is not None and r.range_mode
    assert r.current_min == -90.0 and r.current_max == 200.0  # vehicle maximum, charger 300 A
    assert r.target_voltage == 410.0
    assert v.accepted_currents() == (-90.0, 200.0)


def test_the_charger_limits_narrow_the_range() -> None:
    v = vehicle(initial_soc=50.0, max_discharge_current=200.0)
    to_charging(v, discharge=60.0)
    r = v.power_request()
    assert r is not None and r.current_min == -60.0


def test_no_discharge_from_a_charger_that_cannot() -> None:
    v = vehicle(initial_soc=50.0)
    to_charging(v, discharge=0.0)
    r = v.power_request()
    assert r is not None and r.current_min == 0.0 and r.current_max > 0


def test_discharge_power_limit() -> None:
    v = vehicle(initial_soc=50.0, max_discharge_power_kw=20.0, max_discharge_current=500.0)
    to_charging(v, discharge=500.0)
    i = v.discharge_limit()
    assert (v.battery.ocv() - i * v.params.internal_resistance) * i == pytest.approx(20_000.0)


def test_the_range_closes_its_discharge_end_at_the_minimum_soc() -> None:
    v = vehicle(initial_soc=22.0, min_soc=20.0, soc_time_scale=100.0)
    now = to_charging(v)
    for _ in range(300):  # the charger discharges as far as the range allows
        r = v.power_request()
        assert r is not None
        now = drive(v, now, max(-100.0, r.current_min), DT)
    assert v.phase is P.CHARGING
    r = v.power_request()
    assert r is not None and r.current_min == 0.0 and r.current_max > 0
    assert 19.8 <= v.soc <= 20.0  # at most one step (0.16 %) below the minimum, then no more
    soc = v.soc
    drive(v, now, 0.0, 5.0)  # the charger stops discharging: the vehicle waits in range mode
    assert v.phase is P.CHARGING and v.soc == soc


def test_the_charge_ends_when_charged_to_the_target() -> None:
    v = vehicle(initial_soc=79.0, target_soc=80.0, soc_time_scale=100.0)
    now = to_charging(v)
    drive(v, now, 100.0, 30.0)
    assert v.phase is P.ENDING and "target SoC 80 % reached" in v.stop_reason
    assert 80.0 <= v.soc < 80.2  # one step is 0.18 %


def test_starting_at_the_target_the_vehicle_only_offers_discharge() -> None:
    v = vehicle(initial_soc=80.0, target_soc=80.0)
    now = to_charging(v)
    r = v.power_request()
    assert r is not None and r.current_max == 0.0 and r.current_min < 0
    drive(v, now, 0.0, 10.0)  # nothing flows: no stop, the vehicle stays available
    assert v.phase is P.CHARGING


def test_discharge_to_the_minimum_and_back_to_the_target() -> None:
    """The dynamic discharge scenario: 80 % -> minimum SoC -> back to the target, then stop."""
    v = vehicle(initial_soc=80.0, min_soc=30.0, target_soc=80.0, soc_time_scale=500.0)
    now = to_charging(v)
    soc_min = v.soc
    recharge = False
    while v.phase is P.CHARGING and now < 600:  # the charger: discharge while allowed, then back
        r = v.power_request()
        assert r is not None
        recharge = recharge or r.current_min == 0
        now = drive(v, now, r.current_max if recharge else r.current_min, DT)
        soc_min = min(soc_min, v.soc)
    assert v.phase is P.ENDING and "target SoC" in v.stop_reason
    assert 29.0 <= soc_min <= 30.0  # one step is 0.8 % at 100 A
    assert v.session_discharged_wh > 0.49 * 60_000  # 50 % of 60 kWh out
    assert v.session_charged_wh > 0.49 * 60_000  # and back in
    assert v.session_energy_wh == pytest.approx(v.session_charged_wh - v.session_discharged_wh)
    assert v.session_energy_wh == pytest.approx((v.soc - 80.0) * 600.0, abs=1.0)


def test_a_current_outside_the_range_for_too_long_is_an_ev_emergency() -> None:
    v = vehicle(initial_soc=25.0, min_soc=20.0, range_violation_timeout=2.0, soc_time_scale=1)
    now = to_charging(v, discharge=50.0)
    now = drive(v, now, -70.0, 1.5)  # beyond the range (-50 A) and its tolerance (10 A)
    assert v.phase is P.CHARGING
    now = drive(v, now, -59.0, 1.0)  # back inside the tolerance: the timer restarts
    now = drive(v, now, -70.0, 1.9)
    assert v.phase is P.CHARGING and v.error is None
    drive(v, now, -70.0, 0.3)
    assert v.phase is P.DONE and v.error is not None and "outside -50.0..200.0 A" in v.error


# --- scheduled mode: the vehicle's own signed target ----------------------------------------


def test_scheduled_discharges_to_the_minimum_then_charges_to_the_target() -> None:
    v = vehicle(
        bpt_mode="scheduled",
        initial_soc=80.0,
        min_soc=40.0,
        target_soc=60.0,
        max_discharge_current=120.0,
        soc_time_scale=2000.0,
    )
    now = to_charging(v)
    assert v.discharging
    targets = []
    while v.phase is P.CHARGING and now < 600:
        r = v.power_request()
        assert r is not None and not r.range_mode and r.current_min == r.current_max
        targets.append(r.current_max)
        now = drive(v, now, r.current_max, DT)
    assert v.phase is P.ENDING and "target SoC 60 % reached" in v.stop_reason
    assert targets[0] == -120.0 and targets[-1] > 0
    first_charge = next(i for i, t in enumerate(targets) if t > 0)
    assert all(t == -120.0 for t in targets[:first_charge])  # one switch, no back and forth
    assert all(t > 0 for t in targets[first_charge:])
    assert any("discharge over" in text for _, text in v.events)
    assert v.session_energy_wh < 0  # 80 % -> 60 %: net export
    assert v.session_energy_wh == pytest.approx((v.soc - 80.0) * 600.0, abs=1.0)


def test_scheduled_vehicle_below_its_minimum_only_charges() -> None:
    v = vehicle(bpt_mode="scheduled", initial_soc=10.0, min_soc=20.0)
    to_charging(v)
    r = v.power_request()
    assert not v.discharging and r is not None and r.current_max > 0


def test_scheduled_accepts_less_than_its_target_but_not_the_other_direction() -> None:
    v = vehicle(bpt_mode="scheduled", initial_soc=80.0, range_violation_timeout=1.0)
    now = to_charging(v)
    assert v.accepted_currents() == (-100.0, 0.0)
    now = drive(v, now, -40.0, 3.0)  # less discharge than asked: accepted
    assert v.phase is P.CHARGING
    drive(v, now, 30.0, 1.5)  # charging while it asked to discharge
    assert v.phase is P.DONE and v.error is not None


# --- end of charge and accounting ------------------------------------------------------------


def test_a_stop_while_discharging_waits_for_the_current_magnitude() -> None:
    v = vehicle(initial_soc=60.0)
    now = to_charging(v)
    now = drive(v, now, -80.0, 1.0)
    v.request_stop(now, "departure")
    v.step(now + 0.1, v.battery.terminal_voltage(-50.0), -50.0)
    assert v.phase is P.ENDING  # -50 A is not below the 1 A end current
    v.step(now + 0.2, v.battery.ocv(), -0.5)
    assert v.phase is P.WELDING_DETECTION and not v.forced_open


def test_energy_accounting_in_both_directions_matches_the_battery() -> None:
    v = vehicle(initial_soc=50.0, soc_time_scale=100.0)
    now = to_charging(v)
    b = v.battery
    charged0, discharged0 = b.energy_charged_wh, b.energy_discharged_wh
    now = drive(v, now, 150.0, 2.0)
    now = drive(v, now, -100.0, 4.0)
    assert v.session_charged_wh == pytest.approx(b.energy_charged_wh - charged0)
    assert v.session_discharged_wh == pytest.approx(b.energy_discharged_wh - discharged0)
    # 2 s x 100 at 150 A in, 4 s x 100 at 100 A out, at about 375 V (+ / - R I)
    assert v.session_charged_wh == pytest.approx(150.0 * 375 * 200 / 3600, rel=0.05)
    assert v.session_discharged_wh == pytest.approx(100.0 * 365 * 400 / 3600, rel=0.05)
    assert v.session_energy_wh < 0
    v.session_finished(now)
    v.plug_in(now)
    v.step(now + 10, 0.0, 0.0)
    v.plug_in(now + 10)
    v.start_session(now + 10)
    assert v.session_energy_wh == v.session_charged_wh == v.session_discharged_wh == 0.0
