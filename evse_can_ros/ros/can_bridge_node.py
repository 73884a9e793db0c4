"""``can_bridge``: the Generic EVSE CAN interface v2 as typed ROS 2 topics and services.

Threads (see README, "Performance"). One bus, one link: the bridges of one process on the same
bus (``links``, given by the one-process charger) share one
:class:`~evse_can_ros.transport.SharedLink`, so the two threads below serve every pistol of the
bus; a bridge alone in its process has its own.

* the CAN receive thread (transport) hands each frame to the bridge of its pistol index, which
  decodes it and publishes the typed topic directly; an ``Emergency_Stop`` also goes to the
  converter driver of the same pistol and process at once
  (:class:`~evse_can_ros.ros.common.LocalSafetyLink`), before the topic;
* the transmit thread runs each bridge's :meth:`BridgeCore.poll` at that core's next deadline:
  periodic frames, heartbeat supervision and the periodic ``controller_state``;
* the executor runs services, the power-status subscription and diagnostics.

Both threads are guarded: an exception is counted (``internal_errors`` in /diagnostics, ERROR),
and the controller is reported lost (the converter driver switches off); a transmit loop that
keeps failing sends nothing, so the controller's own Power_Modules_Status supervision trips.

The protocol logic is :class:`evse_can_ros.core.bridge.BridgeCore`, the topic table
:mod:`evse_can_ros.ros.interfaces`; this file only adapts them.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import BatteryState
from std_srvs.srv import SetBool, Trigger

from evse_can_ros import msg as ros
from evse_can_ros import srv
from evse_can_ros.config import ConfigError
from evse_can_ros.core.bridge import BridgeConfig, BridgeCore, Event, Outgoing, RxKind
from evse_can_ros.protocol import (
    AdmCsSeccOutputs,
    AdmCsSpccOutputs,
    CanFrame,
    ChargeSessionFinished,
    DcPowerParameters,
    EmergencyStop,
    PowerModulesLimits,
    ProtocolError,
    SequenceControl,
)
from evse_can_ros.ros import conversions as conv
from evse_can_ros.ros.common import Guard, LocalSafetyLink, NodeConfigError, start_link
from evse_can_ros.ros.interfaces import BRIDGE, TOPIC, TOPIC_OF_MESSAGE, publications
from evse_can_ros.ros.params import declare_codec, declare_config
from evse_can_ros.text import one_line
from evse_can_ros.transport import LinkConfig, LinkPool, Scheduled, SharedLink

STATE_EVENTS = ("controller_lost", "controller_alive", "state")
TX_ERROR_BACKOFF = 0.01
"""s: pause of the transmit loop after an exception (no busy loop on a persistent error)."""


class CanBridgeNode(Node):
    """See module docstring. Raises NodeConfigError for bad parameters."""

    def __init__(
        self, node_name: str = "can_bridge", *, links: LinkPool | None = None, **kwargs: Any
    ) -> None:
        super().__init__(node_name, **kwargs)
        self._declare_parameters()
        self.state_period = 0.1
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._lock = threading.Lock()
        self._next_state = 0.0
        self._tx: Scheduled | None = None
        self._clock = self.get_clock()
        self._rx_messages: dict[type, Any] = {}  # reused by the receive thread (to_ros)
        self.core = BridgeCore(self.codec, self.config)
        self._frame_id = f"{self.link_config.interface}:{self.link_config.channel}"
        self.guard = Guard(self, self._internal_error)
        self._create_interfaces()
        self._diag_last = (time.monotonic(), 0, 0)
        # one link per bus: the bridges of a process on the same bus share its receive thread
        # and its transmit thread (links given by the one-process charger); alone otherwise
        pistol = self.config.pistol_index
        if links is not None:
            self.link = links.attach(self.link_config, pistol, self._on_frame, self._on_link)
        else:
            self.link = SharedLink(self.link_config).attach(pistol, self._on_frame, self._on_link)
        start_link(self, self.link)
        self._tx = self.link.schedule(self._tx_tick, f"can_bridge pistol {pistol}")
        self.get_logger().info(
            f"bridging pistol {pistol} on {self.link.describe()} "
            f"({self.link_config.bitrate or 'interface default'} bit/s, database "
            f"{self.codec.database_path.name})"
        )

    def _declare_parameters(self) -> None:
        try:
            self.config = declare_config(self, BridgeConfig)
            self.link_config = declare_config(self, LinkConfig, prefix="can_")
            self.codec = declare_codec(self)
        except (ConfigError, ProtocolError) as exc:
            raise NodeConfigError(str(exc)) from None
        self.publish_raw = bool(
            self.declare_parameter(
                "publish_raw_frames",
                False,
                ParameterDescriptor(
                    description="publish every received/sent frame on can_rx/can_tx"
                ),
            ).value
        )

    def _create_interfaces(self) -> None:
        """Create the publishers (ros/interfaces.py), the subscription and the services."""
        self.pub = {
            t.name: self.create_publisher(t.ros_type, t.name, t.qos) for t in publications(BRIDGE)
        }
        self.pub_typed = {m: self.pub[t.name] for m, t in TOPIC_OF_MESSAGE.items()}
        self.pub_state = self.pub["controller_state"]
        self.pub_battery = self.pub["battery_state"]
        self.pub_limits = self.pub["power_modules_limits"]
        self._limits_published: tuple[object, float] | None = None
        self.pub_flags = self.pub["sequence_control"]
        self.pub_rx, self.pub_tx = self.pub["can_rx"], self.pub["can_tx"]
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        status_topic = "power_modules_status"
        self.create_subscription(
            ros.PowerModulesStatus,
            status_topic,
            self.guard.wrap("power status subscription", self._on_power_status),
            TOPIC[status_topic].qos,
        )
        self.create_service(SetBool, "set_start_authorisation", self._srv_start_authorisation)
        self.create_service(SetBool, "set_ccs_authorisation", self._srv_ccs_authorisation)
        self.create_service(srv.SetPowerLimits, "set_power_limits", self._srv_power_limits)
        self.create_service(Trigger, "press_user_stop", self._srv_user_stop)
        self.create_service(Trigger, "press_chademo_start", self._srv_chademo_start)
        self.create_service(srv.SetControllerOutputs, "set_controller_outputs", self._srv_outputs)
        self.create_timer(1.0, self._publish_diagnostics)
        self.create_timer(1.0, self._publish_battery_state)

    # --- receive thread -----------------------------------------------------------------------

    def _on_frame(self, frame: CanFrame, now: float) -> None:
        if not self.context.ok():
            return  # Ctrl-C shut the context down under this receive thread: going away
        self.guard("receive path", self._receive, frame, now)

    def _receive(self, frame: CanFrame, now: float) -> None:
        with self._lock:
            result = self.core.on_frame(now, frame)
            events_pending = self.core.has_events
        if events_pending:
            self._wake_tx()
        if result.kind is RxKind.MESSAGE:
            message = result.message
            assert message is not None
            if isinstance(message, EmergencyStop):  # fast path first (same process)
                LocalSafetyLink.publish(self, "emergency_stop", message)
            publisher = self.pub_typed.get(type(message))
            if publisher is not None:
                out = conv.to_ros(message, None, self.codec, self._rx_messages)
                conv.stamp_now(self._clock, into=out.header.stamp)
                publisher.publish(out)
            if isinstance(message, EmergencyStop):  # PM-49
                self.get_logger().error(
                    f"Emergency_Stop received, origin {message.origin.label}",
                    throttle_duration_sec=5.0,
                )
            elif isinstance(message, ChargeSessionFinished):
                self.get_logger().info(f"Charge_Session_Finished: {message.state.label}")
        elif result.kind is not RxKind.FOREIGN:
            self.get_logger().warning(
                f"{result.kind.value} frame: {result.error}", throttle_duration_sec=5.0
            )
        if self.publish_raw:
            self.pub_rx.publish(conv.frame_to_ros(frame, self._frame_id))

    def _internal_error(self, where: str, exc: BaseException) -> None:
        """Safe state after an exception: the controller counts as lost (driver switches off)."""
        with self._lock:
            self.core.internal_error(
                time.monotonic(), where, f"{type(exc).__name__}: {one_line(exc)}"
            )
        self._wake_tx()

    def _on_link(self, up: bool, reason: str) -> None:
        if not up:
            with self._lock:
                self.core.link_down(time.monotonic(), reason)
            self._wake_tx()

    # --- transmit thread ----------------------------------------------------------------------

    def _wake_tx(self) -> None:
        """Run the transmit pass now (events to publish, frames to send)."""
        if self._tx is not None:
            self._tx.wake()

    def _tx_tick(self, now: float) -> float:
        """One pass on the bus's transmit thread; returns when the next one is due."""
        result = self.guard("transmit loop", self._tx_once, self._next_state)
        if result is None:  # the pass failed: tell the driver at once, then back off
            self.guard("transmit loop", self._publish_controller_state, time.monotonic())
            return time.monotonic() + TX_ERROR_BACKOFF
        self._next_state, deadline = result
        return deadline

    def _tx_once(self, next_state: float) -> tuple[float, float]:
        """One pass of the transmit loop; returns (next controller_state time, next pass)."""
        now = time.monotonic()
        with self._lock:
            out, events = self.core.poll(now)
            wake_at = self.core.next_wakeup(now)
        for outgoing in out:
            self._send(outgoing)
        # publish first, log after: a logger call can take tens of ms (rclpy looks up the
        # caller's source line), which would delay the heartbeat-loss alarm
        lost = [e for e in events if e.kind == "controller_lost"]
        if lost:
            LocalSafetyLink.publish(self, "controller_lost", lost[0].text)
        state_event = any(e.kind in STATE_EVENTS for e in events)
        # due, or due within half a period: ride along with this pass (one wake-up, not two)
        if state_event or now >= next_state - self.state_period / 2:
            self._publish_controller_state(now)
            next_state = now + self.state_period
        self._log_events(events)
        return next_state, min(wake_at, next_state)

    def _send(self, outgoing: Outgoing) -> None:
        ok = self.link.send(outgoing.frame)
        message = outgoing.message
        if not ok:
            with self._lock:
                self.core.send_failed(message)
            return
        if self.publish_raw:
            self.pub_tx.publish(
                conv.frame_to_ros(outgoing.frame, self._frame_id, self.get_clock().now().to_msg())
            )
        if isinstance(message, SequenceControl):
            self.pub_flags.publish(conv.flags_to_ros(message, self.get_clock().now().to_msg()))
        elif isinstance(message, (PowerModulesLimits, DcPowerParameters)):
            key = (message, self.core.limits_power)
            if key != self._limits_published:  # v3 repeats the frame every 100 ms
                self._limits_published = key
                self.pub_limits.publish(
                    conv.limits_to_ros(
                        message, self.core.limits_power, self.get_clock().now().to_msg()
                    )
                )

    def _log_events(self, events: list[Event]) -> bool:
        log = self.get_logger()
        state_event = False
        for e in events:
            if e.kind in ("controller_lost", "power_status_stale"):
                log.error(e.text)
            else:
                log.info(e.text)
            state_event |= e.kind in STATE_EVENTS
        return state_event

    def _publish_controller_state(self, now: float) -> None:
        with self._lock:
            state = self.core.controller_state
            alive = self.core.alive and self.link.up
            reason = "" if alive else (self.core.lost_reason or self.link.last_error)
            age = self.core.heartbeat_age(now)
        msg = ros.ControllerState(
            pistol_index=self.config.pistol_index,
            alive=alive,
            heartbeat_seen=state is not None,
            reason=reason,
            heartbeat_age=float(age),
        )
        msg.header.stamp = self.get_clock().now().to_msg()
        if state is not None:
            msg.state, msg.state_name = int(state), state.label
        self.pub_state.publish(msg)

    # --- executor callbacks -------------------------------------------------------------------

    def _on_power_status(self, msg: ros.PowerModulesStatus) -> None:
        try:
            status = conv.power_status_from_ros(msg)
            with self._lock:
                self.core.set_power_status(time.monotonic(), status)
        except (ValueError, ProtocolError) as exc:
            self.get_logger().warning(f"ignoring power status: {exc}", throttle_duration_sec=5.0)

    def _apply(self, action: Any, ok_text: str, response: Any) -> Any:
        try:
            with self._lock:
                result = action(time.monotonic())
        except ValueError as exc:
            response.success, response.message = False, str(exc)
            return response
        self._wake_tx()
        if result is False:
            response.success, response.message = False, "a press of that button is in progress"
            return response
        suffix = "" if self.link.up else f" (queued: CAN link down: {self.link.last_error})"
        response.success, response.message = True, ok_text + suffix
        return response

    def _srv_start_authorisation(self, req: SetBool.Request, resp: SetBool.Response) -> Any:
        return self._apply(
            lambda now: self.core.set_start_authorisation(now, req.data),
            f"Start_Charge_Authorisation = {'Allowed' if req.data else 'Not_Allowed'}",
            resp,
        )

    def _srv_ccs_authorisation(self, req: SetBool.Request, resp: SetBool.Response) -> Any:
        return self._apply(
            lambda now: self.core.set_ccs_authorisation(now, req.data),
            f"CCS authorisation {'valid' if req.data else 'invalid'}, done",
            resp,
        )

    def _srv_power_limits(self, req: Any, resp: Any) -> Any:
        def action(now: float) -> None:
            self.core.set_limits(
                now,
                req.maximum_voltage,
                req.maximum_current,
                req.maximum_power,
                req.maximum_discharge_current,
            )
            if req.charge_parameters_done:
                self.core.set_charge_parameters_done(now)

        name = "DC_Power_Parameters" if self.core.v3 else "Power_Modules_Limits"
        discharge = f", discharge {req.maximum_discharge_current:g} A" if self.core.v3 else ""
        text = f"{name} {req.maximum_voltage:g} V, {req.maximum_current:g} A{discharge}" + (
            " then Charge_Parameters_Done" if req.charge_parameters_done else ""
        )
        return self._apply(action, text, resp)

    def _srv_user_stop(self, req: Trigger.Request, resp: Trigger.Response) -> Any:
        return self._apply(
            lambda now: self.core.press_button(now, "user_stop_button"),
            "User_Stop_Button pressed",
            resp,
        )

    def _srv_chademo_start(self, req: Trigger.Request, resp: Trigger.Response) -> Any:
        return self._apply(
            lambda now: self.core.press_button(now, "chademo_start_button"),
            "CHAdeMO_Start_Button pressed",
            resp,
        )

    def _srv_outputs(self, req: Any, resp: Any) -> Any:
        try:
            outputs = _outputs_message(req)
        except ValueError as exc:
            resp.success, resp.message = False, str(exc)
            return resp
        text = (
            "controller outputs off"
            if outputs is None
            else f"sending {outputs.NAME} every {self.config.outputs_period:g} s"
        )
        return self._apply(lambda now: self.core.set_outputs(now, outputs), text, resp)

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        for p in params:
            if p.name == "publish_raw_frames":
                if p.type_ != Parameter.Type.BOOL:
                    return SetParametersResult(
                        successful=False, reason="publish_raw_frames must be true or false"
                    )
                self.publish_raw = bool(p.value)
        return SetParametersResult(successful=True)

    # --- diagnostics and battery state --------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        name = self.get_fully_qualified_name()
        hw = f"{self._frame_id} pistol {self.config.pistol_index}"
        with self._lock:
            counters = dict(vars(self.core.counters))
            statuses = [
                self._bus_status(now, counters),
                self._heartbeat_status(now, counters),
                self._power_status(now, counters),
            ]
        arr = DiagnosticArray(
            status=[_status(f"{name}: {title}", hw, *rest) for title, *rest in statuses]
        )
        arr.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(arr)

    def _bus_status(self, now: float, counters: dict[str, int]) -> tuple[Any, ...]:
        stats = self.link.stats
        t0, rx0, tx0 = self._diag_last
        dt = max(now - t0, 1e-6)
        self._diag_last = (now, stats.rx_frames, stats.tx_frames)
        errors = counters["internal_errors"] + stats.handler_errors
        if not self.link.up:
            level, text = DiagnosticStatus.ERROR, f"down: {self.link.last_error}"
        elif errors:
            level = DiagnosticStatus.ERROR
            text = f"internal errors: {errors} (last: {self.guard.last_error})"
        else:
            level, text = DiagnosticStatus.OK, "up"
        values = {
            "interface": self.link_config.interface,
            "channel": self.link_config.channel,
            "bitrate": self.link_config.bitrate,
            "rx_frames_per_s": f"{(stats.rx_frames - rx0) / dt:.1f}",
            "tx_frames_per_s": f"{(stats.tx_frames - tx0) / dt:.1f}",
            "rx_frames": stats.rx_frames,
            "tx_frames": stats.tx_frames,
            "tx_failures": stats.tx_failures,
            "rx_failures": stats.rx_failures,
            "bus_off_events": stats.bus_off_events,
            "reconnects": stats.reconnects,
            "error_frames": counters["rx_error_frames"],
            "malformed_frames": counters["rx_malformed"],
            "foreign_frames": counters["rx_foreign"],
            "unexpected_frames": counters["rx_unexpected"],
            "padded_frames": counters["rx_padded"],
            "internal_errors": errors,
        }
        return "CAN bus", level, text, values

    def _heartbeat_status(self, now: float, counters: dict[str, int]) -> tuple[Any, ...]:
        core = self.core
        state, age = core.controller_state, core.heartbeat_age(now)
        if core.alive:
            level, text = DiagnosticStatus.OK, f"alive, state {state.label if state else '?'}"
        elif core.last_heartbeat is not None:
            level, text = DiagnosticStatus.ERROR, f"heartbeat lost ({age * 1000:.0f} ms)"
        else:
            level, text = DiagnosticStatus.WARN, "no heartbeat received yet"
        values = {
            "state": state.label if state is not None else "none",
            "heartbeat_age_ms": _ms(age),
            "heartbeat_losses": counters["heartbeat_losses"],
            "lost_reason": core.lost_reason,
        }
        return "controller heartbeat", level, text, values

    def _power_status(self, now: float, counters: dict[str, int]) -> tuple[Any, ...]:
        stale, status = self.core.power_status_stale, self.core.power_status
        if status is None:
            level = DiagnosticStatus.WARN
            text = "no status from the converter driver: Power_Modules_Status not sent"
        elif stale:
            level = DiagnosticStatus.ERROR
            text = "converter driver status stale: sending System_Enable=0"
        else:
            level, text = DiagnosticStatus.OK, "fresh"
        values = {
            "age_ms": _ms(self.core.power_status_age(now)),
            "stale_events": counters["stale_power_status"],
            "system_enable": bool(status and status.system_enable and not stale),
            "present_voltage": status.present_voltage if status else "none",
            "present_current": status.present_current if status else "none",
        }
        return "power status", level, text, values

    def _publish_battery_state(self) -> None:
        with self._lock:
            v = self.core.vehicle()
        msg = BatteryState()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.present = v.present
        msg.voltage, msg.current = v.voltage, v.current
        msg.charge = msg.capacity = math.nan
        msg.design_capacity = v.design_capacity_ah
        msg.percentage, msg.temperature = v.soc_fraction, math.nan
        msg.power_supply_health = BatteryState.POWER_SUPPLY_HEALTH_UNKNOWN
        msg.power_supply_technology = BatteryState.POWER_SUPPLY_TECHNOLOGY_UNKNOWN
        if not v.present:
            msg.power_supply_status = BatteryState.POWER_SUPPLY_STATUS_UNKNOWN
        elif v.charging:
            msg.power_supply_status = BatteryState.POWER_SUPPLY_STATUS_CHARGING
        else:
            msg.power_supply_status = BatteryState.POWER_SUPPLY_STATUS_NOT_CHARGING
        msg.location = f"pistol {self.config.pistol_index}"
        if v.present:
            msg.location += f" ({v.plug}, {v.protocol})"
        msg.serial_number = v.ev_id
        self.pub_battery.publish(msg)

    # --- shutdown -----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop transmitting and release the bus (idempotent; also called by destroy_node)."""
        if self._tx is not None:
            self._tx.cancel()
        self.link.close()

    def destroy_node(self) -> None:
        """Stop transmitting and receiving before the node goes away."""
        if hasattr(self, "link"):
            self.close()
        super().destroy_node()


