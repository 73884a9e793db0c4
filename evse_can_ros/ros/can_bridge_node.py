"""``can_bridge``: the Generic EVSE CAN interface v2 as typed ROS 2 topics and services.

Threads (see README, "Performance"):

* the CAN receive thread (transport) decodes each frame and publishes the typed topic directly;
* the transmit thread runs :meth:`BridgeCore.poll` at the core's next deadline: periodic frames,
  heartbeat supervision and the periodic ``controller_state``;
* the executor (single-threaded) runs services, the power-status subscription and diagnostics.

The protocol logic is :class:`evse_can_ros.core.bridge.BridgeCore`; this file only adapts it.
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
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import BatteryState
from std_srvs.srv import SetBool, Trigger

from evse_can_ros import msg as ros
from evse_can_ros import srv
from evse_can_ros.core.bridge import BridgeConfig, BridgeCore, Event, Outgoing, RxKind
from evse_can_ros.core.config import ConfigError
from evse_can_ros.protocol import (
    AdmCsSeccOutputs,
    AdmCsSpccOutputs,
    CanFrame,
    ChargeSessionFinished,
    ControllerState,
    EmergencyStop,
    PowerModulesLimits,
    ProtocolError,
    SequenceControl,
    load_codec,
    pistol_filter,
)
from evse_can_ros.ros import conversions as conv
from evse_can_ros.ros.params import declare_config
from evse_can_ros.transport import CanLink, LinkConfig, LinkConfigError

LATCHED = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
EVENTS = QoSProfile(
    depth=20, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE
)
RAW = QoSProfile(
    depth=1000, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE
)

TOPIC_OF = {  # typed controller messages -> topic name (relative to the node namespace)
    "New_Charge_Session": "new_charge_session",
    "Insulation_Test": "insulation_test",
    "Precharge": "precharge",
    "Charging_Loop": "charging_loop",
    "Charge_Status_Change": "charge_status_change",
    "Emergency_Stop": "emergency_stop",
    "Charge_Session_Finished": "charge_session_finished",
    "ADM_CO_CUI1_Inputs": "controller_inputs",
    "ADM_CS_SECC_Inputs": "controller_inputs",
    "ADM_CS_SPCC_Inputs": "controller_inputs",
    "EV_ID_CCS_Part2_DIN": "ev_id",
    "CCS_Extra_Information": "ccs_extra_information",
    "MCS_Extra_Information": "mcs_extra_information",
}
ROS_TYPE_OF_TOPIC = {
    "new_charge_session": ros.NewChargeSession,
    "insulation_test": ros.InsulationTest,
    "precharge": ros.Precharge,
    "charging_loop": ros.ChargingLoop,
    "charge_status_change": ros.ChargeStatusChange,
    "emergency_stop": ros.EmergencyStop,
    "charge_session_finished": ros.ChargeSessionFinished,
    "controller_inputs": ros.ControllerInputs,
    "ev_id": ros.EvId,
    "ccs_extra_information": ros.CcsExtraInformation,
    "mcs_extra_information": ros.McsExtraInformation,
}


STATE_EVENTS = ("controller_lost", "controller_alive", "state")


class NodeConfigError(Exception):
    """The node cannot start with its parameters (printed as one line, exit code 2)."""


def start_link(node: Node, link: CanLink) -> None:
    """Open and start a node's CAN link; a configuration error destroys the node.

    Raises NodeConfigError (one line) for an interface python-can does not know or a bad
    channel; a bus that exists but cannot be opened yet is retried by the link itself.
    """
    try:
        link.open()
    except LinkConfigError as exc:
        node.destroy_node()
        raise NodeConfigError(str(exc)) from None
    link.start()


class CanBridgeNode(Node):
    """See module docstring. Raises NodeConfigError for bad parameters."""

    def __init__(self, node_name: str = "can_bridge", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        try:
            self.config = declare_config(self, BridgeConfig)
            self.link_config = declare_config(self, LinkConfig, prefix="can_")
            db_path = self.declare_parameter(
                "database_path",
                "",
                ParameterDescriptor(
                    description="CAN database (.dbc/.kcd); empty = the packaged v2.7 database",
                    read_only=True,
                ),
            ).value
            self.codec = load_codec(db_path or None)
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
        self.state_period = 0.1
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.core = BridgeCore(self.codec, self.config)
        self._frame_id = f"{self.link_config.interface}:{self.link_config.channel}"

        # publishers
        self.pub_state = self.create_publisher(ros.ControllerState, "controller_state", LATCHED)
        self.pub_typed = {
            topic: self.create_publisher(t, topic, EVENTS)
            for topic, t in ROS_TYPE_OF_TOPIC.items()
        }
        self.pub_battery = self.create_publisher(BatteryState, "battery_state", LATCHED)
        self.pub_limits = self.create_publisher(
            ros.PowerModulesLimits, "power_modules_limits", LATCHED
        )
        self.pub_flags = self.create_publisher(ros.SequenceControl, "sequence_control", LATCHED)
        self.pub_rx = self.create_publisher(ros.CanFrame, "can_rx", RAW)
        self.pub_tx = self.create_publisher(ros.CanFrame, "can_tx", RAW)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # inputs
        self.create_subscription(
            ros.PowerModulesStatus, "power_modules_status", self._on_power_status, EVENTS
        )
        self.create_service(SetBool, "set_start_authorisation", self._srv_start_authorisation)
        self.create_service(SetBool, "set_ccs_authorisation", self._srv_ccs_authorisation)
        self.create_service(srv.SetPowerLimits, "set_power_limits", self._srv_power_limits)
        self.create_service(Trigger, "press_user_stop", self._srv_user_stop)
        self.create_service(Trigger, "press_chademo_start", self._srv_chademo_start)
        self.create_service(srv.SetControllerOutputs, "set_controller_outputs", self._srv_outputs)
        self.create_timer(1.0, self._publish_diagnostics)
        self.create_timer(1.0, self._publish_battery_state)
        self._diag_last = (time.monotonic(), 0, 0)

        self.link = CanLink(
            self.link_config,
            self._on_frame,
            self._on_link,
            filters=[pistol_filter(self.config.pistol_index)],
        )
        start_link(self, self.link)
        self._tx_thread = threading.Thread(target=self._tx_loop, name="can-tx", daemon=True)
        self._tx_thread.start()
        self.get_logger().info(
            f"bridging pistol {self.config.pistol_index} on {self.link.describe()} "
            f"({self.link_config.bitrate or 'interface default'} bit/s, database "
            f"{self.codec.database_path.name})"
        )

    # --- receive thread -----------------------------------------------------------------------

    def _on_frame(self, frame: CanFrame, now: float) -> None:
        try:
            self._handle_frame(frame, now)
        except Exception:
            if self.context.ok():
                raise
            # Ctrl-C shut the context down under this receive thread: the node is going away

    def _handle_frame(self, frame: CanFrame, now: float) -> None:
        with self._lock:
            result = self.core.on_frame(now, frame)
            events_pending = self.core.has_events
        if self.publish_raw:
            self.pub_rx.publish(conv.frame_to_ros(frame, self._frame_id))
        if events_pending:
            self._wake.set()
        if result.kind is RxKind.MESSAGE:
            message = result.message
            assert message is not None
            topic = TOPIC_OF.get(message.NAME)
            if topic is not None:
                self.pub_typed[topic].publish(
                    conv.to_ros(message, self.get_clock().now().to_msg(), self.codec)
                )
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

    def _on_link(self, up: bool, reason: str) -> None:
        if not up:
            with self._lock:
                self.core.link_down(time.monotonic(), reason)
            self._wake.set()

    # --- transmit thread ----------------------------------------------------------------------

    def _tx_loop(self) -> None:
        next_state = 0.0
        while not self._stop.is_set():
            self._wake.clear()
            now = time.monotonic()
            with self._lock:
                out, events = self.core.poll(now)
                wake_at = self.core.next_wakeup(now)
            for outgoing in out:
                self._send(outgoing)
            # publish first, log after: a logger call can take tens of ms (rclpy looks up the
            # caller's source line), which would delay the heartbeat-loss alarm
            state_event = any(e.kind in STATE_EVENTS for e in events)
            if state_event or now >= next_state:
                self._publish_controller_state(now)
                next_state = now + self.state_period
            self._log_events(events)
            self._wake.wait(max(0.0, min(wake_at, next_state) - time.monotonic()))

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
        elif isinstance(message, PowerModulesLimits):
            self.pub_limits.publish(conv.limits_to_ros(message, self.get_clock().now().to_msg()))

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
            age = self.core.heartbeat_age(now)
        msg = ros.ControllerState(
            pistol_index=self.config.pistol_index, alive=alive, heartbeat_age=float(age)
        )
        msg.header.stamp = self.get_clock().now().to_msg()
        if state is None:
            msg.state, msg.state_name = 0, "No_Heartbeat"
        else:
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
        self._wake.set()
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
            self.core.set_limits(now, req.maximum_voltage, req.maximum_current)
            if req.charge_parameters_done:
                self.core.set_charge_parameters_done(now)

        text = f"Power_Modules_Limits {req.maximum_voltage:g} V, {req.maximum_current:g} A" + (
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
        stats = self.link.stats
        with self._lock:
            c = self.core.counters
            counters = dict(vars(c))
            alive, seen = self.core.alive, self.core.last_heartbeat is not None
            state = self.core.controller_state
            hb_age, ps_age = self.core.heartbeat_age(now), self.core.power_status_age(now)
            stale, status = self.core.power_status_stale, self.core.power_status
        t0, rx0, tx0 = self._diag_last
        dt = max(now - t0, 1e-6)
        self._diag_last = (now, stats.rx_frames, stats.tx_frames)
        hw = f"{self._frame_id} pistol {self.config.pistol_index}"
        name = self.get_fully_qualified_name()

        bus = _status(
            f"{name}: CAN bus",
            hw,
            DiagnosticStatus.OK if self.link.up else DiagnosticStatus.ERROR,
            "up" if self.link.up else f"down: {self.link.last_error}",
            interface=self.link_config.interface,
            channel=self.link_config.channel,
            bitrate=self.link_config.bitrate,
            rx_frames_per_s=f"{(stats.rx_frames - rx0) / dt:.1f}",
            tx_frames_per_s=f"{(stats.tx_frames - tx0) / dt:.1f}",
            rx_frames=stats.rx_frames,
            tx_frames=stats.tx_frames,
            tx_failures=stats.tx_failures,
            rx_failures=stats.rx_failures,
            bus_off_events=stats.bus_off_events,
            reconnects=stats.reconnects,
            error_frames=counters["rx_error_frames"],
            malformed_frames=counters["rx_malformed"],
            foreign_frames=counters["rx_foreign"],
            unexpected_frames=counters["rx_unexpected"],
        )
        if alive:
            level, text = DiagnosticStatus.OK, f"alive, state {state.label if state else '?'}"
        elif seen:
            level, text = DiagnosticStatus.ERROR, f"heartbeat lost ({hb_age * 1000:.0f} ms)"
        else:
            level, text = DiagnosticStatus.WARN, "no heartbeat received yet"
        ctrl = _status(
            f"{name}: controller heartbeat",
            hw,
            level,
            text,
            state=state.label if state is not None else "none",
            heartbeat_age_ms=_ms(hb_age),
            heartbeat_losses=counters["heartbeat_losses"],
        )
        if status is None:
            level, text = (
                DiagnosticStatus.WARN,
                "no status from the converter driver: Power_Modules_Status not sent",
            )
        elif stale:
            level, text = (
                DiagnosticStatus.ERROR,
                "converter driver status stale: sending System_Enable=0",
            )
        else:
            level, text = DiagnosticStatus.OK, "fresh"
        power = _status(
            f"{name}: power status",
            hw,
            level,
            text,
            age_ms=_ms(ps_age),
            stale_events=counters["stale_power_status"],
            system_enable=bool(status and status.system_enable and not stale),
            present_voltage=status.present_voltage if status else "none",
            present_current=status.present_current if status else "none",
        )
        arr = DiagnosticArray(status=[bus, ctrl, power])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(arr)

    def _publish_battery_state(self) -> None:
        with self._lock:
            session, soc, ev_id = self.core.session, self.core.soc, self.core.ev_id
            state, status = self.core.controller_state, self.core.power_status
        msg = BatteryState()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.present = session is not None
        nan = math.nan
        msg.voltage = msg.current = msg.charge = msg.capacity = msg.design_capacity = nan
        msg.percentage = msg.temperature = nan
        msg.power_supply_health = BatteryState.POWER_SUPPLY_HEALTH_UNKNOWN
        msg.power_supply_technology = BatteryState.POWER_SUPPLY_TECHNOLOGY_UNKNOWN
        msg.power_supply_status = BatteryState.POWER_SUPPLY_STATUS_UNKNOWN
        msg.location = f"pistol {self.config.pistol_index}"
        if session is not None:
            msg.location += (
                f" ({session.plug_and_pins.label}, {session.communication_protocol.label})"
            )
            msg.serial_number = ev_id.hex().upper() if ev_id else ""
            if soc is not None:
                msg.percentage = soc / 100.0
            charging = state == ControllerState.CHARGING
            if status is not None:
                msg.voltage = float(status.present_voltage)
                msg.current = float(status.present_current)
                charging = charging and status.present_current > 1.0
                if session.battery_capacity > 0 and status.present_voltage > 1.0:
                    # estimate: kWh at the present voltage (the protocol gives no Ah figure)
                    msg.design_capacity = (
                        session.battery_capacity * 1000.0 / status.present_voltage
                    )
            msg.power_supply_status = (
                BatteryState.POWER_SUPPLY_STATUS_CHARGING
                if charging
                else BatteryState.POWER_SUPPLY_STATUS_NOT_CHARGING
            )
        self.pub_battery.publish(msg)

    # --- shutdown -----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop transmitting and release the bus (idempotent; also called by destroy_node)."""
        self._stop.set()
        self._wake.set()
        if self._tx_thread.is_alive():
            self._tx_thread.join(timeout=2.0)
        self.link.close()

    def destroy_node(self) -> None:
        """Stop the threads before the node goes away."""
        if hasattr(self, "_tx_thread"):
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


def _status(name: str, hw: str, level: bytes, message: str, **values: Any) -> DiagnosticStatus:
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
