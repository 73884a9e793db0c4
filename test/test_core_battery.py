"""Battery model in both directions: SoC integration and separate energy accounting."""

from __future__ import annotations

import pytest

from evse_can_ros.core.battery import Battery, BatteryParams

R = 0.08


def battery(soc: float = 50.0) -> Battery:
    return Battery(BatteryParams(capacity_kwh=60.0, internal_resistance=R, initial_soc=soc))


def test_discharge_lowers_the_soc_and_counts_exported_energy() -> None:
    b = battery(80.0)
    ocv = b.ocv()
    wh = b.charge(-100.0, 60.0)  # 100 A out of the battery for one minute
    expected = (ocv - 100.0 * R) * -100.0 * 60.0 / 3600.0
    assert wh == pytest.approx(expected) and wh < 0
    assert b.energy_discharged_wh == pytest.approx(-expected)
    assert b.energy_charged_wh == 0.0
    assert b.net_energy_wh == pytest.approx(expected)
    assert b.soc == pytest.approx(80.0 + expected / 600.0)  # 1 % = 600 Wh
    assert b.soc < 80.0


def test_terminal_voltage_sags_below_the_ocv_when_discharging() -> None:
    b = battery()
    assert b.terminal_voltage(-100.0) == pytest.approx(b.ocv() - 8.0)
    assert b.terminal_voltage(100.0) == pytest.approx(b.ocv() + 8.0)
    assert b.current_at(b.ocv() - 8.0) == pytest.approx(-100.0)


def test_charged_and_discharged_energy_are_counted_separately() -> None:
    b = battery(50.0)
    charged = sum(b.charge(150.0, 1.0) for _ in range(600))
    discharged = -sum(b.charge(-120.0, 1.0) for _ in range(900))
    assert charged > 0 and discharged > 0
    assert b.energy_charged_wh == pytest.approx(charged)
    assert b.energy_discharged_wh == pytest.approx(discharged)
    assert b.net_energy_wh == pytest.approx(charged - discharged)
    # the SoC moved by the net energy (no clamping here)
    assert b.soc == pytest.approx(50.0 + (charged - discharged) / 600.0)


def test_a_round_trip_at_the_same_current_loses_the_resistive_energy() -> None:
    b = battery(50.0)
    for current in (100.0, -100.0):
        for _ in range(600):  # 10 min each way, 1 s steps
            b.charge(current, 1.0)
    # the open-circuit part cancels over the round trip; I^2 R t stays, once per direction
    losses = 2 * 100.0**2 * R * 600.0 / 3600.0
    assert b.net_energy_wh == pytest.approx(losses, rel=0.05)
    assert b.soc == pytest.approx(50.0 + losses / 600.0, abs=0.01)


def test_the_soc_stays_within_0_and_100_percent() -> None:
    b = battery(1.0)
    b.charge(-500.0, 3600.0)
    assert b.soc == 0.0 and b.energy_discharged_wh > 0
    b = battery(99.0)
    b.charge(500.0, 3600.0)
    assert b.soc == 100.0
