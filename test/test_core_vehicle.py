"""The vehicle model: parameters, CC-CV curve, SoC integration, its own decisions and timers."""

from __future__ import annotations

import pytest

from evse_can_ros.config import ConfigError, from_mapping
from evse_can_ros.core.battery import Battery, BatteryParams, VehicleInlet
from evse_can_ros.core.vehicle import Vehicle, VehicleParams, VehiclePhase
from evse_can_ros.protocol import CommunicationProtocol, PlugAndPins

P = VehiclePhase


def params(**kw: object) -> VehicleParams:
    return from_mapping(VehicleParams, {"negotiation_time": 0.5, **kw})


def to_charging(v: Vehicle, now: float = 0.0) -> float:
    """Drive a vehicle through a session to CHARGING with an ideal charger; return the time."""
    v.plug_in(now)
    v.start_session(now, charge_delay=0.0)
    now += 1.0
    v.step(now, 0.0, 0.0)
    assert v.phase is P.WAITING_FOR_CHARGER
    v.set_charger_limits(now, 500.0, 300.0)
    assert v.wants_cable_check
    v.cable_check_passed(now)
    if not v.is_chademo:
        assert v.phase is P.PRECHARGE
        request = v.precharge_request()
        assert request is not None and request.maximum_current == 2.0
        v.step(now + 0.1, request.target_voltage - 10.0, 0.5)  # within 20 V
    assert v.phase is P.READY and v.contactors_closed
    now += 0.2
    v.step(now, v.battery.ocv(), 0.0)
    assert v.phase is P.CHARGING
    return now


