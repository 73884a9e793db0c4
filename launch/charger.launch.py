"""Start the charger: ``ros2 launch evse_can_ros charger.launch.py [argument:=value ...]``.

The node set comes from :func:`evse_can_ros.nodeset.node_set`, the single source of truth that
``evse-can-ros run`` uses too; this file only turns it into one process per node. Arguments
(``ros2 launch evse_can_ros charger.launch.py --show-args``): namespace, pistol_index (one or
several: ``1,2``), can_interface, can_channel, can_bitrate, params_file, converter_backend, sim,
auto_activate, log_level.

Examples::

    ros2 launch evse_can_ros charger.launch.py can_channel:=can0
    ros2 launch evse_can_ros charger.launch.py sim:=true can_channel:=vcan0
    ros2 launch evse_can_ros charger.launch.py pistol_index:=1,2 \\
        params_file:=$(ros2 pkg prefix evse_can_ros)/share/evse_can_ros/config/charger.yaml
"""

from __future__ import annotations

from typing import Any

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from evse_can_ros.nodeset import LAUNCH_ARGUMENTS, node_set, options_from_arguments


def nodes_for(context: Any) -> list[Node]:
    """Evaluate the launch arguments and return one Node action per node of the set."""
    values = {name: LaunchConfiguration(name).perform(context) for name, _, _ in LAUNCH_ARGUMENTS}
    options = options_from_arguments(values)
    params_file = [options.params_file] if options.params_file else []
    return [
        Node(
            package="evse_can_ros",
            executable=spec.executable,
            name=spec.name,
            namespace=spec.namespace,
            parameters=[*params_file, spec.parameters],
            arguments=["--ros-args", "--log-level", options.log_level],
            output="screen",
            emulate_tty=True,
        )
        for spec in node_set(options)
    ]


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments; the nodes are created once the arguments are known."""
    return LaunchDescription(
        [
            DeclareLaunchArgument(name, default_value=default, description=description)
            for name, default, description in LAUNCH_ARGUMENTS
        ]
        + [OpaqueFunction(function=nodes_for)]
    )