def _outputs_message(req: Any) -> AdmCsSeccOutputs | AdmCsSpccOutputs | None:
    """Build the outputs message of a SetControllerOutputs request; ValueError if invalid."""
    if not req.enabled:
        return None
    leds = [int(v) for v in req.leds]
    outs = [bool(v) for v in req.digital_outputs]
    if len(leds) != 3:
        raise ValueError(f"leds must have 3 values (Led1..3), got {len(leds)}")
    if req.board == srv.SetControllerOutputs.Request.BOARD_ADM_CS_SECC:
        if len(outs) != 4:
            raise ValueError(f"ADM-CS-SECC has 4 digital outputs, got {len(outs)}")
        return AdmCsSeccOutputs(*outs, *leds)
    if req.board == srv.SetControllerOutputs.Request.BOARD_ADM_CS_SPCC:
        if len(outs) != 2:
            raise ValueError(f"ADM-CS-SPCC has 2 digital outputs, got {len(outs)}")
        return AdmCsSpccOutputs(*outs, *leds)
    raise ValueError(f"unknown board {req.board} (0 = ADM-CS-SECC, 1 = ADM-CS-SPCC)")


def _status(
    name: str, hw: str, level: bytes, message: str, values: dict[str, Any]
) -> DiagnosticStatus:
    return DiagnosticStatus(
        level=level,
        name=name,
        hardware_id=hw,
        message=message,
        values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
    )


def _ms(seconds: float) -> str:
    return "inf" if math.isinf(seconds) else f"{seconds * 1000:.0f}"


def main(args: list[str] | None = None) -> int:
    """Run the can_bridge node; exit code 2 with a one-line error for bad parameters."""
    from evse_can_ros.ros.node_main import run_node

    return run_node(CanBridgeNode, "can_bridge", args)
