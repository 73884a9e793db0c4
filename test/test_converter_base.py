"""The backend contract enforced by the base class: measurement sanity and the output watchdog."""

from __future__ import annotations

import math
import threading
import time

import pytest

from evse_can_ros.converter import ConverterFault, Mode, OutputWatchdog, Setpoint
from evse_can_ros.converter.simulated import SimulatedConverter, SimulatedConverterParams
from evse_can_ros.core.power_stage import Capabilities, Measurement, implausible

GOOD = Measurement(400.0, 10.0, 30.0, 25.0, math.inf, True, True)
RATED = Capabilities(50.0, 1000.0, 200.0, 150e3)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"voltage": math.nan}, "voltage = nan"),
        ({"voltage": math.inf}, "voltage = inf"),
        ({"current": -math.inf}, "current = -inf"),
        ({"module_temperature": math.nan}, "module_temperature = nan"),
        ({"insulation_resistance_ohm": math.nan}, "insulation_resistance"),
        ({"insulation_resistance_ohm": -1.0}, "insulation_resistance"),
        ({"voltage": -25.0}, "negative beyond noise"),
        ({"voltage": 1200.0}, "exceeds the rating"),
        ({"current": 300.0}, "exceeds the rating"),
        ({"enclosure_temperature": 300.0}, "outside"),
    ],
)
def test_impossible_measurements_are_named(change: dict[str, float], reason: str) -> None:
    m = Measurement(**{**GOOD.__dict__, **change})
    assert reason in implausible(m, RATED)


def test_plausible_measurements_pass() -> None:
    assert implausible(GOOD, RATED) == ""
    assert implausible(Measurement(-3.0, -4.0, -20.0, -20.0, 0.0, False, False), RATED) == ""
    # without a rating only finiteness and signs are checked
    assert implausible(Measurement(5000.0, 900.0, 30.0, 25.0, 1e6, True, True), None) == ""


def make(**params: object) -> SimulatedConverter:
    conv = SimulatedConverter(
        SimulatedConverterParams(wake_time=0.0, dead_time=0.0, **params),  # type: ignore[arg-type]
        setpoint_timeout=0.25,
        watchdog_thread=False,
    )
    conv.open()
    conv.wake()
    conv.read(0.0)
    conv.capabilities(0.0)
    return conv


def test_nan_measurement_is_a_fault_and_the_output_goes_off() -> None:
    conv = make()
    conv.apply(Setpoint(Mode.REGULATE, 400.0, 10.0), 0.01)
    conv.read(0.05)
    assert conv.setpoint.mode is Mode.REGULATE
    conv.inject("measurement_nan")
    with pytest.raises(ConverterFault, match="implausible measurement: voltage = nan"):
        conv.read(0.06)
    assert conv.setpoint.mode is Mode.OFF and conv._active.mode is Mode.OFF
    assert "implausible" in conv.fault


def test_read_time_watchdog_on_the_callers_clock() -> None:
    conv = make()
    conv.apply(Setpoint(Mode.REGULATE, 400.0, 10.0), 0.0)
    assert conv.read(0.2).fault == ""
    m = conv.read(0.3)
    assert m.fault.startswith("setpoint watchdog") and conv.setpoint.mode is Mode.OFF
    # reported once; until then apply() kept the output off
    assert conv.read(0.31).fault == ""


def test_apply_keeps_the_output_off_until_the_trip_is_reported() -> None:
    conv = make()
    conv.apply(Setpoint(Mode.REGULATE, 400.0, 10.0), 0.0)
    conv._watchdog_trip(0.3)  # as the thread does
    assert conv.apply(Setpoint(Mode.REGULATE, 400.0, 10.0), 0.31).mode is Mode.OFF
    assert conv.read(0.32).fault.startswith("setpoint watchdog")
    assert conv.apply(Setpoint(Mode.REGULATE, 400.0, 10.0), 0.33).mode is Mode.REGULATE


def test_watchdog_thread_stops_the_output_when_the_caller_is_dead() -> None:
    """Independent of the caller: nothing calls the backend after apply(), the thread trips."""
    conv = SimulatedConverter(
        SimulatedConverterParams(wake_time=0.0, dead_time=0.0), setpoint_timeout=0.05
    )
    conv.open()
    try:
        conv.wake()
        conv.read(0.0)
        applied_at = time.monotonic()
        conv.apply(Setpoint(Mode.REGULATE, 400.0, 10.0), 0.0)
        assert conv._active.mode is Mode.REGULATE
        deadline = time.monotonic() + 5.0
        while conv._active.mode is not Mode.OFF and time.monotonic() < deadline:
            time.sleep(0.005)
        tripped_at = time.monotonic()
        assert conv._active.mode is Mode.OFF, "the watchdog thread did not switch off"
        assert tripped_at - applied_at >= 0.05  # not before the timeout
        assert conv.watchdog is not None and conv.watchdog.trips == 1
        assert conv.read(0.0).fault.startswith("setpoint watchdog")
    finally:
        conv.close()
    assert conv.watchdog is None


def test_watchdog_is_not_armed_while_the_output_is_off() -> None:
    trips: list[float] = []
    dog = OutputWatchdog(0.01, trips.append)
    try:
        dog.feed(False)
        time.sleep(0.05)
        assert trips == []
        dog.feed(True)
        for _ in range(5):  # fed in time: no trip
            time.sleep(0.002)
            dog.feed(True)
        assert trips == []
        time.sleep(0.1)
        assert len(trips) == 1 and trips[0] >= 0.01
    finally:
        dog.close()


def test_stop_acts_even_while_another_call_holds_the_lock() -> None:
    conv = make()
    conv.apply(Setpoint(Mode.REGULATE, 400.0, 10.0), 0.0)
    assert conv._active.mode is Mode.REGULATE
    held = threading.Event()
    release = threading.Event()

    def stuck_call() -> None:
        with conv._lock:
            held.set()
            release.wait(5.0)

    t = threading.Thread(target=stuck_call)
    t.start()
    held.wait(5.0)
    conv.stop()  # must not wait for the stuck call
    assert conv._active.mode is Mode.OFF
    release.set()
    t.join()


def test_simulated_modules_own_watchdog_on_the_plant_clock() -> None:
    conv = make()
    conv.apply(Setpoint(Mode.REGULATE, 400.0, 10.0), 0.0)
    conv.advance(0.2)
    assert conv._active.mode is Mode.REGULATE
    conv.advance(0.3)  # no command for > setpoint_timeout: the modules switch off themselves
    assert conv._active.mode is Mode.OFF