def test_defaults_and_protocol_names() -> None:
    p = VehicleParams()
    assert p.communication_protocol is CommunicationProtocol.CCS_ISO_15118_2013_V2
    assert p.plug_and_pins is PlugAndPins.CCS_DC_CORE
    assert VehicleParams(protocol="CHAdeMO_v2.0").plug_and_pins is PlugAndPins.CHADEMO
    assert VehicleParams(protocol=CommunicationProtocol.CHADEMO_V0_9).protocol == "CHADEMO_V0_9"
    assert p.cv_limit == p.max_voltage and p.permitted_test_voltage == p.max_voltage
    assert p.ev_id_bytes == bytes.fromhex("0A1B2C3D4E5F")


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"protocol": "CCS_PWM"}, "protocol"),  # AC only (A17)
        ({"ocv_min": 410.0}, "ocv_min"),
        ({"cv_voltage": 500.0}, "cv_voltage"),
        ({"plug": "CHADEMO"}, "does not fit"),
        ({"ev_id": "xyz"}, "ev_id"),
        ({"target_soc": 120.0}, "target_soc"),
        ({"soc_time_scale": 0.0}, "soc_time_scale"),
    ],
)
def test_invalid_parameters(kw: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        VehicleParams(**kw)  # type: ignore[arg-type]


def test_session_info() -> None:
    v = Vehicle(params(initial_soc=35.0, capacity_kwh=78.0, max_voltage=420.0, max_current=250.0))
    info = v.session_info()
    assert (info.ev_maximum_voltage, info.ev_maximum_current) == (420.0, 250.0)
    assert info.battery_capacity == 78.0 and info.state_of_charge == 35
    chademo = Vehicle(params(protocol="CHADEMO_V1_0_V1_1_V1_2"))
    assert chademo.session_info().ev_maximum_current == 0.0  # optional in CHAdeMO


def test_cc_then_taper_then_cv() -> None:
    v = Vehicle(params(initial_soc=20.0, max_current=200.0, taper_start_soc=80.0))
    assert v.requested_current() == pytest.approx(200.0)  # CC
    assert not v.cv_active
    v.battery.soc = 90.0
    assert v.requested_current() < 200.0  # derated above taper_start_soc
    v = Vehicle(params(initial_soc=80.0, cv_voltage=395.0, taper_start_soc=100.0))
    cv = v.requested_current()
    assert v.cv_active
    # CV: the current that holds the terminal voltage at the CV voltage
    assert v.battery.terminal_voltage(cv) == pytest.approx(v.params.cv_limit)


def test_limits_power_and_charger() -> None:
    v = Vehicle(params(initial_soc=20.0, max_current=300.0, max_power_kw=50.0))
    i = v.requested_current()
    assert v.battery.terminal_voltage(i) * i == pytest.approx(50_000.0, rel=1e-6)
    v.charger_max_current = 80.0
    assert v.requested_current() == 80.0
    v.charger_max_voltage = 380.0
    assert v.target_voltage() == 380.0


def test_soc_integrates_the_reported_current_with_time_scale() -> None:
    v = Vehicle(params(initial_soc=10.0, capacity_kwh=60.0, soc_time_scale=100.0))
    now = to_charging(v)
    e0 = v.battery.energy_charged_wh
    volts = v.battery.terminal_voltage(100.0)
    for k in range(1, 101):  # 1 s at 100 A, scaled to 100 s
        v.step(now + k * 0.01, volts, 100.0)
    wh = v.battery.energy_charged_wh - e0
    assert wh == pytest.approx(volts * 100.0 * 100.0 / 3600.0, rel=0.02)
    assert v.session_energy_wh == pytest.approx(wh, rel=1e-6)
    assert v.soc == pytest.approx(10.0 + wh / 600.0, rel=1e-3)


def test_no_integration_with_contactors_open() -> None:
    v = Vehicle(params())
    v.plug_in(0.0)
    v.step(0.0, 400.0, 100.0)
    v.step(10.0, 400.0, 100.0)
    assert v.soc == 20.0 and v.session_energy_wh == 0.0


def test_charge_ends_at_target_soc_and_contactors_open_at_low_current() -> None:
    v = Vehicle(params(initial_soc=79.9, target_soc=80.0, soc_time_scale=1000.0))
    now = to_charging(v)
    while v.phase is P.CHARGING:
        now += 0.1
        v.step(now, 400.0, v.requested_current())
    assert v.phase is P.ENDING and "target SoC" in v.stop_reason
    v.step(now + 0.1, 400.0, 3.0)
    assert v.phase is P.ENDING  # CCS waits for <= 1 A
    v.step(now + 0.2, 400.0, 0.8)
    assert v.phase is P.WELDING_DETECTION and not v.contactors_closed
    v.step(now + 1.5, 0.0, 0.0)
    assert v.phase is P.FINISHING
    v.session_finished(now + 1.6)
    assert v.phase is P.DONE and not v.in_session
    v.step(now + 5.0, 0.0, 0.0)
    assert v.phase is P.UNPLUGGED and not v.plugged_in  # unplug_after_session


def test_chademo_no_precharge_and_5_A_end_current() -> None:
    v = Vehicle(params(protocol="CHADEMO_V2_0", welding_detection=False))
    now = to_charging(v)
    v.request_stop(now, "test")
    v.step(now + 0.1, 400.0, 4.5)
    assert v.phase is P.FINISHING and not v.contactors_closed


def test_end_current_timeout_forces_the_contactors_open() -> None:
    v = Vehicle(params(end_current_timeout=1.0))
    now = to_charging(v)
    v.request_stop(now, "test")
    v.step(now + 0.5, 400.0, 50.0)
    assert v.phase is P.ENDING
    v.step(now + 1.1, 400.0, 50.0)
    assert v.forced_open and not v.contactors_closed


@pytest.mark.parametrize(
    ("phase_setup", "timeout_param"),
    [("waiting", "response_timeout"), ("cable_check", "cable_check_timeout")],
)
def test_vehicle_timeouts_abort(phase_setup: str, timeout_param: str) -> None:
    v = Vehicle(params(**{timeout_param: 2.0}))
    v.plug_in(0.0)
    v.start_session(0.0)
    v.step(1.0, 0.0, 0.0)
    if phase_setup == "cable_check":
        v.set_charger_limits(1.0, 500.0, 100.0)
    v.step(2.5, 0.0, 0.0)
    assert v.in_session
    v.step(3.1, 0.0, 0.0)
    assert v.phase is P.DONE and "timeout" in v.end_reason and v.error is None


def test_precharge_timeout() -> None:
    v = Vehicle(params(precharge_timeout=1.0))
    v.plug_in(0.0)
    v.start_session(0.0)
    v.step(1.0, 0.0, 0.0)
    v.set_charger_limits(1.0, 500.0, 100.0)
    v.cable_check_passed(1.0)
    v.step(1.5, 100.0, 0.0)
    assert v.phase is P.PRECHARGE
    v.step(2.1, 100.0, 0.0)
    assert v.phase is P.DONE and "precharge" in v.end_reason


def test_overvoltage_is_an_ev_emergency() -> None:
    v = Vehicle(params(max_voltage=410.0, overvoltage_margin=20.0))
    now = to_charging(v)
    v.step(now + 0.1, 435.0, 10.0)
    assert v.error is not None and "overvoltage" in v.error
    assert v.phase is P.DONE and not v.contactors_closed


def test_unplug_under_load() -> None:
    v = Vehicle(params())
    now = to_charging(v)
    v.unplug(now + 1.0)
    assert v.phase is P.UNPLUGGED and not v.inlet.battery_connected
    assert v.end_reason == "unplugged during the session"


def test_shared_inlet() -> None:
    inlet = VehicleInlet(battery=Battery(BatteryParams(capacity_kwh=40.0, initial_soc=50.0)))
    v = Vehicle(params(), inlet)
    assert v.battery is inlet.battery and v.soc == 50.0
    to_charging(v)
    assert inlet.battery_connected
    assert isinstance(VehicleParams().make_inlet(), VehicleInlet)
