"""The backend test kit (evse_can_ros.converter.testkit) for both built-in backends.

Also the worked example for backend authors: a harness per backend, and one line of test class
each. ``infypower`` runs against the module emulator on python-can's ``virtual`` bus (the real
transport of the backend, with its receive thread).
"""

from __future__ import annotations

import time
import uuid

import can

from evse_can_ros.converter.base import ConverterBackend, Mode
from evse_can_ros.converter.infypower.backend import InfyPowerConverter
from evse_can_ros.converter.infypower.emulator import EmulatorParams, ModuleEmulator
from evse_can_ros.converter.infypower.params import InfyPowerParams
from evse_can_ros.converter.simulated import SimulatedConverter, SimulatedConverterParams
from evse_can_ros.converter.testkit import BackendHarness, ConverterContract, Fault
from evse_can_ros.core.battery import VehicleInlet
from evse_can_ros.protocol.frame import CanFrame

# --- simulated: the fake is a real backend (faults injected into the backend itself) ----------

SIMULATED_FAULTS = {
    Fault.COMMUNICATION_LOSS: "communication_loss",
    Fault.HARDWARE_FAULT: "module_trip",
    Fault.OVER_TEMPERATURE: "over_temperature",
    Fault.MEASUREMENT_GARBAGE: "measurement_nan",
}


class SimulatedHarness(BackendHarness):
    """The simulated converter's plant is inside the backend."""

    ready_within = 0.5
    cutoff_within = 1.0  # its modules' own watchdog (setpoint_timeout on the plant clock)

    def __init__(self) -> None:
        self.backend: SimulatedConverter | None = None

    def make_backend(self, setpoint_timeout: float, watchdog_thread: bool) -> ConverterBackend:
        self.backend = SimulatedConverter(
            SimulatedConverterParams(wake_time=0.1, dead_time=0.0),
            VehicleInlet(plugged_in=True),
            setpoint_timeout,
            watchdog_thread=watchdog_thread,
        )
        return self.backend

    def advance(self, now: float) -> None:
        assert self.backend is not None
        self.backend.advance(now)

    def plant_output_on(self) -> bool:
        assert self.backend is not None
        return self.backend._active.mode is Mode.REGULATE

    def plant_current_limit(self) -> float:
        assert self.backend is not None
        active = self.backend._active
        return active.current_limit if active.mode is Mode.REGULATE else 0.0

    def inject(self, fault: Fault, on: bool = True) -> None:
        assert self.backend is not None
        self.backend.inject(SIMULATED_FAULTS[fault], on)


class TestSimulatedContract(ConverterContract):
    def make_harness(self) -> BackendHarness:
        return SimulatedHarness()


# --- infypower: the module emulator on a virtual bus ------------------------------------------


class InfyPowerHarness(BackendHarness):
    """Four emulated modules on an in-process python-can bus, moved by the suite's clock.

    :meth:`advance` hands the frames the backend sent to the emulator at ``now`` and waits
    until the backend's receive thread has queued every reply, so runs are deterministic.
    """

    ready_within = 3.0  # status, then ratings: two poll rounds
    fault_within = 2.0  # reply_timeout 1 s + a poll round
    plant_off_within = 0.2
    cutoff_within = 11.0  # the modules' own 10 s cut-off
    recover_within = 3.0

    def __init__(self) -> None:
        self.channel = f"infy-kit-{uuid.uuid4().hex[:8]}"
        self.emulator = ModuleEmulator(EmulatorParams(modules=4), VehicleInlet(plugged_in=True))
        self.bus = can.Bus(interface="virtual", channel=self.channel)
        self.backend: InfyPowerConverter | None = None
        self.replies = 0  # sent to the present backend

    def make_backend(self, setpoint_timeout: float, watchdog_thread: bool) -> ConverterBackend:
        params = InfyPowerParams(
            can_interface="virtual",
            can_channel=self.channel,
            module_addresses="0-3",
            poll_period=0.25,
            frame_spacing=0.01,
            reply_timeout=1.0,
            offline_timeout=11.5,
            off_confirm_timeout=1.0,
        )
        self.backend = InfyPowerConverter(
            params, setpoint_timeout, watchdog_thread=watchdog_thread
        )
        self.replies = 0
        return self.backend

    def advance(self, now: float) -> None:
        out: list[CanFrame] = []
        while (msg := self.bus.recv(timeout=0.0)) is not None:
            request = CanFrame(msg.arbitration_id, bytes(msg.data), now, msg.is_extended_id)
            out += self.emulator.receive(request, now)
        out += self.emulator.advance(now)
        for f in out:
            self.bus.send(can.Message(arbitration_id=f.arbitration_id, data=f.data))
        b = self.backend
        if b is None or not b.is_open:
            return
        self.replies += len(out)
        deadline = time.monotonic() + 2.0
        while b.frames_received < self.replies and time.monotonic() < deadline:
            time.sleep(0.0002)
        assert b.frames_received >= self.replies, "the backend's receive thread lost frames"

    def plant_output_on(self) -> bool:
        return self.emulator.output_on

    def plant_current_limit(self) -> float:
        return self.emulator.current_limit()

    def inject(self, fault: Fault, on: bool = True) -> None:
        if fault is Fault.COMMUNICATION_LOSS:
            self.emulator.silence(on)
        else:
            name = {
                Fault.HARDWARE_FAULT: "hardware_fault",
                Fault.OVER_TEMPERATURE: "over_temperature",
                Fault.MEASUREMENT_GARBAGE: "nan_reading",
            }[fault]
            self.emulator.inject(1, name, on)

    def close(self) -> None:
        self.bus.shutdown()


class TestInfyPowerContract(ConverterContract):
    def make_harness(self) -> BackendHarness:
        return InfyPowerHarness()
