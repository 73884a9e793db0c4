"""Whole charges through the InfyPower backend on a simulated clock (all pure cores, one ``now``).

Controller + vehicle emulator <-> (codec) <-> power-module state machine <-> InfyPower backend
<-> (in-memory module bus) <-> module emulator, with one battery shared by the vehicle and the
modules. The acceptance cases of issue 14 that need time (a drop-out is only taken out after
the modules' 10 s cut-off) run here in about a second each instead of minutes of real time.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from evse_can_ros.converter.base import Mode
from evse_can_ros.converter.infypower.backend import InfyPowerConverter
from evse_can_ros.converter.infypower.emulator import EmulatorParams, ModuleEmulator
from evse_can_ros.converter.infypower.params import InfyPowerParams
from evse_can_ros.converter.infypower.sim import EmulatorLink
from evse_can_ros.core.controller_sim import ControllerSimConfig, ControllerSimulator, Scenario
from evse_can_ros.core.power_module import ControlLoop, PowerModule
from evse_can_ros.core.vehicle import Vehicle, VehicleParams
from evse_can_ros.protocol import SessionEnd, load_codec
from evse_can_ros.protocol.frame import CanFrame

DT = 0.02
STATUS_PERIOD = 0.1
BACKEND = {
    "module_addresses": "0-3",
    "poll_period": 0.25,
    "frame_spacing": 0.01,
    "reply_timeout": 1.0,
    "offline_timeout": 11.5,
    "insulation_monitor": "external_pass_fail",
}


@dataclass
class Charge:
    """One pistol on a simulated clock."""

    backend: dict[str, Any] = field(default_factory=dict)
    emulator: dict[str, Any] = field(default_factory=dict)
    soc_time_scale: float = 50.0

    def __post_init__(self) -> None:
        codec = load_codec()
        self.codec = codec
        self.vehicle = Vehicle(
            VehicleParams(initial_soc=20.0, target_soc=80.0, soc_time_scale=self.soc_time_scale)
        )
        self.sim = ControllerSimulator(
            codec, ControllerSimConfig(boot_time=0.5), self.vehicle, Scenario(plug_in_delay=0.5)
        )
        self.emu = ModuleEmulator(EmulatorParams(**self.emulator), self.vehicle.inlet)
        self.link = EmulatorLink(self.emu)
        self.conv = InfyPowerConverter(
            InfyPowerParams(**{**BACKEND, **self.backend}),
            setpoint_timeout=0.5,
            watchdog_thread=False,
            transport=self.link,
        )
        self.conv.open()
        self.pm = PowerModule()
        self.loop = ControlLoop(self.pm, self.conv)
        self.t = 0.0
        self._to_controller: list[CanFrame] = []
        self._next_status = 0.0
        self.max_excess = 0.0  # current limit of the modules that hear us above the request
        self.max_deaf = 0.0  # current limit of modules that cannot hear us (drop-out) [A]
        self.max_total_excess = 0.0  # all modules that are on, above the request
        self.trace: list[tuple[float, str, float, float]] = []  # t, phase, request, plant A
        self._request = 0.0

    def step(self) -> None:
        self.t = round(self.t + DT, 6)
        for frame in self.sim.step(self.t, self._to_controller):
            self.pm.on_message(self.codec.decode(frame, 1), self.t)
        self._to_controller = []
        self.link.advance(self.t)
        out = self.loop.tick(self.t)
        if self.t >= self._next_status - 1e-9:
            self._next_status += STATUS_PERIOD
            status = replace(  # +inf ("good" from a pass/fail monitor) clamped as the bridge does
                out.status,
                insulation_resistance=self.codec.clamp(
                    "Power_Modules_Status",
                    "Insulation_Resistance",
                    out.status.insulation_resistance,
                ),
            )
            self._to_controller.append(self.codec.encode(status, 1))
        applied = self.loop.applied
        request = applied.current_limit if applied.mode is Mode.REGULATE else 0.0
        if request > 0:
            request = max(request, self.conv.params.min_current)
        # a module that cannot hear us keeps its last share until its own cut-off: counted
        # separately (physics); every module that hears must follow the request
        hearing = sum(self.emu._limit(m) for m in self.emu.modules.values() if m.on and not m.deaf)
        deaf = self.emu.current_limit() - hearing
        self.max_excess = max(self.max_excess, hearing - max(request, self._request))
        self.max_deaf = max(self.max_deaf, deaf)
        self.max_total_excess = max(
            self.max_total_excess, hearing + deaf - max(request, self._request)
        )
        self._request = request
        self.trace.append((self.t, out.phase, request, self.emu.current))

    def run(self, seconds: float, until: Any = None) -> bool:
        end = self.t + seconds
        while self.t < end:
            self.step()
            if until is not None and until(self):
                return True
        return False

    def charging_since(self) -> float:
        return next(t for t, phase, _r, i in self.trace if phase == "CHARGING" and i > 50.0)


def finished(c: Charge) -> bool:
    return c.sim.session_result is not None


def test_charge_20_to_80_percent_through_four_modules() -> None:
    c = Charge()
    assert c.run(300.0, finished), c.sim.events[-5:]
    assert c.sim.session_result is SessionEnd.CLEAN_STOP, c.sim.end_reason
    assert c.vehicle.soc >= 80.0
    assert c.pm.fault == ""
    peak = max(i for _t, _p, _r, i in c.trace)
    assert peak == pytest.approx(200.0, abs=1.0)  # 4 x 50 A
    assert c.max_excess <= 0.01
    assert not c.emu.output_on


def test_module_drop_out_with_capacity_left_re_splits_and_the_charge_completes() -> None:
    c = Charge(emulator={"fault": "drop_out", "fault_module": 3, "fault_delay": 2.0})
    assert c.run(300.0, finished), c.sim.events[-5:]
    assert c.sim.session_result is SessionEnd.CLEAN_STOP, c.sim.end_reason
    assert c.vehicle.soc >= 80.0 and c.pm.fault == ""
    events = [text for _t, text in c.conv.supervisor.events]
    assert any("module 3 silent" in e for e in events)
    assert any("module 3 offline" in e and "re-split" in e for e in events)
    t_drop = c.charging_since() + 2.0
    after = [(t, i) for t, _p, _r, i in c.trace if t_drop + 13.0 <= t <= t_drop + 20.0]
    assert after and all(i == pytest.approx(150.0, abs=1.0) for _t, i in after)  # 3 x 50 A
    assert c.max_total_excess <= 0.01  # never more current limit than requested
    assert c.max_deaf <= 50.0  # the dropped module keeps its own share, never more


def test_module_drop_out_without_capacity_left_is_a_converter_fault_and_output_off() -> None:
    c = Charge(
        backend={"min_modules": 4},
        emulator={"fault": "drop_out", "fault_module": 3, "fault_delay": 2.0},
    )
    assert c.run(300.0, finished), c.sim.events[-5:]
    assert c.sim.session_result is SessionEnd.RUSHED_STOP
    assert "converter fault" in c.pm.fault and "only 3 of 4" in c.pm.fault
    t_drop = c.charging_since() + 2.0
    t_fault = next(t for t, phase, _r, _i in c.trace if phase == "OFF_LATCHED")
    assert t_fault - t_drop <= 1.6  # reply_timeout 1 s + a poll round
    c.run(11.0)  # the deaf module cannot hear the off: its own 10 s cut-off
    assert not c.emu.output_on and c.emu.current == 0.0
    assert [m.on for m in c.emu.modules.values()] == [False] * 4
    assert c.max_excess <= 0.01
