"""``converter_driver``: the power modules, driven through the charge sequence (lifecycle node).

Thin adapter around :class:`evse_can_ros.core.converter_driver.ConverterDriver` (the decisions)
and a converter backend from :mod:`evse_can_ros.converter` (``converter_backend`` parameter):

* configure: create and open the backend (an unknown backend name fails the transition with a
  one-line error listing the available backends); the backend's output watchdog thread starts;
* activate: start the control timer (``control_period``), the ``power_modules_status`` timer
  (``status_period``, for the bridge), ``converter_status`` and ``/diagnostics`` (1 Hz). While
  idle (no session, output off) the control loop runs every ``idle_period`` (10 Hz) and
  publishes the status itself, and ``converter_status`` goes out every second: an idle charger
  costs little. The first message of a session and any output on bring the full rates back at
  once (``ConverterDriver.full_rate``);
* deactivate / cleanup / shutdown / error / destroy: output off (cleanup and shutdown also close
  the backend).

With ``auto_activate`` (default) the node configures and activates itself at construction; a
failure raises :class:`NodeConfigError`. A launch file that manages the lifecycle starts it with
``auto_activate: false``.

Safety inputs, each switching the output off at once (not at the next timer tick):
``emergency_stop`` (in the same process: on the bridge's receive thread through
:class:`~evse_can_ros.ros.common.LocalSafetyLink`, before the topic arrives); ``controller_state``
with ``alive = false`` (heartbeat lost, bus-off, bridge error); and, every control period, no
controller message at all for ``link_timeout`` (bridge dead or hung). Every callback on these
paths is guarded: an exception latches the output off and reports System_Enable = 0. If the
executor itself stops, the backend's output watchdog thread switches the output off within
``setpoint_timeout``.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from std_msgs.msg import Float64

from evse_can_ros import msg as ros
from evse_can_ros.config import ConfigError, describe, param
from evse_can_ros.converter import (
    BackendLoadError,
    ConverterError,
    FaultInjection,
    SharesVehicleInlet,
    UnknownBackendError,
    backend_class,
    create_backend,
)
from evse_can_ros.converter.base import ConverterBackend
from evse_can_ros.core.battery import VehicleInlet
from evse_can_ros.core.converter_driver import ConverterDriver, Report
from evse_can_ros.core.power_module import PowerModuleConfig
from evse_can_ros.protocol import CanMessage, ControllerState, EmergencyStop
from evse_can_ros.ros import conversions as conv
from evse_can_ros.ros.common import Guard, LocalSafetyLink, NodeConfigError
from evse_can_ros.ros.interfaces import DRIVER, message_of, publications, subscriptions
from evse_can_ros.ros.params import declare_config, declare_interface


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
    idle_period: float = param(
        0.1,
        "control loop and power_modules_status period while idle (no session, output off; "
        "converter_status then every 1 s); the full rates apply from the first message of a "
        "session on and while the output is on",
        unit="s",
        min=0.02,
        max=0.1,
    )
    setpoint_timeout: float = param(
        0.25,
        "output watchdog (own thread): output off if no setpoint for this long",
        unit="s",
        min=0.05,
        max=1.0,
    )


IDLE_CONVERTER_STATUS_PERIOD = 1.0
"""s: converter_status period while idle (no session, output off)."""


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
        self._inlet = inlet  # simulation in one process: share the vehicle's battery
        self._lock = threading.RLock()
        self.backend: ConverterBackend | None = None
        self.core: ConverterDriver | None = None
        self.last_error = ""
        self._timers: list[Any] = []
        self._full_rate = True
        self._active = False
        self.guard = Guard(self, self._internal_error)
        try:
            self.config = declare_config(self, DriverConfig)
            self.pm_config = declare_config(self, PowerModuleConfig)
            self.version = declare_interface(self)
            self._backend_prefix = f"{self.config.converter_backend}."
            self._backend_fields: list[str] = []
            self._runtime_fields: tuple[str, ...] = ()
            self._declare_backend_params()
        except ConfigError as exc:
            raise NodeConfigError(str(exc)) from None
        self.add_on_set_parameters_callback(self._on_set_parameters)

        pubs = {
            t.name: self.create_publisher(t.ros_type, t.name, t.qos) for t in publications(DRIVER)
        }
        self.pub_power, self.pub_status = pubs["power_modules_status"], pubs["converter_status"]
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        special = {
            "controller_state": self._on_controller_state,
            "power_modules_limits": self._on_limits,
            "operating_point": self._on_operating_point,
        }
        for topic in subscriptions(DRIVER):
            cls = message_of(topic, self.version)
            if cls is not None:
                callback = lambda m, cls=cls: self._on_command(m, cls)  # noqa: E731
            elif topic.messages:
                continue  # a message of the other interface version
            else:
                callback = special[topic.name]
            self.create_subscription(
                topic.ros_type, topic.name, self.guard.wrap(topic.name, callback), topic.qos
            )
        LocalSafetyLink.subscribe(self, self._on_local_safety)

        if self.config.auto_activate:
            if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                self._abandon()
                raise NodeConfigError(self.last_error or "configure failed")
            if self.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                self._release()
                self._abandon()
                raise NodeConfigError(self.last_error or "activate failed")

    def _abandon(self) -> None:
        LocalSafetyLink.unsubscribe(self, self._on_local_safety)
        super().destroy_node()

    # --- parameters --------------------------------------------------------------------------

    def _declare_backend_params(self) -> None:
        try:
            cls = backend_class(self.config.converter_backend)
        except (UnknownBackendError, BackendLoadError):
            return  # reported by configure (the transition fails with the message)
        params_cls = cls.PARAMS
        if params_cls is None:
            return
        runtime = tuple(cls.RUNTIME_PARAMS)
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
                if isinstance(self.backend, FaultInjection):
                    self.backend.inject(name, bool(p.value))
        return SetParametersResult(successful=True)

    # --- lifecycle ---------------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Create and open the backend."""
        name = self.config.converter_backend
        try:
            backend = create_backend(name, self._backend_params(), self.config.setpoint_timeout)
            if self._inlet is not None and isinstance(backend, SharesVehicleInlet):
                backend.connect_inlet(self._inlet)
            backend.open()
        except (UnknownBackendError, BackendLoadError, ConfigError, ConverterError) as exc:
            return self._fail(str(exc))
        except (ValueError, TypeError) as exc:
            return self._fail(f"converter backend {name!r}: {exc}")
        with self._lock:
            self.backend = backend
            self.core = ConverterDriver(backend, self.pm_config, self.version)
        self.get_logger().info(f"converter backend {name!r} open")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Start the control loop and the status publishers.

        A re-activation starts from a fresh state machine, as a restarted driver would: no
        power until the controller opens a new session, and no stale link timing.
        """
        c, g = self.config, self.guard
        with self._lock:
            if self.backend is not None and self.core is not None and self.core.heartbeat_seen:
                self.core = ConverterDriver(self.backend, self.pm_config, self.version)
        self._timers = [
            self.create_timer(c.control_period, g.wrap_timer("control loop", self._control)),
            self.create_timer(c.status_period, g.wrap_timer("status timer", self._publish_status)),
            self.create_timer(
                c.converter_status_period,
                g.wrap_timer("converter status", self._publish_converter),
            ),
            self.create_timer(1.0, g.wrap_timer("diagnostics", self._publish_diagnostics)),
        ]
        self._full_rate = True
        self._active = True
        self.guard("control loop", self._control)  # idle: the timers slow down from here
        self.get_logger().info("converter driver active")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Output off; stop the loop."""
        self._deactivate("deactivated")
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
        """Output off and release the backend before the node goes away (never skipped)."""
        try:
            self._release()
        finally:
            LocalSafetyLink.unsubscribe(self, self._on_local_safety)
            super().destroy_node()

    def output_off(self, reason: str) -> None:
        """Command the output off now (shutdown paths; never raises)."""
        with self._lock:
            if self.core is not None:
                self.core.shutdown(reason)
            elif self.backend is not None:
                self.backend.stop()

    def _fail(self, text: str) -> TransitionCallbackReturn:
        self.last_error = text
        self.get_logger().error(text)
        return TransitionCallbackReturn.FAILURE

    def _deactivate(self, reason: str) -> None:
        was_active, self._active = self._active, False
        for t in self._timers:
            self.destroy_timer(t)
        self._timers = []
        self.output_off(reason)
        if was_active:
            self.get_logger().info(f"output off: converter driver no longer active ({reason})")

    def _release(self) -> None:
        self._deactivate("released")
        with self._lock:
            if self.backend is not None:
                self.backend.close()
            self.backend = self.core = None

    # --- inputs ------------------------------------------------------------------------------

    def _on_controller_state(self, m: ros.ControllerState) -> None:
        if not self._active:
            return
        state = ControllerState(m.state) if m.heartbeat_seen else None
        with self._lock:
            if self.core is None:
                return
            report = self.core.on_controller_state(time.monotonic(), state, m.alive, m.reason)
        self._report(report)

    def _on_command(self, m: Any, cls: type[CanMessage]) -> None:
        if not self._active:
            return
        try:
            message = conv.from_ros(m, cls)
        except (ValueError, TypeError) as exc:
            self.get_logger().warning(f"ignoring {cls.NAME}: {exc}", throttle_duration_sec=5.0)
            return
        with self._lock:
            if self.core is None:
                return
            report = self.core.on_message(time.monotonic(), message)
        self._report(report)
        self._retune()  # a session opens: full rate at once

    def _on_limits(self, m: ros.PowerModulesLimits) -> None:
        with self._lock:
            if self.core is not None:
                self.core.on_limits(
                    m.maximum_voltage,
                    m.maximum_current,
                    m.maximum_power,
                    m.maximum_discharge_current,
                )

    def _on_operating_point(self, m: Float64) -> None:
        value = float(m.data)
        with self._lock:
            if self.core is not None:
                self.core.set_operating_point(None if math.isnan(value) else value)

    def _on_local_safety(self, kind: str, payload: Any) -> None:
        """Act on the bridge's fast path (its receive or transmit thread, same process)."""
        if kind == "emergency_stop" and isinstance(payload, EmergencyStop):
            self.guard("emergency stop", self._fast_stop, payload)
        elif kind == "controller_lost":
            self.guard("controller lost", self._fast_lost, str(payload))

    def _fast_stop(self, message: EmergencyStop) -> None:
        with self._lock:
            if self.core is None or not self._active:
                return
            report = self.core.on_message(time.monotonic(), message)
        self._report(report)
        self._measure_after_stop(report)

    def _fast_lost(self, reason: str) -> None:
        with self._lock:
            if self.core is None or not self._active:
                return
            report = self.core.on_controller_state(time.monotonic(), None, False, reason)
        self._report(report)
        self._measure_after_stop(report)

    def _measure_after_stop(self, report: Report | None) -> None:
        """Publish a measurement taken after the stop, on this (the bridge's) thread.

        The stop's own report carries the measurement read as the step began, before the output
        was commanded off; without this the first status showing the output off would wait for
        the executor's next control tick (bench/charger.py: up to 93 ms behind a busy executor).
        """
        if report is None or report.status is None:
            return
        with self._lock:
            if self.core is None or not self._active:
                return
            after = self.core.tick(time.monotonic())
        if after.status is not None:
            self._publish(after)

    def fail_safe(self, where: str, exc: BaseException) -> None:
        """Latch the output off after an exception elsewhere in the process (never raises)."""
        self.guard(where, self._internal_error, where, exc)

    def _internal_error(self, where: str, exc: BaseException) -> None:
        """Safe state after an exception on a safety path: output off, latched, reported."""
        with self._lock:
            if self.core is None:
                if self.backend is not None:
                    self.backend.stop()
                return
            report = self.core.internal_error(time.monotonic(), where, exc)
        self._report(report)

    # --- timers ------------------------------------------------------------------------------

    def _control(self) -> None:
        with self._lock:
            if self.core is None or not self._active:
                return
            report = self.core.tick(time.monotonic())
        self._report(report)
        if not self._full_rate and not report.publish:
            self._publish_status()  # idle: the status timer is off (see _retune)
        self._retune()

    def _retune(self) -> None:
        """Run the timers at the rate the phase needs (executor callbacks only).

        Full rate (``control_period``, ``status_period``, ``converter_status_period``) while
        ``ConverterDriver.full_rate`` (a session open or the output on): the link timeout and
        the output watchdog count on it. Otherwise the control loop runs every ``idle_period``
        and publishes the status itself (status timer off), converter_status every second.
        Going to full rate resets the timers: the next control period starts now, not at the
        end of an idle one.
        """
        with self._lock:
            full = self.core is not None and self.core.full_rate
        if full == self._full_rate or len(self._timers) < 3:
            return
        self._full_rate = full
        c = self.config
        control, status, converter = self._timers[:3]
        control.timer_period_ns = round((c.control_period if full else c.idle_period) * 1e9)
        converter.timer_period_ns = round(
            (c.converter_status_period if full else IDLE_CONVERTER_STATUS_PERIOD) * 1e9
        )
        if full:
            for timer in (control, status, converter):
                timer.reset()
        else:
            status.cancel()  # idle: the control tick publishes the status (one wake-up)

    def _report(self, report: Report | None) -> None:
        """Publish what changed at once; log after publishing (rclpy logging can be slow)."""
        if report is None:
            return
        if report.publish:
            self._publish(report)
        if report.new_fault:
            # the charge server takes the first cause from converter_status: the fault goes out
            # now, ahead of the controller's reaction to System_Enable = 0 (not at the next tick)
            self._publish_converter()
            self.get_logger().error(f"output off: {report.new_fault}")

    def _publish(self, report: Report) -> None:
        if report.status is not None:
            self.pub_power.publish(
                conv.power_status_to_ros(report.status, self.get_clock().now().to_msg())
            )

    def _publish_status(self) -> None:
        with self._lock:
            status = self.core.status() if self.core is not None and self._active else None
        if status is not None:
            stamp = self.get_clock().now().to_msg()
            self.pub_power.publish(conv.power_status_to_ros(status, stamp))

    def _publish_converter(self) -> None:
        with self._lock:
            if self.core is None:
                return
            snap = self.core.snapshot()
        m, caps, sp = snap.measurement, snap.capabilities, snap.applied
        nan = math.nan
        msg = ros.ConverterStatus(
            backend=self.config.converter_backend,
            phase=snap.phase.value,
            mode=sp.mode.value,
            voltage_setpoint=float(sp.voltage),
            current_limit=float(sp.current_limit),
            system_enable=snap.system_enable,
            session_energy=float(snap.session_energy_wh),
            session_energy_exported=float(snap.session_energy_exported_wh),
            fault=snap.fault,
            fault_kind=snap.fault_kind.value,
            measurement_valid=snap.measurement_fresh,
            voltage=float(m.voltage) if m else nan,
            current=float(m.current) if m else nan,
            power=float(m.voltage * m.current) if m else nan,
            module_temperature=float(m.module_temperature) if m else nan,
            enclosure_temperature=float(m.enclosure_temperature) if m else nan,
            insulation_resistance=float(m.insulation_resistance_ohm) if m else nan,
            ready=bool(m.ready) if m else False,
            output_enabled=bool(m.output_enabled) if m else False,
            max_voltage=float(caps.max_voltage) if caps else nan,
            max_current=float(caps.max_current) if caps else nan,
            max_power=float(caps.max_power) if caps else nan,
            max_discharge_current=float(caps.max_discharge_current) if caps else nan,
            max_session_voltage=snap.limits[0],
            max_session_current=snap.limits[1],
            max_session_power=snap.limits[2],
            max_session_discharge_current=snap.discharge_limit,
            protocol_version=int(self.version),
            internal_errors=snap.internal_errors + self.guard.errors,
        )
        msg.header.stamp = self.get_clock().now().to_msg()
        self.pub_status.publish(msg)

    def _publish_diagnostics(self) -> None:
        with self._lock:
            if self.core is None:
                return
            snap = self.core.snapshot()
        m = snap.measurement
        if snap.fault:
            level, text = DiagnosticStatus.ERROR, snap.fault
        elif self.guard.errors:
            level, text = DiagnosticStatus.ERROR, f"internal error: {self.guard.last_error}"
        elif not snap.measurement_fresh:
            level, text = DiagnosticStatus.WARN, "no valid measurement"
        else:
            level, text = DiagnosticStatus.OK, snap.phase.value
        values = {
            "backend": self.config.converter_backend,
            "phase": snap.phase.value,
            "fault_kind": snap.fault_kind.value,
            "controller_state": snap.controller_state.label if snap.controller_state else "none",
            "system_enable": snap.system_enable,
            "voltage": f"{m.voltage:.1f}" if m else "unknown",
            "current": f"{m.current:.1f}" if m else "unknown",
            "internal_errors": snap.internal_errors + self.guard.errors,
            "watchdog_trips": self.backend.watchdog.trips
            if self.backend is not None and self.backend.watchdog is not None
            else 0,
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
