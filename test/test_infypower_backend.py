"""The InfyPower backend against the module emulator on a simulated clock (no threads).

The backend (base-class contract included) talks to :class:`ModuleEmulator` through
:class:`EmulatorLink`; the digest's test cases (§7.3) and the safety invariant of current
sharing: the modules that are on never have more current limit in total than requested.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from evse_can_ros.config import ConfigError
from evse_can_ros.converter import ConverterFault, Mode, Setpoint, create_backend, registry
from evse_can_ros.converter.infypower.backend import InfyPowerConverter
from evse_can_ros.converter.infypower.emulator import EmulatorParams, ModuleEmulator
from evse_can_ros.converter.infypower.params import InfyPowerParams
from evse_can_ros.converter.infypower.protocol import (
    CONTROLLER_ADDRESS,
    Command,
    Device,
    InfyId,
    decode_set_vi,
)
from evse_can_ros.converter.infypower.sim import EmulatorLink
from evse_can_ros.converter.infypower.supervisor import Link
from evse_can_ros.core.battery import Battery, BatteryParams, VehicleInlet
from evse_can_ros.core.power_stage import Measurement

FAST = {"poll_period": 0.25, "frame_spacing": 0.01, "reply_timeout": 1.0, "offline_timeout": 11.5}
DT = 0.02
TOLERANCE = 0.01  # A: mA truncation


class Plant:
    """Backend + emulated modules + battery, stepped together on a simulated clock."""

    def __init__(self, modules: int = 3, emulator: dict[str, Any] | None = None, **backend: Any):
        self.inlet = VehicleInlet(Battery(BatteryParams(initial_soc=50.0)), True, True)
        self.emu = ModuleEmulator(EmulatorParams(modules=modules, **(emulator or {})), self.inlet)
        self.emu.record = True
        self.link = EmulatorLink(self.emu)
        kw = {**FAST, "module_addresses": f"0-{modules - 1}", **backend}
        self.backend = InfyPowerConverter(
            InfyPowerParams(**kw), setpoint_timeout=0.5, watchdog_thread=False, transport=self.link
        )
        self.backend.open()
        self.backend.wake()
        self.t = 0.0
        self.faults: list[str] = []
        self.m: Measurement | None = None
        # worst (current limit of the modules that are on - requested current limit), against the
        # request of this and the previous tick (frames reach the modules one tick later) and
        # against the highest request of the test (a module that cannot hear keeps its share)
        self.max_excess = 0.0
        self.peak_excess = 0.0
        self._previous = 0.0
        self._peak = 0.0
        self.run(1.5, None)
        assert self.m is not None and self.m.ready, self.backend.supervisor.events

    def run(self, seconds: float, sp: Setpoint | None, latch: bool = True) -> None:
        """Read and apply ``sp`` every DT; after a fault only OFF (the control loop latches)."""
        end = self.t + seconds
        faults = len(self.faults)
        while self.t < end - 1e-9:
            self.t = round(self.t + DT, 6)
            self.link.advance(self.t)
            try:
                self.m = self.backend.read(self.t)
                if self.m.fault:
                    self.faults.append(self.m.fault)
            except ConverterFault as exc:
                self.faults.append(str(exc))
                self.m = None
            requested = 0.0
            if latch and len(self.faults) > faults:
                sp = Setpoint()
            if sp is not None:
                try:
                    applied = self.backend.apply(sp, self.t)
                    requested = applied.current_limit if applied.mode is Mode.REGULATE else 0.0
                except ConverterFault as exc:
                    self.faults.append(str(exc))
            if requested > 0:
                requested = max(requested, self.backend.params.min_current)
            on = self.emu.current_limit()
            self.max_excess = max(self.max_excess, on - max(requested, self._previous))
            self._previous = requested
            self._peak = max(self._peak, requested)
            self.peak_excess = max(self.peak_excess, on - self._peak)

    def modules_on(self) -> list[int]:
        return [a for a, m in self.emu.modules.items() if m.on]

    def limits(self) -> dict[int, float]:
        return {a: m.i_set for a, m in self.emu.modules.items() if m.on}


CHARGE = Setpoint(Mode.REGULATE, 450.0, 120.0)


def test_charging_with_equal_shares_and_a_measurement_that_adds_up() -> None:
    plant = Plant()
    plant.run(3.0, CHARGE)
    assert plant.limits() == pytest.approx({0: 40.0, 1: 40.0, 2: 40.0})
    assert plant.emu.current == pytest.approx(120.0)
    assert plant.m is not None and plant.m.current == pytest.approx(120.0, abs=0.5)
    assert plant.m.voltage == pytest.approx(plant.emu.voltage, abs=0.2)
    assert plant.faults == [] and plant.max_excess <= TOLERANCE


def test_every_frame_matches_the_digest_layout() -> None:
    """All frames of a session with a drop-out, a return and a stop."""
    plant = Plant(emulator={"group": 2})
    plant.run(2.0, CHARGE)
    plant.emu.inject(2, "drop_out")
    plant.run(13.0, CHARGE)
    plant.emu.inject(2, "drop_out", on=False)
    plant.run(2.0, CHARGE)
    plant.backend.stop()
    plant.run(2.0, Setpoint())
    caps = plant.backend.capabilities(plant.t)
    assert len(plant.link.sent) > 300
    for f in plant.link.sent:
        ident = InfyId.decode(f.arbitration_id)
        assert f.is_extended_id and len(f.data) == 8 and f.arbitration_id <= 0x1FFF_FFFF
        assert ident.error == 0 and ident.source == CONTROLLER_ADDRESS
        assert ident.device == Device.MODULE and ident.destination in (0, 1, 2)
        command = Command(ident.command)
        if command is Command.SET_ON_OFF:
            assert f.data[0] in (0, 1) and f.data[1:] == bytes(7)
        elif command is Command.SET_VI:
            v, i = decode_set_vi(f.data)
            assert caps.min_voltage <= v <= caps.max_voltage and 0 < i <= 50.0
        else:
            assert f.data == bytes(8)  # reads: 8 zero bytes
    assert all(m.group_setpoints == 0 for m in plant.emu.modules.values())
    assert plant.emu.gaps["< 50 ms"] > 0  # setpoint bursts are not paced (like the REG driver)


def test_drop_out_keeps_the_share_until_the_module_is_surely_off_then_re_splits() -> None:
    plant = Plant()
    plant.run(2.0, CHARGE)
    plant.emu.inject(2, "drop_out")
    plant.run(2.0, CHARGE)  # stale after reply_timeout: commanded off, its share not given away
    sup = plant.backend.supervisor
    assert sup.modules[2].link is Link.STALE
    assert plant.limits() == pytest.approx({0: 40.0, 1: 40.0, 2: 40.0})  # 2 still on (deaf)
    assert plant.backend.capabilities(plant.t).max_current == 150.0  # still counted
    plant.run(8.5, CHARGE)  # t ~ 12.5: the module's own 10 s cut-off has switched it off
    assert plant.modules_on() == [0, 1] and sup.modules[2].link is Link.STALE
    assert plant.limits() == pytest.approx({0: 40.0, 1: 40.0})  # under-delivery, never more
    plant.run(1.5, CHARGE)  # offline_timeout 11.5 s after the first unanswered read
    assert sup.modules[2].link is Link.OFFLINE
    assert plant.limits() == pytest.approx({0: 50.0, 1: 50.0})  # re-split (capped by capacity)
    assert plant.backend.capabilities(plant.t).max_current == 100.0
    assert plant.emu.current == pytest.approx(100.0)
    # the module comes back: the others decrease first, then it is switched on again
    plant.emu.inject(2, "drop_out", on=False)
    n = len(plant.link.sent)
    plant.run(1.0, CHARGE)
    assert plant.limits() == pytest.approx({0: 40.0, 1: 40.0, 2: 40.0})
    sets = [
        (InfyId.decode(f.arbitration_id).destination, decode_set_vi(f.data)[1])
        for f in plant.link.sent[n:]
        if InfyId.decode(f.arbitration_id).command == Command.SET_VI
    ]
    # the setpoint still carries the 100 A of two modules: 33.3 A each, the lowered ones first
    assert [a for a, _ in sets[:3]] == [0, 1, 2]
    assert sum(i for _, i in sets[:3]) <= 100.0
    assert plant.faults == [] and plant.max_excess <= TOLERANCE


def test_a_module_that_hears_but_does_not_answer_is_switched_off() -> None:
    plant = Plant()
    plant.run(2.0, CHARGE)
    plant.emu.inject(1, "no_reply")  # its own cut-off will never fire: it hears us
    plant.run(1.5, CHARGE)
    assert plant.modules_on() == [0, 2]  # our off command did it
    plant.run(11.0, CHARGE)
    assert plant.limits() == pytest.approx({0: 50.0, 2: 50.0})
    assert plant.max_excess <= TOLERANCE and plant.faults == []


def test_capacity_gone_is_a_fault_with_every_module_off() -> None:
    plant = Plant(min_modules=3)
    plant.run(2.0, CHARGE)
    plant.emu.inject(0, "drop_out")
    plant.run(1.5, CHARGE)
    assert any("only 2 of 3 InfyPower modules online" in f for f in plant.faults)
    assert plant.modules_on() == [0]  # the deaf one, until its own cut-off
    plant.run(9.0, CHARGE)
    assert plant.modules_on() == [] and plant.emu.current == 0.0
    assert plant.peak_excess <= TOLERANCE


def test_all_modules_silent_is_a_converter_fault_and_traffic_back_recovers() -> None:
    plant = Plant()
    plant.run(2.0, CHARGE)
    plant.emu.silence()
    plant.run(1.5, CHARGE)
    assert any("no InfyPower module answers" in f for f in plant.faults)
    assert plant.backend.setpoint.mode is Mode.OFF
    plant.run(9.0, Setpoint())  # the caller stops (latched off); the cut-off does the rest
    assert plant.modules_on() == []
    plant.emu.silence(False)
    plant.run(0.5, Setpoint())  # the next status reads are answered
    plant.faults.clear()
    plant.run(1.0, Setpoint())
    assert plant.m is not None and plant.m.ready and plant.faults == []
    plant.run(1.0, CHARGE)
    assert len(plant.modules_on()) == 3


@pytest.mark.parametrize(
    ("fault", "name"),
    [
        ("over_temperature", "OVER_TEMPERATURE"),
        ("ac_input_fault", "UNDER_VOLTAGE_AC"),
        ("hardware_fault", "HARDWARE_FAULT"),
    ],
)
def test_module_alarms_are_reported_and_every_module_goes_off(fault: str, name: str) -> None:
    plant = Plant()
    plant.run(2.0, CHARGE)
    plant.emu.inject(1, fault)
    plant.run(0.5, CHARGE)
    assert any("module 1:" in f and f"[{name}]" in f for f in plant.faults)
    assert plant.modules_on() == []
    assert plant.m is not None and not plant.m.ready


def test_nan_reading_never_reaches_the_caller() -> None:
    plant = Plant()
    plant.run(1.0, CHARGE)
    plant.emu.inject(0, "nan_reading")
    plant.run(0.5, CHARGE)
    assert any("implausible" not in f and "reports V/I nan" in f for f in plant.faults)
    assert plant.modules_on() == []


def test_stop_sends_off_to_every_module_and_is_confirmed_by_measurement() -> None:
    plant = Plant()
    plant.run(2.0, CHARGE)
    n = len(plant.link.sent)
    plant.backend.stop()
    offs = [
        InfyId.decode(f.arbitration_id).destination
        for f in plant.link.sent[n:]
        if InfyId.decode(f.arbitration_id).command == Command.SET_ON_OFF and f.data[0] == 1
    ]
    assert sorted(offs) == [0, 1, 2]
    plant.run(0.5, Setpoint())
    assert plant.modules_on() == [] and plant.m is not None and not plant.m.output_enabled
    assert all(m.confirmed_off() for m in plant.backend.supervisor.modules.values())


def test_stop_never_raises_when_the_bus_is_gone() -> None:
    plant = Plant()
    plant.run(1.0, CHARGE)
    plant.link.broken = True
    plant.backend.stop()
    assert plant.backend.send_failures >= 3 and plant.backend.fault == ""
    plant.backend.close()
    plant.backend.stop()


def test_registry_and_parameters() -> None:
    backend = create_backend("infypower", {"can_interface": "virtual", "module_addresses": "0-1"})
    assert isinstance(backend, InfyPowerConverter) and backend.params.addresses() == (0, 1)
    assert "infypower" in registry.available_backends()
    with pytest.raises(ConfigError, match="offline_timeout 12 s must exceed") as info:
        create_backend("infypower", {"offline_timeout": 12.0})
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="unknown parameter"):
        create_backend("infypower", {"adresses": "0"})


def test_third_party_route_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same class registered as an installed entry point (what a third party does)."""
    from importlib.metadata import EntryPoint

    ep = EntryPoint(
        "acme_infy",
        "evse_can_ros.converter.infypower.backend:InfyPowerConverter",
        registry.ENTRY_POINT_GROUP,
    )
    monkeypatch.setattr(registry, "_entry_points", lambda: {"acme_infy": ep})
    assert "acme_infy" in registry.available_backends()
    assert registry.backend_class("acme_infy") is InfyPowerConverter


