"""``charge_server``: the Charge action (one goal = one charge) and the depot's latched topics.

Runs in the bridge's namespace. The logic is
:class:`evse_can_ros.core.charge_session.ChargeSession`; this node feeds it from the bridge and
converter topics, turns its commands into the bridge's service calls, and publishes feedback,
``charger_availability`` and ``safe_to_unplug``.

Goal policy: one active goal per pistol. A goal with invalid values, or a second goal while one
is running, is accepted and aborted at once with ``INVALID_GOAL`` / ``BUSY`` and a one-line
``error_msg``. ROS goal rejection carries no reason, and clients need to know why.
"""

from __future__ import annotations

import math
import os
import threading
import time
import uuid
from typing import Any

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.node import Node
from rclpy.task import Future
from std_msgs.msg import Bool
from std_srvs.srv import SetBool, Trigger

from evse_can_ros import msg as ros
from evse_can_ros import srv
from evse_can_ros.action import Charge
from evse_can_ros.core.charge_session import (
    ChargeSession,
    Command,
    ErrorCode,
    PressChademoStart,
    PressUserStop,
    Result,
    SessionConfig,
    SetCcsAuthorisation,
    SetLimits,
    SetStartAuthorisation,
    availability,
    safe_to_unplug,
    validate_goal,
)
from evse_can_ros.core.config import ConfigError
from evse_can_ros.protocol import (
    ChargeSessionFinished,
    ChargingLoop,
    ControllerState,
    EmergencyStop,
    NewChargeSession,
)
from evse_can_ros.ros import conversions as conv
from evse_can_ros.ros.can_bridge_node import EVENTS, LATCHED, NodeConfigError
from evse_can_ros.ros.params import declare_config

GOAL_FIELDS = (
    "target_soc",
    "max_energy",
    "max_duration",
    "plug_in_timeout",
    "max_voltage",
    "max_current",
    "max_power",
    "authorise_start",
    "accept_ccs_authorisation",
    "press_chademo_start",
)


