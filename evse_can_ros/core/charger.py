"""The whole charger in memory, on one simulated clock: every core, wired as the nodes wire them.

:class:`InMemoryCharger` connects, for one pistol,

* the controller + vehicle emulator (:class:`~evse_can_ros.core.controller_sim.
  ControllerSimulator`) and the bridge core (:class:`~evse_can_ros.core.bridge.BridgeCore`)
  through CAN frames (the bus trace is kept in :attr:`InMemoryCharger.bus`);
* the bridge core and the converter driver core (:class:`~evse_can_ros.core.converter_driver.
  ConverterDriver`) on a power stage, and the charge server core (:class:`~evse_can_ros.core.
  charge_server.ChargeServer`), through the same messages the ROS topics and services carry,
  at the same rates (controller_state every 100 ms and on change, control loop 20 ms,
  power_modules_status 50 ms and on change, charge server 100 ms).

Everything is stepped with the same ``now`` (10 ms steps by default), so a two-hour charge runs in
well under a second and every run is deterministic. The power stage is injected (a core never
imports a backend): :func:`evse_can_ros.simulation.simulated_charger` builds one with the
simulated converter sharing the vehicle's inlet.

Fault injection for the behaviour matrices: :meth:`kill` / :meth:`revive` a node (``bridge``,
``driver``), :meth:`raise_in` (an exception in the bridge's transmit path or the driver's control
loop, handled the way the nodes' guards handle it), :meth:`link_down` (bus-off), and the
emulator's own knobs (:attr:`controller`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from evse_can_ros.core.bridge import BridgeConfig, BridgeCore, RxKind
from evse_can_ros.core.charge_server import ChargeServer, DepotState, GoalDecision
from evse_can_ros.core.charge_session import (
    Command,
    Feedback,
    PressChademoStart,
    PressUserStop,
    Result,
    SessionConfig,
    SetCcsAuthorisation,
    SetLimits,
    SetStartAuthorisation,
)
from evse_can_ros.core.controller_sim import ControllerSimConfig, ControllerSimulator, Scenario
from evse_can_ros.core.converter_driver import ConverterDriver, Report
from evse_can_ros.core.power_module import PowerModuleConfig
from evse_can_ros.core.power_stage import Measurement, PowerStage
from evse_can_ros.core.vehicle import Vehicle
from evse_can_ros.protocol import (
    CanFrame,
    CanMessage,
    ChargeSessionFinished,
    ChargeStatusChange,
    ChargingLoop,
    Codec,
    ControllerState,
    DcPowerControl,
    DcPowerParameters,
    EmergencyStop,
    EvInformationBattery,
    EvInformationChargeLimits,
    EvInformationVoltages,
    InsulationTest,
    NewChargeSession,
    NewChargeSessionV3,
    OcppControl,
    PowerModulesLimits,
    PowerModulesStatus,
    Precharge,
    SequenceControl,
)

log = logging.getLogger(__name__)

DRIVER_INPUTS = (
    NewChargeSession,
    InsulationTest,
    Precharge,
    ChargingLoop,
    ChargeStatusChange,
    EmergencyStop,
    ChargeSessionFinished,
    NewChargeSessionV3,
    DcPowerControl,
    OcppControl,
    EvInformationVoltages,
)
"""Controller messages the converter driver subscribes to (v2 and v3)."""
STATE_EVENTS = ("controller_lost", "controller_alive", "state")
"""Bridge events after which controller_state is published at once."""
SERVER_INPUTS = (
    NewChargeSession,
    ChargingLoop,
    EmergencyStop,
    ChargeSessionFinished,
    NewChargeSessionV3,
    EvInformationBattery,
    EvInformationVoltages,
    EvInformationChargeLimits,
)
"""Controller messages the charge server subscribes to."""


class Plant(PowerStage, Protocol):
    """A power stage whose physics can run without commands (a dead driver)."""

    def advance(self, now: float) -> None:
        """Move the physical model to ``now``."""

    def output(self) -> tuple[float, float]:
        """Return the true output voltage [V] and current [A] (not what anybody reports)."""


@dataclass(frozen=True)
class Timing:
    """Rates of the node set (the nodes' timers), seconds."""

    step: float = 0.01
    control_period: float = 0.02
    status_period: float = 0.05
    state_period: float = 0.1
    converter_status_period: float = 0.1
    server_period: float = 0.1


@dataclass(frozen=True)
class BusRecord:
    """One frame on the bus: time, direction (True = sent by the power side), message."""

    time: float
    from_power_side: bool
    message: CanMessage
    frame: CanFrame | None = None  # as sent (identifier, data), for conformance checks


@dataclass
class Trace:
    """What happened, for assertions."""

    bus: list[BusRecord] = field(default_factory=list)
    output: list[tuple[float, float, float]] = field(default_factory=list)  # (t, V, A) true
    statuses: list[tuple[float, PowerModulesStatus]] = field(default_factory=list)  # published
    feedback: list[Feedback] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    depot: list[tuple[float, DepotState]] = field(default_factory=list)  # on change
    faults: list[tuple[float, str]] = field(default_factory=list)  # driver faults latched

    def sent(self, kind: type[CanMessage], since: float = -math.inf) -> list[tuple[float, object]]:
        """Frames of one message type sent by the power side since ``since``."""
        return [
            (r.time, r.message)
            for r in self.bus
            if r.from_power_side and isinstance(r.message, kind) and r.time >= since
        ]


class InMemoryCharger:
    """One pistol of the charger and its simulated controller + vehicle (module docstring)."""

    def __init__(
        self,
        codec: Codec,
        stage: Plant,
        vehicle: Vehicle,
        *,
        pistol_index: int = 1,
        controller: ControllerSimConfig | None = None,
        scenario: Scenario | None = None,
        bridge: BridgeConfig | None = None,
        power_module: PowerModuleConfig | None = None,
        session: SessionConfig | None = None,
        timing: Timing | None = None,
    ) -> None:
        self.codec = codec
        self.stage = stage
        self.timing = timing or Timing()
        self.pistol_index = pistol_index
        self._bridge_config = bridge or BridgeConfig(pistol_index=pistol_index)
        self._pm_config = power_module or PowerModuleConfig()
        self.controller = ControllerSimulator(
            codec,
            controller or ControllerSimConfig(pistol_index=pistol_index),
            vehicle,
            scenario or Scenario(plug_in_delay=-1.0),
        )
        self.vehicle = vehicle
        self.bridge = BridgeCore(codec, self._bridge_config)
        self.version = codec.protocol_version
        self.driver = ConverterDriver(stage, self._pm_config, self.version)
        self.server = ChargeServer(session or SessionConfig(), pistol_index, self.version)
        self.now = 0.0
        self.trace = Trace()
        self.alive = {"bridge": True, "driver": True, "server": True}
        self.link_ok = True
        self._deaf_until = -math.inf  # controller frames do not reach the bridge until then
        self.dropped: tuple[type[CanMessage], ...] = ()  # controller messages that never arrive
        self._to_controller: list[CanFrame] = []
        self._injected: list[CanFrame] = []
        self._next: dict[str, float] = {}
        self._raise: dict[str, int] = {}
        self._goal_counter = 0

    # --- the clock --------------------------------------------------------------------------

    def run(self, seconds: float, until: Callable[[InMemoryCharger], bool] | None = None) -> bool:
        """Step for ``seconds`` (or until ``until`` holds); return whether ``until`` held."""
        end = self.now + seconds
        while self.now < end - 1e-9:
            self.step()
            if until is not None and until(self):
                return True
        return until is None

    def step(self) -> None:
        """Advance every part by one step."""
        self.now = round(self.now + self.timing.step, 9)
        now = self.now
        if not self.alive["driver"]:
            self.stage.advance(now)  # physics goes on without a driver
        frames = self.controller.step(now, self._to_controller) + self._injected
        self._to_controller, self._injected = [], []
        for frame in frames:
            message = self._record(frame, from_power_side=False)
            if isinstance(message, self.dropped):
                continue
            if self.alive["bridge"] and self.link_ok and now >= self._deaf_until:
                self._bridge_receive(frame)
        if self.alive["bridge"]:
            self._bridge_transmit()
        if self.alive["driver"] and self._due("control", self.timing.control_period):
            self._driver_tick()
        if self.alive["driver"] and self._due("status", self.timing.status_period):
            self._publish_status(self.driver.status())
        if self.alive["driver"] and self._due("converter", self.timing.converter_status_period):
            pm = self.driver.module
            self.server.on_converter_fault(self.now, pm.fault_kind, pm.fault)
        if self.alive["server"] and self._due("server", self.timing.server_period):
            self._server_step()
        v, i = self.stage.output()
        self.trace.output.append((now, v, i))

    def _due(self, key: str, period: float) -> bool:
        due = self._next.get(key, self.now)
        if self.now + 1e-9 < due:
            return False
        self._next[key] = max(due + period, self.now + period / 2)
        return True

    # --- goals ------------------------------------------------------------------------------

    def submit_goal(self, **values: float | bool) -> GoalDecision:
        """Send a Charge goal to the charge server."""
        self._goal_counter += 1
        decision = self.server.submit_goal(self.now, f"g{self._goal_counter}", values)
        if not decision.accepted:
            assert decision.result is not None
            self.trace.results.append(decision.result)
        return decision

    def cancel_goal(self) -> bool:
        """Cancel the running goal."""
        return self.server.cancel(self.now)

    def charge(self, timeout: float = 3600.0, **values: float | bool) -> Result:
        """Run one goal to its result (AssertionError if it does not end within ``timeout``)."""
        before = len(self.trace.results)
        self.submit_goal(**values)
        ended = self.run(timeout, until=lambda c: len(c.trace.results) > before)
        assert ended, f"no result within {timeout} s (stage {self.server.session})"
        return self.trace.results[-1]

    # --- fault injection --------------------------------------------------------------------

    def kill(self, node: str) -> None:
        """Stop a node (``bridge``, ``driver`` or ``server``): it no longer runs or answers."""
        self.alive[node] = False

    def revive(self, node: str) -> None:
        """Restart a killed node with fresh state (as a restarted process would be)."""
        if node == "bridge":
            self.bridge = BridgeCore(self.codec, self._bridge_config)
        elif node == "driver":
            self.driver = ConverterDriver(self.stage, self._pm_config, self.version)
        self.alive[node] = True

    def raise_in(self, where: str, times: int = 1) -> None:
        """Make the next ``times`` runs of ``bridge_tx`` or ``control_loop`` raise."""
        self._raise[where] = times

    def inject_frame(self, frame: CanFrame) -> None:
        """Put a frame on the bus (e.g. controller I/O messages) for the next step."""
        self._injected.append(frame)

    def lose_controller_frames(self, seconds: float) -> None:
        """Drop every frame from the controller for ``seconds`` (a heartbeat loss on our side)."""
        self._deaf_until = self.now + seconds

    def link_down(self, reason: str = "bus-off") -> None:
        """Fail the bus (bus-off): nothing goes through until :meth:`link_up`."""
        self.link_ok = False
        self.bridge.link_down(self.now, reason)

    def link_up(self) -> None:
        """Make the bus work again."""
        self.link_ok = True

    @contextmanager
    def quiet(self) -> Iterator[None]:
        """Silence the cores' logging (long runs)."""
        root = logging.getLogger("evse_can_ros")
        level = root.level
        root.setLevel(logging.CRITICAL)
        try:
            yield
        finally:
            root.setLevel(level)

    # --- observations -----------------------------------------------------------------------

    @property
    def output(self) -> tuple[float, float]:
        """The true output voltage and current now."""
        return self.stage.output()

    @property
    def state(self) -> ControllerState:
        """The controller's state now."""
        return self.controller.state

    def measurement(self) -> Measurement | None:
        """Return the driver's last valid measurement."""
        return self.driver.module.last_measurement

    # --- the nodes' wiring ------------------------------------------------------------------

    def _maybe_raise(self, where: str) -> None:
        left = self._raise.get(where, 0)
        if left > 0:
            self._raise[where] = left - 1
            raise RuntimeError(f"injected failure in {where}")

    def _bridge_receive(self, frame: CanFrame) -> None:
        result = self.bridge.on_frame(self.now, frame)
        if result.kind is not RxKind.MESSAGE or result.message is None:
            return
        message = result.message
        if self.alive["driver"] and isinstance(message, DRIVER_INPUTS):
            self._handle_driver(lambda: self.driver.on_message(self.now, message))
        if self.alive["server"] and isinstance(message, SERVER_INPUTS):
            self.server.on_message(self.now, message)

    def _bridge_transmit(self) -> None:
        now = self.now
        try:
            self._maybe_raise("bridge_tx")
            out, events = self.bridge.poll(now)
        except Exception as exc:  # the node's guard does the same (can_bridge_node._tx_loop)
            self.bridge.internal_error(now, "transmit loop", f"{type(exc).__name__}: {exc}")
            out, events = [], []
            self._publish_controller_state()
            return
        for outgoing in out:
            if self.link_ok:
                self._record(outgoing.frame, from_power_side=True)
                self._to_controller.append(outgoing.frame)
                message = outgoing.message
                if isinstance(message, PowerModulesLimits) and self.alive["driver"]:
                    self.driver.on_limits(
                        message.maximum_voltage, message.maximum_current, self.bridge.limits_power
                    )
                elif isinstance(message, DcPowerParameters) and self.alive["driver"]:
                    self.driver.on_limits(
                        message.maximum_voltage,
                        message.maximum_charge_current,
                        self.bridge.limits_power,
                        message.maximum_discharge_current,
                    )
                elif isinstance(message, SequenceControl) and self.alive["server"]:
                    self.server.on_flags(bool(message.start_charge_authorisation))
            else:
                self.bridge.send_failed(outgoing.message)
        state_event = any(e.kind in STATE_EVENTS for e in events)
        if state_event or self._due("state", self.timing.state_period):
            self._publish_controller_state()

    def _publish_controller_state(self) -> None:
        b = self.bridge
        alive = b.alive and self.link_ok
        state = b.controller_state
        if self.alive["driver"]:
            self._handle_driver(
                lambda: self.driver.on_controller_state(self.now, state, alive, b.lost_reason)
            )
        if self.alive["server"]:
            self.server.on_controller(self.now, state, alive, "" if alive else b.lost_reason)

    def _driver_tick(self) -> None:
        def tick() -> Report:
            self._maybe_raise("control_loop")
            return self.driver.tick(self.now)

        self._handle_driver(tick)

    def _handle_driver(self, call: Callable[[], Report | None]) -> None:
        try:
            report = call()
        except Exception as exc:  # the node's guard does the same (converter_driver_node)
            report = self.driver.internal_error(self.now, "control loop", exc)
        if report is None:
            return
        if report.new_fault:
            self.trace.faults.append((self.now, report.new_fault))
        if report.publish:
            self._publish_status(report.status)

    def _publish_status(self, status: PowerModulesStatus | None) -> None:
        if status is None:
            return
        self.trace.statuses.append((self.now, status))
        if self.alive["bridge"]:
            self.bridge.set_power_status(self.now, status)
        if self.alive["server"]:
            self.server.on_power(self.now, status.present_voltage, status.present_current)

    def _server_step(self) -> None:
        out = self.server.step(self.now)
        if self.alive["driver"]:
            self.driver.set_operating_point(out.operating_point)
        for command in out.commands:
            ok, text = self._apply(command)
            self.server.command_result(self.now, command, ok, text)
        if out.feedback is not None:
            self.trace.feedback.append(out.feedback)
        if out.result is not None:
            self.trace.results.append(out.result)
        if out.depot_changed:
            self.trace.depot.append((self.now, out.depot))

    def _apply(self, command: Command) -> tuple[bool, str]:
        """Apply a charge-server command to the bridge core, as the bridge's services do."""
        if not self.alive["bridge"]:
            return False, "bridge service not available"
        b, now = self.bridge, self.now
        try:
            if isinstance(command, SetStartAuthorisation):
                b.set_start_authorisation(now, command.allowed)
            elif isinstance(command, SetCcsAuthorisation):
                b.set_ccs_authorisation(now, command.valid)
            elif isinstance(command, SetLimits):
                b.set_limits(
                    now,
                    command.maximum_voltage,
                    command.maximum_current,
                    command.maximum_power,
                    command.maximum_discharge_current,
                )
                if command.charge_parameters_done:
                    b.set_charge_parameters_done(now)
            elif isinstance(command, (PressUserStop, PressChademoStart)):
                button = (
                    "user_stop_button"
                    if isinstance(command, PressUserStop)
                    else "chademo_start_button"
                )
                if not b.press_button(now, button):
                    return False, "a press is in progress"
        except ValueError as exc:
            return False, str(exc)
        return True, ""

    def _record(self, frame: CanFrame, from_power_side: bool) -> CanMessage | None:
        try:
            message = self.codec.decode(frame, self.pistol_index)
        except Exception:  # recorded frames are ours or the emulator's: never malformed
            log.exception("undecodable frame %s", frame)
            return None
        self.trace.bus.append(BusRecord(self.now, from_power_side, message, frame))
        return message
