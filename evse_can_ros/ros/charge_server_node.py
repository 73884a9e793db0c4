"""``charge_server``: the Charge action (one goal = one charge) and the depot's latched topics.

Runs in the bridge's namespace. The decisions are :class:`evse_can_ros.core.charge_server.
ChargeServer` (goals, sessions without a goal, authorisation, command delivery with retries,
availability, safe-to-unplug); this node feeds it the bridge's and the converter driver's topics
(:mod:`evse_can_ros.ros.interfaces`), calls its ``step`` every 100 ms, turns its commands into
the bridge's service calls (reporting each outcome back) and publishes feedback, results,
``charger_availability`` and ``safe_to_unplug``.

Goal policy: one active goal per pistol. A goal with invalid values, a second goal while one is
running, or any goal while charging is disabled (``authorisation: never``) is accepted and
aborted at once with ``INVALID_GOAL`` / ``BUSY`` / ``NOT_AUTHORISED`` and a one-line
``error_msg``: ROS goal rejection carries no reason, and clients need to know why.
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
from std_msgs.msg import Float64
from std_srvs.srv import SetBool, Trigger

from evse_can_ros import msg as ros
from evse_can_ros import srv
from evse_can_ros.action import Charge
from evse_can_ros.config import ConfigError
from evse_can_ros.core.charge_server import ChargeServer, DepotState
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
from evse_can_ros.core.power_module import FaultKind
from evse_can_ros.protocol import ControllerState
from evse_can_ros.ros import conversions as conv
from evse_can_ros.ros.common import Guard, NodeConfigError
from evse_can_ros.ros.interfaces import (
    SAFE_TO_UNPLUG_PERIOD,
    SERVER,
    message_of,
    publications,
    subscriptions,
)
from evse_can_ros.ros.params import declare_config, declare_interface

GOAL_FIELDS = (
    "target_soc",
    "max_energy",
    "max_duration",
    "plug_in_timeout",
    "max_voltage",
    "max_current",
    "max_power",
    "max_discharge_current",
    "min_soc",
    "authorise_start",
    "accept_ccs_authorisation",
    "press_chademo_start",
)
STEP_PERIOD = 0.1


class ChargeServerNode(Node):
    """See module docstring."""

    def __init__(self, node_name: str = "charge_server", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        try:
            config = declare_config(self, SessionConfig)
            self.version = declare_interface(self)
            self.pistol_index = int(self.declare_parameter("pistol_index", 1).value)
        except ConfigError as exc:
            raise NodeConfigError(str(exc)) from None
        self._lock = threading.Lock()
        self.server = ChargeServer(config, self.pistol_index, self.version)
        self._operating_point: float | None = math.inf  # inf: never published
        self._done: Future | None = None
        self._handle: ServerGoalHandle | None = None
        self._unplug_sent = -math.inf

        self.guard = Guard(self, lambda where, exc: None)  # not a safety path: count and log
        pubs = {
            t.name: self.create_publisher(t.ros_type, t.name, t.qos) for t in publications(SERVER)
        }
        self.pub_availability = pubs["charger_availability"]
        self.pub_unplug = pubs["safe_to_unplug"]
        self.pub_operating_point = pubs["operating_point"]
        handlers = {
            "controller_state": self._on_state,
            "sequence_control": self._on_flags,
            "power_modules_status": self._on_power,
            "converter_status": self._on_converter,
        }
        for topic in subscriptions(SERVER):
            cls = message_of(topic, self.version)
            if cls is not None:
                callback = lambda m, cls=cls: self._on_message(m, cls)  # noqa: E731
            elif topic.messages:
                continue  # a message of the other interface version
            else:
                callback = handlers[topic.name]
            self.create_subscription(
                topic.ros_type, topic.name, self.guard.wrap(topic.name, callback), topic.qos
            )
        self.clients_of: dict[type, Any] = {
            SetStartAuthorisation: self.create_client(SetBool, "set_start_authorisation"),
            SetCcsAuthorisation: self.create_client(SetBool, "set_ccs_authorisation"),
            SetLimits: self.create_client(srv.SetPowerLimits, "set_power_limits"),
            PressUserStop: self.create_client(Trigger, "press_user_stop"),
            PressChademoStart: self.create_client(Trigger, "press_chademo_start"),
        }
        self.action = ActionServer(
            self,
            Charge,
            "charge",
            self._execute,
            goal_callback=lambda _: GoalResponse.ACCEPT,
            cancel_callback=self._on_cancel,
        )
        self.create_timer(STEP_PERIOD, self.guard.wrap_timer("step", self._step))
        self._publish_depot(self.server.depot(), force=True)
        self._servers_seen = 1
        self.create_timer(2.0, self._check_single_server)

    # --- inputs -------------------------------------------------------------------------------

    def _on_state(self, m: ros.ControllerState) -> None:
        state = ControllerState(m.state) if m.heartbeat_seen else None
        with self._lock:
            self.server.on_controller(time.monotonic(), state, bool(m.alive), m.reason)

    def _on_message(self, m: Any, cls: Any) -> None:
        message = conv.from_ros(m, cls)
        with self._lock:
            self.server.on_message(time.monotonic(), message)

    def _on_flags(self, m: ros.SequenceControl) -> None:
        with self._lock:
            self.server.on_flags(bool(m.start_charge_authorisation))

    def _on_power(self, m: ros.PowerModulesStatus) -> None:
        with self._lock:
            self.server.on_power(
                time.monotonic(), float(m.present_voltage), float(m.present_current)
            )

    def _on_converter(self, m: ros.ConverterStatus) -> None:
        try:
            kind = FaultKind(m.fault_kind or "none")
        except ValueError:
            kind = FaultKind.CONVERTER  # an unknown kind from a newer driver: the power side's
        with self._lock:
            self.server.on_converter_fault(time.monotonic(), kind, m.fault)

    # --- goals --------------------------------------------------------------------------------

    async def _execute(self, goal_handle: ServerGoalHandle) -> Charge.Result:
        g = goal_handle.request
        gid = uuid.UUID(bytes=bytes(goal_handle.goal_id.uuid)).hex[:8]
        values = {f: getattr(g, f) for f in GOAL_FIELDS}
        with self._lock:
            decision = self.server.submit_goal(time.monotonic(), gid, values)
            if decision.accepted:
                self._handle = goal_handle
                self._done = Future()
                done = self._done
        if not decision.accepted:
            assert decision.result is not None
            self.get_logger().warning(f"goal {gid} refused: {decision.result.error_msg}")
            goal_handle.abort()
            return _result_msg(decision.result)
        self.get_logger().info(f"goal {gid} accepted: {values}")
        result: Result = await done
        with self._lock:
            self._done, self._handle = None, None
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
        return _result_msg(result)

    def _on_cancel(self, goal_handle: ServerGoalHandle) -> CancelResponse:
        with self._lock:
            if not self.server.cancel(time.monotonic()):
                return CancelResponse.REJECT
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
        with self._lock:
            out = self.server.step(now)
            done, handle = self._done, self._handle
        for command in out.commands:
            self._call(command)
        if out.feedback is not None and handle is not None and handle.is_active:
            handle.publish_feedback(_feedback_msg(out.feedback))
        if out.result is not None and done is not None and not done.done():
            done.set_result(out.result)
        self._publish_depot(out.depot, force=out.depot_changed)
        if out.operating_point != self._operating_point:
            self._operating_point = out.operating_point
            point = math.nan if out.operating_point is None else out.operating_point
            self.pub_operating_point.publish(Float64(data=point))

    def _call(self, command: Command) -> None:
        client = self.clients_of[type(command)]
        if not client.service_is_ready():
            with self._lock:
                self.server.command_result(
                    time.monotonic(), command, False, f"service {client.srv_name} not available"
                )
            return
        future = client.call_async(_request(command))

        def done(f: Future) -> None:
            response = f.result()
            ok = response is not None and bool(response.success)
            text = response.message if response is not None else "no response"
            with self._lock:
                self.server.command_result(time.monotonic(), command, ok, text)

        future.add_done_callback(done)
        return True

    def _publish_depot(self, depot: DepotState, force: bool = False) -> None:
        stamp = self.get_clock().now().to_msg()
        if force:
            msg = ros.ChargerAvailability(
                pistol_index=self.pistol_index,
                availability=int(depot.availability),
                availability_name=depot.availability.name.lower(),
                goal_active=depot.goal_active,
            )
            msg.header.stamp = stamp
            self.pub_availability.publish(msg)
        now = time.monotonic()
        if force or now - self._unplug_sent >= SAFE_TO_UNPLUG_PERIOD:
            self._unplug_sent = now
            unplug = ros.SafeToUnplug(
                pistol_index=self.pistol_index,
                safe=depot.safe_to_unplug,
                reason=depot.reason,
                output_voltage=float(depot.output_voltage),
            )
            unplug.header.stamp = stamp
            self.pub_unplug.publish(unplug)


def _request(command: Command) -> Any:
    if isinstance(command, SetStartAuthorisation):
        return SetBool.Request(data=command.allowed)
    if isinstance(command, SetCcsAuthorisation):
        return SetBool.Request(data=command.valid)
    if isinstance(command, SetLimits):
        return srv.SetPowerLimits.Request(
            maximum_voltage=command.maximum_voltage,
            maximum_current=command.maximum_current,
            charge_parameters_done=command.charge_parameters_done,
            maximum_power=command.maximum_power,
            maximum_discharge_current=command.maximum_discharge_current,
        )
    return Trigger.Request()


def _result_msg(result: Result) -> Charge.Result:
    return Charge.Result(
        error_code=int(result.error_code),
        error_msg=result.error_msg,
        outcome=int(result.outcome),
        energy_delivered=result.energy_delivered,
        energy_exported=result.energy_exported,
        duration=result.duration,
        initial_soc=result.initial_soc,
        final_soc=result.final_soc,
        session_end_state=result.session_end_state,
        safe_to_unplug=result.safe_to_unplug,
    )


def _feedback_msg(f: Feedback) -> Charge.Feedback:
    return Charge.Feedback(
        stage=int(f.stage),
        stage_name=f.stage.name.lower(),
        controller_state=f.controller_state,
        controller_state_name=f.controller_state_name,
        protocol=f.protocol,
        present_voltage=f.present_voltage,
        present_current=f.present_current,
        present_power=f.present_power,
        energy_delivered=f.energy_delivered,
        energy_exported=f.energy_exported,
        soc=f.soc,
        ev_maximum_voltage=f.ev_maximum_voltage,
        ev_maximum_current=f.ev_maximum_current,
        elapsed=f.elapsed,
    )


def main(args: list[str] | None = None) -> int:
    """Run the charge_server node; exit code 2 with a one-line error for bad parameters."""
    from evse_can_ros.ros.node_main import run_node

    return run_node(ChargeServerNode, "charge_server", args)
