"""The charger's node set: the single source of truth for launch files and ``evse-can-ros run``.

Pure Python (no rclpy, no launch): ``launch/charger.launch.py`` turns :func:`node_set` into
``launch_ros`` Node actions (one process per node), ``evse-can-ros run`` / ``sim`` instantiate the
same nodes with the same parameters in one process (:mod:`evse_can_ros.ros.charger`).

Per pistol, in namespace ``/<namespace>/pistol<index>``:

* ``can_bridge`` (executable ``can_bridge``): owns the bus for that pistol index;
* ``converter_driver``: runs the power modules (``converter_backend``, simulated by default);
* ``charge_server``: the ``charge`` action, ``charger_availability``, ``safe_to_unplug``;
* with ``sim``: ``controller_simulator``, the Advantics controller and a vehicle on the same bus.

Parameters given here override a params file (like ``parameters=[params_file, overrides]`` in a
launch file); options left at ``None`` are not set here, so the params file or the node default
decides.

Namespaces: ``evse-can-ros run`` uses the absolute ``/<namespace>/pistol<N>``; the launch file uses
:func:`launch_namespace`, relative unless the namespace option starts with ``/``, so that a parent
launch file (``PushRosNamespace``, ``GroupAction``) can place the charger, e.g. under
``/site_a/evse/pistol1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_NAMESPACE = "evse"
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")


def pistol_namespace(namespace: str, index: int) -> str:
    """Return the absolute namespace of one pistol, e.g. ``/evse/pistol1``."""
    ns = namespace.strip("/")
    return f"/{ns}/pistol{index}" if ns else f"/pistol{index}"


DEFAULT_PISTOL_NAMESPACE = pistol_namespace(DEFAULT_NAMESPACE, 1)


@dataclass(frozen=True)
class NodeSpec:
    """One node of the charger: enough to launch it or to construct it in-process."""

    executable: str  # installed under lib/evse_can_ros (ros2 run evse_can_ros <executable>)
    name: str
    namespace: str
    factory: str  # "module:Class" of the rclpy node
    parameters: dict[str, Any] = field(default_factory=dict)
    pistol_index: int = 1
    log_level: str = "info"  # of this node's process (launch file)


EXECUTABLES: dict[str, str] = {
    "can_bridge": "evse_can_ros.ros.can_bridge_node:CanBridgeNode",
    "converter_driver": "evse_can_ros.ros.converter_driver_node:ConverterDriverNode",
    "charge_server": "evse_can_ros.ros.charge_server_node:ChargeServerNode",
    "controller_simulator": "evse_can_ros.ros.controller_sim_node:ControllerSimulatorNode",
}


class NodeSetError(ValueError):
    """Invalid charger options (one-line message)."""


@dataclass(frozen=True)
class ChargerOptions:
    """What a user chooses when starting the charger (launch arguments / ``run`` options)."""

    namespace: str = DEFAULT_NAMESPACE
    pistols: tuple[int, ...] = (1,)
    can_interface: str | None = None
    can_channel: str | None = None
    can_bitrate: int | None = None
    converter_backend: str | None = None
    protocol_version: int | None = None  # None: the params file / the nodes' default (2)
    sim: bool = False
    auto_activate: bool | None = None
    params_file: str = ""
    log_level: str = "info"
    # per executable (e.g. {"can_bridge": "debug"}); the others use log_level
    node_log_levels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.pistols:
            raise NodeSetError("at least one pistol index is needed")
        for p in self.pistols:
            if not 1 <= p <= 31:
                raise NodeSetError(f"pistol index {p} out of range 1..31")
        if len(set(self.pistols)) != len(self.pistols):
            raise NodeSetError(f"pistol indices repeat: {list(self.pistols)}")
        for level in (self.log_level, *self.node_log_levels.values()):
            if level not in LOG_LEVELS:
                raise NodeSetError(f"log level {level!r} not one of {', '.join(LOG_LEVELS)}")
        for executable in self.node_log_levels:
            if executable not in EXECUTABLES:
                raise NodeSetError(
                    f"log level for unknown node {executable!r} (nodes: {', '.join(EXECUTABLES)})"
                )
        if self.protocol_version is not None and self.protocol_version not in (2, 3):
            raise NodeSetError(f"protocol_version must be 2 or 3, got {self.protocol_version}")
        if self.can_bitrate is not None and self.can_bitrate < 0:
            raise NodeSetError(f"CAN bitrate must be >= 0, got {self.can_bitrate}")


def parse_pistols(text: str) -> tuple[int, ...]:
    """Parse ``"1"``, ``"1,2,5"`` or ``"1-4"`` into pistol indices (NodeSetError if bad)."""
    out: list[int] = []
    try:
        for part in text.replace(" ", "").split(","):
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                out.extend(range(lo, hi + 1))
            elif part:
                out.append(int(part))
    except ValueError:
        raise NodeSetError(f"pistols must look like 1 or 1,2 or 1-4, got {text!r}") from None
    return tuple(out)


def parse_bool(text: str) -> bool:
    """Launch-argument style boolean (true/false/1/0/yes/no)."""
    t = text.strip().lower()
    if t in ("true", "1", "yes", "on"):
        return True
    if t in ("false", "0", "no", "off"):
        return False
    raise NodeSetError(f"expected true or false, got {text!r}")


def node_set(options: ChargerOptions) -> list[NodeSpec]:
    """Return the nodes of the charger for ``options`` (bridges first, simulators last)."""
    link: dict[str, Any] = {}
    if options.can_interface is not None:
        link["can_interface"] = options.can_interface
    if options.can_channel is not None:
        link["can_channel"] = options.can_channel
    if options.can_bitrate is not None:
        link["can_bitrate"] = options.can_bitrate
    converter: dict[str, Any] = {}
    if options.converter_backend is not None:
        converter["converter_backend"] = options.converter_backend
    if options.auto_activate is not None:
        converter["auto_activate"] = options.auto_activate

    specs: list[NodeSpec] = []
    for index in options.pistols:
        ns = pistol_namespace(options.namespace, index)
        pistol = {"pistol_index": index}
        wanted = [
            ("can_bridge", {**pistol, **link}),
            ("converter_driver", dict(converter)),
            ("charge_server", dict(pistol)),
        ]
        if options.sim:
            wanted.append(("controller_simulator", {**pistol, **link}))
        version = (
            {}
            if options.protocol_version is None
            else {"protocol_version": options.protocol_version}
        )
        for executable, own in wanted:
            params = {**own, **version}  # every node of a pistol speaks the same version
            level = options.node_log_levels.get(executable, options.log_level)
            specs.append(
                NodeSpec(executable, executable, ns, EXECUTABLES[executable], params, index, level)
            )
    return specs


def launch_namespace(spec: NodeSpec, options: ChargerOptions) -> str:
    """Namespace of ``spec`` in a launch file: relative, unless the namespace option is absolute.

    ``evse/pistol1`` lands in ``/evse/pistol1`` at top level and in ``/site_a/evse/pistol1`` under
    ``PushRosNamespace("site_a")``; ``namespace:=/evse`` pins it to ``/evse/pistol1``.
    """
    if options.namespace.startswith("/"):
        return spec.namespace
    return spec.namespace.lstrip("/")


LAUNCH_ARGUMENTS: tuple[tuple[str, str, str], ...] = (
    # (name, default, description); "" = not set: the params file or the node default decides
    (
        "namespace",
        DEFAULT_NAMESPACE,
        "pistol N runs in <namespace>/pistolN, under a pushed namespace (a leading / pins it)",
    ),
    ("pistols", "1", "pistol index, or several on one bus: 1,2 or 1-4"),
    ("pistol_index", "", "old name of pistols (kept for existing launch files)"),
    (
        "can_interface",
        "",
        "python-can interface (socketcan, virtual, pcan ...); node default socketcan",
    ),
    ("can_channel", "", "CAN channel (can0, vcan0 ...); node default can0"),
    ("can_bitrate", "", "bit/s; empty = params file / interface default"),
    ("params_file", "", "ROS 2 parameters YAML given to every node (overridden by the arguments)"),
    ("converter_backend", "", "power-module backend; node default simulated"),
    ("protocol_version", "", "Generic EVSE CAN interface 2 or 3; empty = params file / 2"),
    ("sim", "false", "add the controller + vehicle simulator (one per pistol)"),
    (
        "auto_activate",
        "true",
        "true: launch configures and activates the converter driver (lifecycle events); "
        "false: it stays unconfigured for a lifecycle manager",
    ),
    ("log_level", "info", "debug, info, warn, error or fatal (every node)"),
    *(
        (f"{executable}_log_level", "", f"log level of {executable}; empty = log_level")
        for executable in EXECUTABLES
    ),
)


def options_from_arguments(values: dict[str, str]) -> ChargerOptions:
    """Build ChargerOptions from launch-argument strings (NodeSetError if one is bad)."""
    v = {name: values.get(name, default).strip() for name, default, _ in LAUNCH_ARGUMENTS}
    try:
        bitrate = int(v["can_bitrate"]) if v["can_bitrate"] else None
    except ValueError:
        raise NodeSetError(f"can_bitrate must be an integer, got {v['can_bitrate']!r}") from None
    try:
        version = int(v["protocol_version"]) if v["protocol_version"] else None
    except ValueError:
        raise NodeSetError(
            f"protocol_version must be 2 or 3, got {v['protocol_version']!r}"
        ) from None
    return ChargerOptions(
        namespace=v["namespace"],
        pistols=parse_pistols(v["pistol_index"] or v["pistols"]),
        can_interface=v["can_interface"] or None,
        can_channel=v["can_channel"] or None,
        can_bitrate=bitrate,
        converter_backend=v["converter_backend"] or None,
        protocol_version=version,
        sim=parse_bool(v["sim"]),
        auto_activate=parse_bool(v["auto_activate"]) if v["auto_activate"] else None,
        params_file=v["params_file"],
        log_level=v["log_level"],
        node_log_levels={
            executable: v[f"{executable}_log_level"]
            for executable in EXECUTABLES
            if v[f"{executable}_log_level"]
        },
    )
