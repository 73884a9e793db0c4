"""The converter base class contract, the simulated converter's model and the registry."""

from __future__ import annotations

import math
from importlib.metadata import EntryPoint
from typing import Any

import pytest

from evse_can_ros.config import ConfigError
from evse_can_ros.converter import (
    BackendLoadError,
    Capabilities,
    ConverterBackend,
    ConverterFault,
    Measurement,
    Mode,
    Setpoint,
    UnknownBackendError,
    available_backends,
    create_backend,
    registry,
)
from evse_can_ros.converter.simulated import SimulatedConverter, SimulatedConverterParams
from evse_can_ros.core.battery import Battery, BatteryParams, VehicleInlet

DT = 0.01


def make(inlet: VehicleInlet | None = None, **params: Any) -> SimulatedConverter:
    params.setdefault("wake_time", 0.1)
    if inlet is None:
        inlet = VehicleInlet(plugged_in=True)  # battery not connected: capacitive load
    conv = SimulatedConverter(SimulatedConverterParams(**params), inlet)
    conv.open()
    conv.wake()
    run(conv, 0.0, 0.2, None)
    return conv


def run(conv: SimulatedConverter, t0: float, seconds: float, sp: Setpoint | None) -> Measurement:
    """Apply ``sp`` every DT from ``t0`` for ``seconds``; return the last measurement."""
    t = t0
    m = conv.read(t)
    while t < t0 + seconds - 1e-9:
        t = round(t + DT, 9)
        if sp is not None:
            conv.apply(sp, t)
        m = conv.read(t)
    return m


def connected_inlet(soc: float = 50.0) -> VehicleInlet:
    return VehicleInlet(
        battery=Battery(BatteryParams(initial_soc=soc)), plugged_in=True, contactors_closed=True
    )


# --- dynamics ---------------------------------------------------------------------------------


def test_wake_time_then_ready() -> None:
    conv = SimulatedConverter(SimulatedConverterParams(wake_time=0.5), VehicleInlet())
    conv.open()
    assert not conv.read(0.0).ready
    conv.wake()
    assert not conv.read(0.4).ready
    assert conv.read(0.51).ready


def test_voltage_slope_on_a_capacitive_load() -> None:
    conv = make(voltage_slope=1000.0, dead_time=0.0)
    m = run(conv, 0.2, 0.25, Setpoint(Mode.REGULATE, 500.0, 50.0))
    assert m.voltage == pytest.approx(250.0, abs=15.0)  # 1000 V/s
    m = run(conv, 0.45, 0.5, Setpoint(Mode.REGULATE, 500.0, 50.0))
    assert m.voltage == pytest.approx(500.0, abs=1.0)


def test_zero_slope_is_instantaneous_and_current_limit_holds() -> None:
    conv = make(voltage_slope=0.0, dead_time=0.0, output_capacitance=1e-3)
    m = run(conv, 0.2, 0.02, Setpoint(Mode.REGULATE, 400.0, 2.0))
    assert m.current <= 2.0 + 1e-9  # precharge: capacitance charged at <= 2 A
    assert m.voltage < 100.0  # 2 A into 1 mF = 2000 V/s
    m = run(conv, 0.22, 1.0, Setpoint(Mode.REGULATE, 400.0, 2.0))
    assert m.voltage == pytest.approx(400.0, abs=1.0)


def test_dead_time_delays_regulation_but_not_off() -> None:
    conv = make(dead_time=0.1, voltage_slope=0.0)
    m = run(conv, 0.2, 0.05, Setpoint(Mode.REGULATE, 300.0, 20.0))
    assert m.voltage < 1.0  # still within the dead time
    m = run(conv, 0.25, 0.3, Setpoint(Mode.REGULATE, 300.0, 20.0))
    assert m.voltage == pytest.approx(300.0, abs=1.0)
    conv.stop()
    assert not conv.read(0.56).output_enabled


