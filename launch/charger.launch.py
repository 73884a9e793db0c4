"""Start the charger: ``ros2 launch evse_can_ros charger.launch.py [argument:=value ...]``.

The node set comes from :func:`evse_can_ros.nodeset.node_set`, the single source of truth that
``evse-can-ros run`` uses too; this file only turns it into one process per node. Arguments:
``ros2 launch evse_can_ros charger.launch.py --show-args``.

Composable: namespaces are relative (``evse/pistol1``), so a parent launch file places the
charger with ``PushRosNamespace`` / ``GroupAction`` (``/site_a/evse/pistol1``); an absolute
``namespace:=/evse`` pins it. The converter driver is a ``LifecycleNode``: with
``auto_activate:=true`` (default) this file configures and activates it through lifecycle events
(``ChangeState`` on process start, ``activate`` once it is inactive after configuring); with
``auto_activate:=false`` it stays unconfigured, output off, for a lifecycle manager or
``ros2 lifecycle set``. Log levels: ``log_level`` for every node, ``<node>_log_level`` for one.

Process layout: one process per node and pistol. Each ``can_bridge`` process opens its own CAN
socket, filtered (by the kernel on SocketCAN) to its pistol index, so it never wakes for the
frames of the other pistols on the bus. ``evse-can-ros run --pistols ...`` runs the same nodes
in one process, where the bridges of one bus share one link (one socket, one receive and one
transmit thread): cheaper for many pistols (docs/performance.md, capacity table).

Examples::

    ros2 launch evse_can_ros charger.launch.py can_channel:=can0
    ros2 launch evse_can_ros charger.launch.py sim:=true can_channel:=vcan0
    ros2 launch evse_can_ros charger.launch.py pistols:=1,2 can_bridge_log_level:=debug \\
        params_file:=$(ros2 pkg prefix evse_can_ros)/share/evse_can_ros/config/charger.yaml
"""

from __future__ import annotations

from typing import Any

from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    LogInfo,
    OpaqueFunction,
    RegisterEventHandler,
)
from launch.event_handlers import OnProcessStart
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

from evse_can_ros.nodeset import (
    LAUNCH_ARGUMENTS,
    launch_namespace,
    node_set,
    options_from_arguments,
)

LIFECYCLE_EXECUTABLES = ("converter_driver",)


def nodes_for(context: Any) -> list[Any]:
    """Evaluate the launch arguments; return the node actions (+ lifecycle event handlers).

    A bad argument raises NodeSetError: launch reports its one-line message and exits 1.
    """
    values = {name: LaunchConfiguration(name).perform(context) for name, _, _ in LAUNCH_ARGUMENTS}
    options = options_from_arguments(values)
    params_file = [options.params_file] if options.params_file else []
    launch_activates = options.auto_activate is not False
    actions: list[Any] = []
    for spec in node_set(options):
        parameters = dict(spec.parameters)
        lifecycle = spec.executable in LIFECYCLE_EXECUTABLES
        if lifecycle:
            parameters["auto_activate"] = False  # activation is the launch file's job
        node = (LifecycleNode if lifecycle else Node)(
            package="evse_can_ros",
            executable=spec.executable,
            name=spec.name,
            namespace=launch_namespace(spec, options),
            parameters=[*params_file, parameters],
            arguments=["--ros-args", "--log-level", spec.log_level],
            output="screen",
            emulate_tty=True,
        )
        actions.append(node)
        if lifecycle and launch_activates:
            actions += lifecycle_activation(node, spec.executable)
    return actions