def test_the_real_bus_transport_on_a_virtual_channel() -> None:
    """open() on python-can's virtual bus; a bad interface is a one-line ConverterFault."""
    backend = create_backend("infypower", {"can_interface": "virtual", "can_channel": "infy-t"})
    backend.open()
    try:
        assert backend.is_open
        backend.read(0.0)
    finally:
        backend.close()
    bad = create_backend("infypower", {"can_interface": "no_such_interface"})
    with pytest.raises(ConverterFault, match="not available") as info:
        bad.open()
    assert "\n" not in str(info.value)
    assert math.isfinite(backend.capabilities(0.0).max_current)


def test_the_example_params_file_is_complete_and_valid() -> None:
    """config/infypower.yaml names every parameter and loads as a valid configuration."""
    import dataclasses
    from pathlib import Path

    import yaml

    from evse_can_ros.config import from_mapping

    path = Path(__file__).resolve().parents[1] / "config" / "infypower.yaml"
    values = yaml.safe_load(path.read_text())["/**/converter_driver"]["ros__parameters"]
    assert values["converter_backend"] == "infypower"
    ours = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("infypower.")}
    assert set(ours) == {f.name for f in dataclasses.fields(InfyPowerParams)}
    assert from_mapping(InfyPowerParams, ours) == InfyPowerParams()  # the defaults, documented