def test_discharge_bleeds_and_off_keeps_the_output() -> None:
    conv = make(voltage_slope=0.0, passive_bleed_resistance=1e9, insulation_resistance=1e12)
    run(conv, 0.2, 0.5, Setpoint(Mode.REGULATE, 1000.0, 20.0))
    m = run(conv, 0.7, 1.0, Setpoint())
    assert m.voltage > 990.0  # OFF: no bleed
    m = run(conv, 1.7, 1.0, Setpoint(Mode.DISCHARGE, 10.0, 0.0))
    assert m.voltage <= 10.0  # 100 Ohm x 1 mF: tau 0.1 s


def test_battery_current_regulation_cc_and_cv_and_no_soc_integration() -> None:
    inlet = connected_inlet()
    soc = inlet.battery.soc
    conv = make(inlet, current_slope=0.0, dead_time=0.0)
    ocv = inlet.battery.ocv()
    m = run(conv, 0.2, 0.5, Setpoint(Mode.REGULATE, 450.0, 100.0))
    assert m.current == pytest.approx(100.0)  # CC
    assert m.voltage == pytest.approx(ocv + 100.0 * 0.08)
    m = run(conv, 0.7, 0.5, Setpoint(Mode.REGULATE, ocv + 2.0, 100.0))
    assert m.current == pytest.approx(25.0) and m.voltage <= ocv + 2.0 + 1e-9  # CV
    m = run(conv, 1.2, 0.5, Setpoint(Mode.REGULATE, ocv - 10.0, 100.0))
    assert m.current == 0.0  # output diode: never sinks
    assert inlet.battery.soc == soc  # energy is counted by the vehicle model only


def test_current_slope_up_and_immediate_cut() -> None:
    conv = make(connected_inlet(), current_slope=100.0, dead_time=0.0)
    m = run(conv, 0.2, 0.5, Setpoint(Mode.REGULATE, 450.0, 100.0))
    assert m.current == pytest.approx(50.0, abs=2.0)
    m = run(conv, 0.7, 0.02, Setpoint(Mode.REGULATE, 450.0, 10.0))
    assert m.current == pytest.approx(10.0)


def test_no_battery_without_contactors() -> None:
    inlet = connected_inlet()
    inlet.contactors_closed = False
    conv = make(inlet)
    m = run(conv, 0.2, 0.5, Setpoint())
    assert m.voltage == pytest.approx(0.0, abs=1e-6)
    inlet.contactors_closed = True
    assert conv.read(0.8).voltage == pytest.approx(inlet.battery.ocv())


def test_own_inlet_for_separate_process_simulation() -> None:
    conv = SimulatedConverter()
    assert conv.owns_inlet and conv.inlet.plugged_in and not conv.inlet.battery_connected
    for state, closed in ((4, False), (5, False), (6, True), (7, True), (8, True), (9, False)):
        conv.follow_controller_state(state)
        assert conv.inlet.battery_connected is closed, state
    shared = SimulatedConverter(inlet=VehicleInlet())
    shared.follow_controller_state(7)  # the vehicle model owns a shared inlet
    assert not shared.owns_inlet and not shared.inlet.contactors_closed


def test_own_inlet_battery_sits_at_the_voltage_the_controller_reports() -> None:
    """Issue 13 item 5: standby after precharge holds the EV voltage; no jump at contactors."""
    conv = SimulatedConverter(
        SimulatedConverterParams(wake_time=0.0, dead_time=0.0), watchdog_thread=False
    )
    conv.open()
    conv.wake()
    conv.read(0.0)
    conv.follow_controller_state(5)
    conv.follow_ev_voltage(372.0)  # Precharge.Target_Voltage = the EV's battery voltage
    assert conv.inlet.battery.ocv() == pytest.approx(372.0, abs=0.01)
    t = 0.0
    for _ in range(100):
        t += DT
        conv.apply(Setpoint(Mode.REGULATE, 372.0, 2.0), t)
        conv.read(t)
    conv.apply(Setpoint(), t)  # standby after precharge: output left alone
    before = conv.read(t + DT).voltage
    conv.follow_controller_state(6)  # the vehicle closes its contactors
    after = conv.read(t + 2 * DT).voltage
    # the passive bleed lowers the open output a little; the battery is where the EV said
    assert before == pytest.approx(372.0, abs=5.0) and after == pytest.approx(372.0, abs=1.0)
    conv.follow_ev_voltage(300.0)  # ignored while the battery is connected
    assert conv.inlet.battery.ocv() == pytest.approx(372.0, abs=0.01)


