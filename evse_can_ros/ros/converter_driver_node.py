"""``converter_driver``: the power modules, driven through the charge sequence (lifecycle node).

Thin adapter around :class:`evse_can_ros.core.power_module.PowerModule` (the sequencing logic)
and a converter backend from :mod:`evse_can_ros.converter` (``converter_backend`` parameter):

* configure: create and open the backend (an unknown backend name fails the transition with a
  one-line error listing the available backends);
* activate: start the control timer (``control_period``), the ``power_modules_status`` timer
  (``status_period``, for the bridge), ``converter_status`` (10 Hz) and ``/diagnostics`` (1 Hz);
* deactivate / cleanup / shutdown / destroy: output off (cleanup and shutdown also close the
  backend).

With ``auto_activate`` (default) the node configures and activates itself at construction; a
failure raises :class:`NodeConfigError`.

Safety inputs, each switching the output off at once (in the subscription callback, not at the
next timer tick): ``emergency_stop``; ``controller_state`` with ``alive = false`` (heartbeat lost,
bus-off); and, checked every control period, no controller message at all for ``link_timeout``
(bridge dead or hung). The output then stays off until a new session.

All callbacks run in the executor (a SingleThreadedExecutor shared with other nodes is fine); a
lock also guards the state machine against calls from other threads (tests, fault injection).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter

from evse_can_ros import msg as ros
from evse_can_ros.converter import (
    BackendLoadError,
    ConverterBackend,
    ConverterError,
    UnknownBackendError,
    backend_class,
    create_backend,
)
from evse_can_ros.core.battery import VehicleInlet
from evse_can_ros.core.config import ConfigError, describe, param
from evse_can_ros.core.power_module import ControlLoop, PowerModule, PowerModuleConfig
from evse_can_ros.protocol import (
    AdvanticsControllerStatus,
    CanMessage,
    ChargeSessionFinished,
    ChargeStatusChange,
    ChargingLoop,
    ControllerState,
    EmergencyStop,
    InsulationTest,
    NewChargeSession,
    Precharge,
)
from evse_can_ros.ros import conversions as conv
from evse_can_ros.ros.can_bridge_node import EVENTS, LATCHED, NodeConfigError
from evse_can_ros.ros.params import declare_config

COMMAND_TOPICS: dict[str, tuple[Any, type[CanMessage]]] = {
    "new_charge_session": (ros.NewChargeSession, NewChargeSession),
    "insulation_test": (ros.InsulationTest, InsulationTest),
    "precharge": (ros.Precharge, Precharge),
    "charging_loop": (ros.ChargingLoop, ChargingLoop),
    "charge_status_change": (ros.ChargeStatusChange, ChargeStatusChange),
    "emergency_stop": (ros.EmergencyStop, EmergencyStop),
    "charge_session_finished": (ros.ChargeSessionFinished, ChargeSessionFinished),
}
"""Bridge topics the driver consumes (relative names) -> (ROS type, protocol type)."""


@dataclass(frozen=True)
class DriverConfig:
    """Node parameters of the converter driver (besides PowerModuleConfig and the backend's)."""

    converter_backend: str = param(
        "simulated", "converter backend (built-in 'simulated' or an installed entry point)"
    )
    auto_activate: bool = param(True, "configure and activate at start")
    control_period: float = param(0.02, "control loop period", unit="s", min=0.005, max=0.1)
    status_period: float = param(
        0.05,
        "power_modules_status period (>= 10 Hz for the bridge)",
        unit="s",
        min=0.01,
        max=0.1,
    )
    converter_status_period: float = param(
        0.1, "converter_status period", unit="s", min=0.02, max=1.0
    )
    setpoint_timeout: float = param(
        0.5,
        "backend watchdog: output off if no setpoint for this long",
        unit="s",
        min=0.05,
        max=5.0,
    )


class ConverterDriverNode(LifecycleNode):
    """See module docstring. Raises NodeConfigError for bad parameters or a failed start."""

    def __init__(
        self,
        node_name: str = "converter_driver",
        *,
        inlet: VehicleInlet | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(node_name, **kwargs)
        self._inlet = inlet
        self._lock = threading.RLock()
        self.backend: ConverterBackend | None = None
        self.module: PowerModule | None = None
        self.loop: ControlLoop | None = None
        self._extra_reports = 0
        self.last_error = ""
        self._timers: list[Any] = []
        self._active = False
        self._heartbeat_seen = False
        try:
            self.config = declare_config(self, DriverConfig)
            self.pm_config = declare_config(self, PowerModuleConfig)
            self._backend_prefix = f"{self.config.converter_backend}."
            self._backend_fields: list[str] = []
            self._runtime_fields: tuple[str, ...] = ()
            self._declare_backend_params()
        except ConfigError as exc:
            raise NodeConfigError(str(exc)) from None
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self.pub_power = self.create_publisher(
            ros.PowerModulesStatus, "power_modules_status", EVENTS
        )
        self.pub_status = self.create_publisher(ros.ConverterStatus, "converter_status", EVENTS)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(
            ros.ControllerState, "controller_state", self._on_controller_state, LATCHED
        )
        for topic, (ros_type, cls) in COMMAND_TOPICS.items():
            self.create_subscription(
                ros_type, topic, lambda m, cls=cls: self._on_command(m, cls), EVENTS
            )

        if self.config.auto_activate:
            if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                error = self.last_error or "configure failed"
                super().destroy_node()
                raise NodeConfigError(error)
            if self.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                error = self.last_error or "activate failed"
                self._release()
                super().destroy_node()
                raise NodeConfigError(error)

    # --- parameters --------------------------------------------------------------------------

    def _declare_backend_params(self) -> None:
        try:
            cls = backend_class(self.config.converter_backend)
        except (UnknownBackendError, BackendLoadError):
            return  # reported by configure (the transition fails with the message)
        params_cls = cls.PARAMS
        if params_cls is None:
            return
        runtime = tuple(getattr(cls, "RUNTIME_PARAMS", ()))
        names = [e["name"] for e in describe(params_cls)]
        fixed = tuple(n for n in names if n in runtime)
        declare_config(self, params_cls, self._backend_prefix, read_only=True, skip=fixed)
        if fixed:
            others = tuple(n for n in names if n not in runtime)
            declare_config(self, params_cls, self._backend_prefix, read_only=False, skip=others)
        self._backend_fields = names
        self._runtime_fields = fixed

    def _backend_params(self) -> dict[str, Any]:
        return {
            n: self.get_parameter(self._backend_prefix + n).value for n in self._backend_fields
        }

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        for p in params:
            name = p.name[len(self._backend_prefix) :]
            if not p.name.startswith(self._backend_prefix) or name not in self._runtime_fields:
                continue
            if p.type_ != Parameter.Type.BOOL:
                return SetParametersResult(successful=False, reason=f"{p.name}: true or false")
            with self._lock:
                inject = getattr(self.backend, "inject", None)
                if inject is not None:
                    inject(name, bool(p.value))
        return SetParametersResult(successful=True)

    # --- lifecycle ---------------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Create and open the backend."""
        name = self.config.converter_backend
        try:
            backend = create_backend(
                name, self._backend_params(), self._inlet, self.config.setpoint_timeout
            )
            backend.open()
        except (UnknownBackendError, BackendLoadError, ConfigError, ConverterError) as exc:
            return self._fail(str(exc))
        except (ValueError, TypeError) as exc:
            return self._fail(f"converter backend {name!r}: {exc}")
        with self._lock:
            self.backend = backend
            self.module = PowerModule(self.pm_config)
            self.loop = ControlLoop(self.module, backend)
        self.get_logger().info(f"converter backend {name!r} open")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Start the control loop and the status publishers."""
        c = self.config
        self._timers = [
            self.create_timer(c.control_period, self._control),
            self.create_timer(c.status_period, self._publish_power_status),
            self.create_timer(c.converter_status_period, self._publish_converter_status),
            self.create_timer(1.0, self._publish_diagnostics),
        ]
        self._active = True
        self._control()
        self.get_logger().info("converter driver active")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Output off; stop the loop."""
        self._deactivate()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Output off; close the backend."""
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Output off; close the backend."""
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Output off; close the backend."""
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self) -> None:
        """Output off and release the backend before the node goes away."""
        self._release()
        super().destroy_node()

    def _fail(self, text: str) -> TransitionCallbackReturn:
        self.last_error = text
        self.get_logger().error(text)
        return TransitionCallbackReturn.FAILURE

    def _deactivate(self) -> None:
        was_active, self._active = self._active, False
        for t in self._timers:
            self.destroy_timer(t)
        self._timers = []
        with self._lock:
            if self.loop is not None:
                self.loop.stop()
        if was_active:
            self.get_logger().info("output off: converter driver no longer active")

    def _release(self) -> None:
        self._deactivate()
        with self._lock:
            if self.backend is not None:
                self.backend.close()
            self.backend = self.module = self.loop = None

    # --- inputs ------------------------------------------------------------------------------

    def _on_controller_state(self, m: ros.ControllerState) -> None:
        if not self._active:
            return
        now = time.monotonic()
        with self._lock:
            assert self.module is not None
            if m.alive:
                self._heartbeat_seen = True
                follow = getattr(self.backend, "follow_controller_state", None)
                if follow is not None:  # simulated backend without a shared vehicle inlet
                    follow(m.state)
                self.module.on_message(AdvanticsControllerStatus(ControllerState(m.state)), now)
                return
            if not self._heartbeat_seen or m.state_name == "No_Heartbeat":
                return  # no controller yet: nothing to lose
            self.module.on_link_lost(now, f"bridge reports the heartbeat lost ({m.state_name})")
        self._control(publish=True)

    def _on_command(self, m: Any, cls: type[CanMessage]) -> None:
        if not self._active:
            return
        try:
            message = conv.from_ros(m, cls)
        except (ValueError, TypeError) as exc:
            self.get_logger().warning(f"ignoring {cls.NAME}: {exc}", throttle_duration_sec=5.0)
            return
        with self._lock:
            assert self.module is not None
            self.module.on_message(message, time.monotonic())
        if isinstance(message, EmergencyStop | ChargingLoop | ChargeStatusChange):
            self._control(publish=isinstance(message, EmergencyStop))  # act now, not next tick

    # --- timers ------------------------------------------------------------------------------

    def _control(self, publish: bool = False) -> None:
        with self._lock:
            if self.loop is None or not self._active:
                return
            before = self.loop.output
            out = self.loop.tick(time.monotonic())
        changed = before is None or before.phase != out.phase or before.fault != out.fault
        if changed:
            # the measurement that shows the change (e.g. 0 A after an emergency stop) comes
            # one or two control periods later: report those at once too, not at the next
            # status period
            self._extra_reports = 2
        elif self._extra_reports > 0:
            self._extra_reports -= 1
            publish = True
        if publish or changed:
            self._publish_power_status()
        # log after publishing: an rclpy logger call can take tens of milliseconds
        if changed and out.fault and (before is None or before.fault != out.fault):
            self.get_logger().error(f"output off: {out.fault}")

    def _publish_power_status(self) -> None:
        with self._lock:
            out = self.loop.output if self.loop is not None else None
        if out is None or not self._active:
            return
        self.pub_power.publish(
            conv.power_status_to_ros(out.status, self.get_clock().now().to_msg())
        )

    def _publish_converter_status(self) -> None:
        with self._lock:
            loop, module = self.loop, self.module
            if loop is None or module is None or loop.output is None:
                return
            out, m, caps, sp = loop.output, loop.measurement, loop.capabilities, loop.applied
            energy = module.session_energy_wh
        msg = ros.ConverterStatus(
            backend=self.config.converter_backend,
            phase=out.phase,
            mode=sp.mode.value,
            voltage_setpoint=float(sp.voltage),
            current_limit=float(sp.current_limit),
            system_enable=out.status.system_enable == 1,
            session_energy=float(energy),
            fault=out.fault,
        )
        msg.header.stamp = self.get_clock().now().to_msg()
        if m is not None:
            msg.voltage, msg.current = float(m.voltage), float(m.current)
            msg.power = float(m.voltage * m.current)
            msg.module_temperature = float(m.module_temperature)
            msg.enclosure_temperature = float(m.enclosure_temperature)
            msg.insulation_resistance = float(m.insulation_resistance)
            msg.ready, msg.output_enabled = bool(m.ready), bool(m.output_enabled)
        if caps is not None:
            msg.max_voltage, msg.max_current = float(caps.max_voltage), float(caps.max_current)
            msg.max_power = float(caps.max_power)
        self.pub_status.publish(msg)

    def _publish_diagnostics(self) -> None:
        with self._lock:
            loop = self.loop
            out = loop.output if loop is not None else None
            m = loop.measurement if loop is not None else None
            state = self.module.state if self.module is not None else None
        if out is None:
            return
        if out.fault:
            level, text = DiagnosticStatus.ERROR, out.fault
        elif m is None:
            level, text = DiagnosticStatus.WARN, "no measurement"
        else:
            level, text = DiagnosticStatus.OK, out.phase
        values = {
            "backend": self.config.converter_backend,
            "phase": out.phase,
            "controller_state": state.label if state is not None else "none",
            "system_enable": out.status.system_enable == 1,
            "voltage": f"{out.status.present_voltage:.1f}",
            "current": f"{out.status.present_current:.1f}",
        }
        status = DiagnosticStatus(
            level=level,
            name=f"{self.get_fully_qualified_name()}: converter",
            hardware_id=self.config.converter_backend,
            message=text,
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
        )
        arr = DiagnosticArray(status=[status])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(arr)


def main(args: list[str] | None = None) -> int:
    """Run the converter_driver node; exit code 2 with a one-line error for bad parameters."""
    from evse_can_ros.ros.node_main import run_node

    return run_node(ConverterDriverNode, "converter_driver", args)