class ChargeServerNode(Node):
    """See module docstring."""

    def __init__(self, node_name: str = "charge_server", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        try:
            self.config = declare_config(self, SessionConfig)
            self.pistol_index = int(self.declare_parameter("pistol_index", 1).value)
        except ConfigError as exc:
            raise NodeConfigError(str(exc)) from None
        self._lock = threading.Lock()
        self._session: ChargeSession | None = None
        self._goal_id = ""
        self._done: Future | None = None
        self._handle: ServerGoalHandle | None = None
        self._state: ControllerState | None = None
        self._alive = False
        self._voltage = math.nan
        self._fault = ""
        self._emergency = False
        self._published: tuple[Any, ...] = ()
        self._last_feedback = 0.0
        self._feedback_stage: Any = None

        self.pub_availability = self.create_publisher(
            ros.ChargerAvailability, "charger_availability", LATCHED
        )
        self.pub_unplug = self.create_publisher(Bool, "safe_to_unplug", LATCHED)
        self.create_subscription(ros.ControllerState, "controller_state", self._on_state, LATCHED)
        self.create_subscription(
            ros.NewChargeSession,
            "new_charge_session",
            lambda m: self._on_message(m, NewChargeSession),
            EVENTS,
        )
        self.create_subscription(
            ros.ChargingLoop, "charging_loop", lambda m: self._on_message(m, ChargingLoop), EVENTS
        )
        self.create_subscription(
            ros.EmergencyStop,
            "emergency_stop",
            lambda m: self._on_message(m, EmergencyStop),
            EVENTS,
        )
        self.create_subscription(
            ros.ChargeSessionFinished,
            "charge_session_finished",
            lambda m: self._on_message(m, ChargeSessionFinished),
            EVENTS,
        )
        self.create_subscription(
            ros.PowerModulesStatus, "power_modules_status", self._on_power, EVENTS
        )
        self.create_subscription(
            ros.ConverterStatus, "converter_status", self._on_converter, EVENTS
        )
        self.cli_start = self.create_client(SetBool, "set_start_authorisation")
        self.cli_ccs = self.create_client(SetBool, "set_ccs_authorisation")
        self.cli_limits = self.create_client(srv.SetPowerLimits, "set_power_limits")
        self.cli_stop = self.create_client(Trigger, "press_user_stop")
        self.cli_chademo = self.create_client(Trigger, "press_chademo_start")
        self.action = ActionServer(
            self,
            Charge,
            "charge",
            self._execute,
            goal_callback=lambda _: GoalResponse.ACCEPT,
            cancel_callback=self._on_cancel,
        )
        self.create_timer(0.1, self._step)
        self._servers_seen = 1
        self._unsent: list[Command] = []
        self.create_timer(2.0, self._check_single_server)
        self._publish_depot_state(force=True)

    # --- inputs -------------------------------------------------------------------------------

    def _on_state(self, m: ros.ControllerState) -> None:
        now = time.monotonic()
        state = ControllerState(m.state) if m.state_name != "No_Heartbeat" else None
        with self._lock:
            self._state, self._alive = state, bool(m.alive)
            if state in (ControllerState.WAITING_FOR_PEV, ControllerState.NOT_AVAILABLE):
                self._emergency = False
            if self._session is not None:
                self._session.on_controller(now, state, bool(m.alive))

    def _on_message(self, m: Any, cls: Any) -> None:
        message = conv.from_ros(m, cls)
        with self._lock:
            if isinstance(message, EmergencyStop):
                self._emergency = True
            if self._session is not None:
                self._session.on_message(time.monotonic(), message)

    def _on_power(self, m: ros.PowerModulesStatus) -> None:
        with self._lock:
            self._voltage = float(m.present_voltage)
            if self._session is not None:
                self._session.on_power(
                    time.monotonic(),
                    float(m.present_voltage),
                    float(m.present_current),
                    self._fault,
                )

    def _on_converter(self, m: ros.ConverterStatus) -> None:
        with self._lock:
            self._fault = m.fault

    # --- goals --------------------------------------------------------------------------------

    async def _execute(self, goal_handle: ServerGoalHandle) -> Charge.Result:
        g = goal_handle.request
        gid = uuid.UUID(bytes=bytes(goal_handle.goal_id.uuid)).hex[:8]
        try:
            goal = validate_goal(**{f: getattr(g, f) for f in GOAL_FIELDS})
        except ConfigError as exc:
            self.get_logger().warning(f"goal {gid} refused: {exc}")
            return self._abort(goal_handle, ErrorCode.INVALID_GOAL, f"invalid goal: {exc}")
        with self._lock:
            if self._session is not None:
                text = (
                    f"pistol {self.pistol_index} is busy with goal {self._goal_id} "
                    f"(stage {self._session.stage.name.lower()}); one goal per pistol"
                )
                self.get_logger().warning(f"goal {gid} refused: {text}")
                return self._abort(goal_handle, ErrorCode.BUSY, text)
            self._session = ChargeSession(goal, time.monotonic(), self.config)
            self._goal_id = gid
            self._handle = goal_handle
            self._done = Future()
            done = self._done
            self._session.on_controller(time.monotonic(), self._state, self._alive)
        self.get_logger().info(f"goal {gid} accepted: {goal}")
        result: Result = await done
        with self._lock:
            self._session, self._done, self._handle = None, None, None
        msg = Charge.Result(
            error_code=int(result.error_code),
            error_msg=result.error_msg,
            outcome=int(result.outcome),
            energy_delivered=result.energy_delivered,
            duration=result.duration,
            initial_soc=result.initial_soc,
            final_soc=result.final_soc,
            session_end_state=result.session_end_state,
            safe_to_unplug=result.safe_to_unplug,
        )
        if goal_handle.is_cancel_requested and result.error_code.name == "CANCELLED":
            goal_handle.canceled()
        elif result.error_code == 0:
            goal_handle.succeed()
        else:
            goal_handle.abort()
        self.get_logger().info(
            f"goal {gid} finished: {result.error_code.name} "
            f"{result.error_msg} ({result.energy_delivered:.0f} Wh)"
        )
        return msg

    @staticmethod
    def _abort(goal_handle: ServerGoalHandle, code: ErrorCode, text: str) -> Charge.Result:
        goal_handle.abort()
        return Charge.Result(
            error_code=int(code),
            error_msg=text,
            outcome=Charge.Result.OUTCOME_FAILED,
            initial_soc=math.nan,
            final_soc=math.nan,
            session_end_state=Charge.Result.SESSION_END_NONE,
        )

    def _on_cancel(self, goal_handle: ServerGoalHandle) -> CancelResponse:
        with self._lock:
            if self._session is None:
                return CancelResponse.REJECT
            self._session.cancel(time.monotonic())
        self.get_logger().info("cancel requested: pressing User_Stop_Button")
        return CancelResponse.ACCEPT

    # --- periodic -----------------------------------------------------------------------------

    def _check_single_server(self) -> None:
        """Report a second Charge action server on this name: both would run every goal."""
        action = f"{self.get_namespace().rstrip('/')}/charge"
        servers = self.count_publishers(f"{action}/_action/status")
        if servers > 1 and servers != self._servers_seen:
            domain = os.environ.get("ROS_DOMAIN_ID", "0")
            self.get_logger().error(
                f"{servers} action servers serve {action} in DDS domain {domain}: each would "
                "start a charge for every goal (clients warn of an unexpected goal response); "
                "give every charger its own namespace or domain"
            )
        self._servers_seen = servers

    def _step(self) -> None:
        now = time.monotonic()
        feedback = None
        with self._lock:
            session = self._session
            commands: list[Command] = session.step(now) if session is not None else []
            # 2 Hz, and at once on every stage change (short stages such as precharge too)
            if session is not None and (
                now - self._last_feedback >= 0.5 or session.stage != self._feedback_stage
            ):
                self._last_feedback = now
                self._feedback_stage = session.stage
                feedback = session.feedback(now)
            if (
                session is not None
                and session.result is not None
                and self._done is not None
                and not self._done.done()
            ):
                self._done.set_result(session.result)
        # a command the bridge could not take yet (its service not discovered, e.g. just after
        # start-up) is sent again at the next step, in order, while the goal lasts
        pending = self._unsent + commands if session is not None else []
        self._unsent = []
        for i, command in enumerate(pending):
            if not self._send(command):
                self._unsent = pending[i:]
                break
        handle = self._handle
        if feedback is not None and handle is not None and handle.is_active:
            fb = Charge.Feedback(
                stage=int(feedback.stage),
                stage_name=feedback.stage.name.lower(),
                controller_state=feedback.controller_state,
                controller_state_name=feedback.controller_state_name,
                protocol=feedback.protocol,
                present_voltage=feedback.present_voltage,
                present_current=feedback.present_current,
                present_power=feedback.present_power,
                energy_delivered=feedback.energy_delivered,
                soc=feedback.soc,
                ev_maximum_voltage=feedback.ev_maximum_voltage,
                ev_maximum_current=feedback.ev_maximum_current,
                elapsed=feedback.elapsed,
            )
            handle.publish_feedback(fb)
        self._publish_depot_state()

    def _send(self, command: Command) -> bool:
        if isinstance(command, SetStartAuthorisation):
            return self._call(self.cli_start, SetBool.Request(data=command.allowed))
        if isinstance(command, SetCcsAuthorisation):
            return self._call(self.cli_ccs, SetBool.Request(data=command.valid))
        if isinstance(command, SetLimits):
            return self._call(
                self.cli_limits,
                srv.SetPowerLimits.Request(
                    maximum_voltage=command.maximum_voltage,
                    maximum_current=command.maximum_current,
                    charge_parameters_done=command.charge_parameters_done,
                ),
            )
        if isinstance(command, PressUserStop):
            return self._call(self.cli_stop, Trigger.Request())
        if isinstance(command, PressChademoStart):
            return self._call(self.cli_chademo, Trigger.Request())
        return True

    def _call(self, client: Any, request: Any) -> bool:
        if not client.service_is_ready():
            self.get_logger().error(
                f"bridge service {client.srv_name} is not available (retrying)",
                throttle_duration_sec=5.0,
            )
            return False
        future = client.call_async(request)

        def done(f: Future) -> None:
            response = f.result()
            if response is not None and not response.success:
                self.get_logger().warning(f"{client.srv_name}: {response.message}")

        future.add_done_callback(done)
        return True

    def _publish_depot_state(self, force: bool = False) -> None:
        with self._lock:
            faulted = bool(self._fault) or self._emergency
            avail = availability(self._state, self._alive, faulted)
            unplug = safe_to_unplug(self._state, self._voltage, self.config.safe_voltage) and (
                self._session is None or self._session.obs.ended_at is not None
            )
            active = self._session is not None
        key = (avail, unplug, active)
        if key == self._published and not force:
            return
        self._published = key
        msg = ros.ChargerAvailability(
            pistol_index=self.pistol_index,
            availability=int(avail),
            availability_name=avail.name.lower(),
            goal_active=active,
        )
        msg.header.stamp = self.get_clock().now().to_msg()
        self.pub_availability.publish(msg)
        self.pub_unplug.publish(Bool(data=unplug))


def main(args: list[str] | None = None) -> int:
    """Run the charge_server node; exit code 2 with a one-line error for bad parameters."""
    from evse_can_ros.ros.node_main import run_node

    return run_node(ChargeServerNode, "charge_server", args)