# --- limits and derating -------------------------------------------------------------------


def test_base_class_clamps_to_capabilities() -> None:
    conv = make(max_voltage=800.0, max_current=100.0, max_power=20000.0, min_voltage=100.0)
    sp = conv.apply(Setpoint(Mode.REGULATE, 900.0, 500.0), 0.3)
    assert sp.voltage == 800.0 and sp.current_limit == pytest.approx(25.0)  # 20 kW / 800 V
    sp = conv.apply(Setpoint(Mode.REGULATE, 400.0, 500.0), 0.31)
    assert sp.current_limit == pytest.approx(50.0)
    assert conv.apply(Setpoint(Mode.REGULATE, 50.0, 5.0), 0.32).mode is Mode.OFF  # < min
    assert conv.apply(Setpoint(Mode.REGULATE, 400.0, -5.0), 0.33).current_limit == 0.0


def test_power_limit_in_the_plant() -> None:
    conv = make(connected_inlet(), max_power=20000.0, current_slope=0.0)
    m = run(conv, 0.2, 0.5, Setpoint(Mode.REGULATE, 450.0, 200.0))
    assert m.voltage * m.current <= 20000.0 * 1.01


def test_temperature_rises_with_losses_and_derates() -> None:
    conv = make(
        connected_inlet(),
        thermal_time_constant=1.0,
        thermal_resistance=0.01,
        current_slope=0.0,
        derating_start=40.0,
        derating_end=90.0,
    )
    caps0 = conv.capabilities(0.2)
    m = run(conv, 0.2, 5.0, Setpoint(Mode.REGULATE, 450.0, 150.0))
    assert m.module_temperature > 40.0  # ~57 kW, 4 % losses: ~24 K rise
    assert m.enclosure_temperature > 25.0
    caps = conv.capabilities(5.2)
    assert caps.max_current < caps0.max_current and caps.max_power < caps0.max_power


# --- fault injection --------------------------------------------------------------------------


def test_fault_insulation() -> None:
    conv = make(insulation_fault_resistance=40e3)
    assert conv.read(0.3).insulation_resistance_ohm == 5e6
    conv.inject("insulation_fault")
    assert conv.read(0.31).insulation_resistance_ohm == 40e3


def test_fault_over_temperature_derates_to_zero_and_trips() -> None:
    conv = make(connected_inlet())
    run(conv, 0.2, 0.3, Setpoint(Mode.REGULATE, 450.0, 100.0))
    conv.inject("over_temperature")
    m = run(conv, 0.5, 0.05, Setpoint(Mode.REGULATE, 450.0, 100.0))
    assert "over-temperature" in m.fault and not m.ready and m.current == 0.0
    assert conv.capabilities(0.6).max_current == 0.0


def test_fault_module_trip() -> None:
    conv = make(connected_inlet())
    run(conv, 0.2, 0.3, Setpoint(Mode.REGULATE, 450.0, 100.0))
    conv.inject("module_trip")
    m = conv.read(0.51)
    assert m.fault == "module trip" and m.current == 0.0 and not m.ready


def test_fault_communication_loss_becomes_converter_fault_and_stops() -> None:
    conv = make(connected_inlet())
    run(conv, 0.2, 0.3, Setpoint(Mode.REGULATE, 450.0, 100.0))
    conv.inject("communication_loss")
    with pytest.raises(ConverterFault, match="read failed: no answer"):
        conv.read(0.51)
    assert conv.setpoint.mode is Mode.OFF and "no answer" in conv.fault
    with pytest.raises(ConverterFault, match="failed: no answer"):
        conv.apply(Setpoint(Mode.REGULATE, 450.0, 100.0), 0.52)
    conv.stop()  # never raises
    conv.inject("communication_loss", False)
    assert conv.read(0.6).current == 0.0 and conv.fault == ""


def test_unknown_fault_name() -> None:
    with pytest.raises(ValueError, match="known: insulation_fault"):
        make().inject("gremlins")


def test_fault_parameters_at_construction() -> None:
    conv = make(module_trip=True)
    assert conv.read(0.3).fault == "module trip"