def lifecycle_activation(node: Any, label: str) -> list[Any]:
    """Configure ``node`` when its process starts, activate it once configured.

    Only the configuring -> inactive transition triggers activation: a later deactivate (a
    lifecycle manager, ``ros2 lifecycle set ... deactivate``) is left alone.
    """

    def change(transition_id: int) -> EmitEvent:
        return EmitEvent(
            event=ChangeState(
                lifecycle_node_matcher=matches_action(node), transition_id=transition_id
            )
        )

    confirm = OpaqueFunction(function=confirm_activation, args=[node, label])
    return [
        RegisterEventHandler(
            OnProcessStart(
                target_action=node, on_start=[change(Transition.TRANSITION_CONFIGURE), confirm]
            )
        ),
        RegisterEventHandler(
            OnStateTransition(
                target_lifecycle_node=node,
                start_state="configuring",
                goal_state="inactive",
                entities=[change(Transition.TRANSITION_ACTIVATE)],
            )
        ),
        RegisterEventHandler(
            OnStateTransition(
                target_lifecycle_node=node,
                start_state="configuring",
                goal_state="unconfigured",
                entities=[
                    LogInfo(msg=f"{label}: configure failed, output stays off (see its log)")
                ],
            )
        ),
    ]


ACTIVATION_GIVE_UP = 60.0  # s: the driver not active by then is reported (output stays off)
STUCK_INACTIVE = 2.0  # s inactive without the event-driven activate: activate from here


def confirm_activation(context: Any, node: Any, label: str) -> list[Any]:
    """Make sure the start-up activation happens even if launch missed the transition event.

    launch_ros learns the node's state from its ``transition_event`` topic; an event published
    before launch's subscription matched is lost (under load, seen here about once in ten
    launches; ros2/rcl#1166), and the driver would stay inactive, output off, for good. A
    thread polls the node's ``get_state`` service (a request, not a topic: nothing is lost)
    until it is active: inactive for ``STUCK_INACTIVE`` s means the event was missed, and it
    emits the same ``ChangeState`` activate. It stops once the node was active (a later
    deactivate is left alone), when launch shuts down, or after ``ACTIVATION_GIVE_UP`` s.
    """
    import threading
    import time

    from launch.logging import get_logger
    from launch_ros.ros_adapters import get_ros_node
    from lifecycle_msgs.msg import State
    from lifecycle_msgs.srv import GetState

    client = get_ros_node(context).create_client(GetState, f"{node.node_name}/get_state")
    activate = ChangeState(
        lifecycle_node_matcher=matches_action(node), transition_id=Transition.TRANSITION_ACTIVATE
    )

    def state() -> int | None:
        if not client.wait_for_service(timeout_sec=1.0):
            return None
        done = threading.Event()
        future = client.call_async(GetState.Request())
        future.add_done_callback(lambda _: done.set())
        if not done.wait(2.0) or future.exception() is not None:
            future.cancel()
            return None
        return int(future.result().current_state.id)

    def watch() -> None:
        deadline = time.monotonic() + ACTIVATION_GIVE_UP
        inactive_since = None
        while not context.is_shutdown and time.monotonic() < deadline:
            current = state()
            if current in (State.PRIMARY_STATE_ACTIVE, State.PRIMARY_STATE_FINALIZED):
                return
            now = time.monotonic()
            inactive_since = (
                (inactive_since or now) if current == State.PRIMARY_STATE_INACTIVE else None
            )
            if inactive_since is not None and now - inactive_since >= STUCK_INACTIVE:
                inactive_since = None  # one activate per stuck period
                context.asyncio_loop.call_soon_threadsafe(context.emit_event_sync, activate)
            time.sleep(0.2)
        if not context.is_shutdown:
            get_logger("launch").error(
                f"{label} {node.node_name}: not active after {ACTIVATION_GIVE_UP:g} s "
                "(output stays off; see its log)"
            )

    threading.Thread(target=watch, name=f"activate {node.node_name}", daemon=True).start()
    return []


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments; the nodes are created once the arguments are known."""
    return LaunchDescription(
        [
            DeclareLaunchArgument(name, default_value=default, description=description)
            for name, default, description in LAUNCH_ARGUMENTS
        ]
        + [OpaqueFunction(function=nodes_for)]
    )