# --- base class contract -------------------------------------------------------------------


class Flaky(ConverterBackend):
    """A backend whose calls fail on demand."""

    NAME = "flaky"

    def __init__(self, setpoint_timeout: float = 0.2) -> None:
        super().__init__(setpoint_timeout)
        self.fail = False
        self.stops = 0
        self.applied: list[Setpoint] = []

    def _open(self) -> None:
        pass

    def _close(self) -> None:
        pass

    def _wake(self) -> None:
        pass

    def _sleep(self) -> None:
        pass

    def _apply(self, setpoint: Setpoint, now: float) -> None:
        if self.fail:
            raise OSError("bus write failed")
        self.applied.append(setpoint)

    def _read(self, now: float) -> Measurement:
        if self.fail:
            raise TimeoutError("no reply")
        return Measurement(400.0, 10.0, 30.0, 25.0, math.inf, True, True)

    def _stop(self) -> None:
        self.stops += 1
        if self.fail:
            raise OSError("stop failed too")

    def _capabilities(self, now: float) -> Capabilities:
        return Capabilities(100.0, 1000.0, 200.0, 100000.0)


def test_setpoint_watchdog_turns_output_off() -> None:
    b = Flaky()
    b.open()
    b.apply(Setpoint(Mode.REGULATE, 400.0, 10.0), 0.0)
    assert b.read(0.1).fault == ""
    m = b.read(0.25)
    assert "setpoint watchdog" in m.fault and b.setpoint.mode is Mode.OFF and b.stops >= 1
    b.apply(Setpoint(Mode.REGULATE, 400.0, 10.0), 0.3)
    assert b.read(0.31).fault == ""


def test_implementation_errors_become_converter_fault_and_stop() -> None:
    b = Flaky()
    b.open()
    b.apply(Setpoint(Mode.REGULATE, 400.0, 10.0), 0.0)
    b.fail = True
    with pytest.raises(ConverterFault, match="converter read failed: no reply"):
        b.read(0.05)
    assert b.setpoint.mode is Mode.OFF
    b.stop()  # the hardware stop fails too: logged, never raised
    assert "stop failed" in b.fault
    b.close()
    assert not b.is_open


# --- registry ---------------------------------------------------------------------------------


def test_registry_builtin_and_unknown_name() -> None:
    assert "simulated" in available_backends()
    conv = create_backend("simulated", {"max_current": 50.0})
    assert isinstance(conv, SimulatedConverter) and conv.params.max_current == 50.0
    with pytest.raises(UnknownBackendError, match=r"'nope'; available: .*simulated"):
        create_backend("nope", {})
    with pytest.raises(ConfigError, match="max_current"):
        create_backend("simulated", {"max_current": -1.0})
    with pytest.raises(ConfigError, match="unknown parameter"):
        create_backend("simulated", {"bogus": 1})


def test_registry_entry_point_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = {
        "flaky": EntryPoint("flaky", f"{__name__}:Flaky", registry.ENTRY_POINT_GROUP),
        "broken": EntryPoint("broken", "no_such_module:X", registry.ENTRY_POINT_GROUP),
        "notabackend": EntryPoint("notabackend", "math:pi", registry.ENTRY_POINT_GROUP),
    }
    monkeypatch.setattr(registry, "_entry_points", lambda: eps)
    assert available_backends() == ["broken", "flaky", "infypower", "notabackend", "simulated"]
    backend = create_backend("flaky", {})
    assert isinstance(backend, Flaky)
    with pytest.raises(BackendLoadError, match=r"broken.*cannot load"):
        create_backend("broken", {})
    with pytest.raises(BackendLoadError, match="not a ConverterBackend"):
        create_backend("notabackend", {})
    with pytest.raises(ValueError, match="takes no parameters"):
        create_backend("flaky", {"x": 1})


def test_params_are_validated() -> None:
    with pytest.raises(ConfigError, match="min_voltage"):
        SimulatedConverterParams(min_voltage=900.0, max_voltage=800.0)
    with pytest.raises(ConfigError, match="derating_start"):
        SimulatedConverterParams(derating_start=95.0)
