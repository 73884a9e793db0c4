"""The charger's node set (single source of truth) and the launch file built from it."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any

import pytest

from evse_can_ros.nodeset import (
    EXECUTABLES,
    LAUNCH_ARGUMENTS,
    ChargerOptions,
    NodeSetError,
    launch_namespace,
    node_set,
    options_from_arguments,
    parse_pistols,
)

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / "launch" / "charger.launch.py"


def test_one_pistol_has_bridge_converter_and_charge_server() -> None:
    specs = node_set(ChargerOptions())
    assert [(s.executable, s.namespace) for s in specs] == [
        ("can_bridge", "/evse/pistol1"),
        ("converter_driver", "/evse/pistol1"),
        ("charge_server", "/evse/pistol1"),
    ]
    bridge = specs[0]
    assert bridge.parameters == {"pistol_index": 1}  # nothing else forced: params file decides


def test_sim_and_several_pistols() -> None:
    options = ChargerOptions(
        namespace="/depot/",
        pistols=(1, 2),
        can_interface="virtual",
        can_channel="bus",
        sim=True,
        converter_backend="simulated",
        auto_activate=False,
    )
    specs = node_set(options)
    assert len(specs) == 8
    assert {s.namespace for s in specs} == {"/depot/pistol1", "/depot/pistol2"}
    sims = [s for s in specs if s.executable == "controller_simulator"]
    assert [s.parameters["pistol_index"] for s in sims] == [1, 2]
    assert all(s.parameters["can_channel"] == "bus" for s in sims)
    conv = next(s for s in specs if s.executable == "converter_driver")
    assert conv.parameters == {"converter_backend": "simulated", "auto_activate": False}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pistols": ()}, "at least one"),
        ({"pistols": (0,)}, "out of range"),
        ({"pistols": (32,)}, "out of range"),
        ({"pistols": (1, 1)}, "repeat"),
        ({"log_level": "loud"}, "log level"),
        ({"node_log_levels": {"can_bridge": "loud"}}, "log level 'loud'"),
        ({"node_log_levels": {"bridge": "debug"}}, "unknown node 'bridge'"),
        ({"can_bitrate": -1}, "bitrate"),
    ],
)
def test_bad_options_are_one_line_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(NodeSetError, match=message):
        ChargerOptions(**kwargs)


def test_pistol_lists() -> None:
    assert parse_pistols("1") == (1,)
    assert parse_pistols("1, 3") == (1, 3)
    assert parse_pistols("2-4") == (2, 3, 4)
    with pytest.raises(NodeSetError, match="pistols must look like"):
        parse_pistols("one")


def test_launch_arguments_parse_like_the_cli() -> None:
    options = options_from_arguments(
        {"pistol_index": "1,2", "sim": "true", "can_bitrate": "250000"}
    )
    assert options.pistols == (1, 2) and options.sim and options.can_bitrate == 250000
    assert options.can_interface is None
    assert options.auto_activate is True  # launch activates the driver unless told not to
    assert options_from_arguments({"auto_activate": "false"}).auto_activate is False
    with pytest.raises(NodeSetError, match="can_bitrate"):
        options_from_arguments({"can_bitrate": "fast"})
    with pytest.raises(NodeSetError, match="true or false"):
        options_from_arguments({"sim": "maybe"})


def test_per_node_log_levels() -> None:
    options = options_from_arguments({"log_level": "warn", "can_bridge_log_level": "debug"})
    assert options.node_log_levels == {"can_bridge": "debug"}
    levels = {s.executable: s.log_level for s in node_set(options)}
    assert levels == {
        "can_bridge": "debug",
        "converter_driver": "warn",
        "charge_server": "warn",
    }
    names = {name for name, _, _ in LAUNCH_ARGUMENTS}
    assert {f"{e}_log_level" for e in EXECUTABLES} <= names


def test_launch_namespaces_are_relative_unless_asked_absolute() -> None:
    relative = ChargerOptions(pistols=(2,))
    spec = node_set(relative)[0]
    assert spec.namespace == "/evse/pistol2"  # evse-can-ros run: absolute
    assert launch_namespace(spec, relative) == "evse/pistol2"  # a parent may push a namespace
    absolute = ChargerOptions(namespace="/depot", pistols=(2,))
    assert launch_namespace(node_set(absolute)[0], absolute) == "/depot/pistol2"


def test_every_executable_is_installed_and_importable() -> None:
    for executable, factory in EXECUTABLES.items():
        program = REPO / "bin" / "nodes" / executable
        assert program.is_file(), f"bin/nodes/{executable} missing"
        assert program.stat().st_mode & 0o111, f"bin/nodes/{executable} not executable"
        module, _, name = factory.partition(":")
        assert "main" in program.read_text()
        assert hasattr(importlib.import_module(module), name), factory


# --- the launch file ------------------------------------------------------------------------


class _Recorder:
    """Stand-in for a launch action class: records its arguments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs


class _Node(_Recorder):
    pass


class _LifecycleNode(_Recorder):
    pass


class _LaunchConfiguration:
    def __init__(self, name: str) -> None:
        self.name = name

    def perform(self, context: dict[str, str]) -> str:
        return context[self.name]


def _module(name: str, **attributes: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    for key, value in attributes.items():
        setattr(module, key, value)
    return module


def _fake_launch_modules() -> dict[str, types.ModuleType]:
    transition = types.SimpleNamespace(TRANSITION_CONFIGURE=1, TRANSITION_ACTIVATE=3)
    return {
        "launch": _module("launch", LaunchDescription=list),
        "launch.actions": _module(
            "launch.actions",
            DeclareLaunchArgument=_Recorder,
            EmitEvent=_Recorder,
            LogInfo=_Recorder,
            OpaqueFunction=_Recorder,
            RegisterEventHandler=_Recorder,
        ),
        "launch.event_handlers": _module("launch.event_handlers", OnProcessStart=_Recorder),
        "launch.events": _module("launch.events", matches_action=lambda action: action),
        "launch.substitutions": _module(
            "launch.substitutions", LaunchConfiguration=_LaunchConfiguration
        ),
        "launch_ros": _module("launch_ros"),
        "launch_ros.actions": _module(
            "launch_ros.actions", Node=_Node, LifecycleNode=_LifecycleNode
        ),
        "launch_ros.event_handlers": _module(
            "launch_ros.event_handlers", OnStateTransition=_Recorder
        ),
        "launch_ros.events": _module("launch_ros.events"),
        "launch_ros.events.lifecycle": _module(
            "launch_ros.events.lifecycle", ChangeState=_Recorder
        ),
        "lifecycle_msgs": _module("lifecycle_msgs"),
        "lifecycle_msgs.msg": _module("lifecycle_msgs.msg", Transition=transition),
    }


def _load_launch_file(monkeypatch: pytest.MonkeyPatch, fake: bool) -> types.ModuleType:
    if fake:
        for name, module in _fake_launch_modules().items():
            monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("charger_launch", LAUNCH_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _launch_ros_available() -> bool:
    try:
        import launch_ros  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize(
    "arguments",
    [
        {},
        {"sim": "true", "pistol_index": "1-2", "can_interface": "virtual", "can_channel": "x"},
        {"params_file": "/tmp/p.yaml", "converter_backend": "simulated", "log_level": "debug"},
        {"auto_activate": "false", "namespace": "/depot", "charge_server_log_level": "error"},
    ],
)
def test_launch_file_starts_exactly_the_node_set(
    monkeypatch: pytest.MonkeyPatch, arguments: dict[str, str]
) -> None:
    launch = _load_launch_file(monkeypatch, fake=True)
    description = launch.generate_launch_description()
    declared = {a.args[0]: a.kwargs["default_value"] for a in description[:-1]}
    assert declared == {name: default for name, default, _ in LAUNCH_ARGUMENTS}
    # the launch system fills every declared argument, defaults first
    context = {**declared, **arguments}
    opaque = description[-1]
    actions = opaque.kwargs["function"](context)
    nodes = [a for a in actions if isinstance(a, (_Node, _LifecycleNode))]
    handlers = [a for a in actions if not isinstance(a, (_Node, _LifecycleNode))]
    options = options_from_arguments(context)
    expected = node_set(options)
    assert [(n.kwargs["executable"], n.kwargs["name"], n.kwargs["namespace"]) for n in nodes] == [
        (s.executable, s.name, launch_namespace(s, options)) for s in expected
    ]
    for node, spec in zip(nodes, expected, strict=True):
        assert node.kwargs["package"] == "evse_can_ros"
        params = node.kwargs["parameters"]
        assert params[:-1] == ([arguments["params_file"]] if "params_file" in arguments else [])
        assert node.kwargs["arguments"] == ["--ros-args", "--log-level", spec.log_level]
        if spec.executable == "converter_driver":
            # a lifecycle node that the launch file (or a lifecycle manager) activates
            assert isinstance(node, _LifecycleNode)
            assert params[-1] == {**spec.parameters, "auto_activate": False}
        else:
            assert isinstance(node, _Node)
            assert params[-1] == spec.parameters  # overrides last: they win over the file
    drivers = sum(s.executable == "converter_driver" for s in expected)
    # per driver: configure on process start, activate once configured, report a failure
    assert len(handlers) == (0 if arguments.get("auto_activate") == "false" else 3 * drivers)


@pytest.mark.skipif(not _launch_ros_available(), reason="launch_ros not installed (PyPI ROS)")
def test_launch_description_builds_with_launch_ros(monkeypatch: pytest.MonkeyPatch) -> None:
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, RegisterEventHandler
    from launch_ros.actions import LifecycleNode

    launch = _load_launch_file(monkeypatch, fake=False)
    description = launch.generate_launch_description()
    context = LaunchContext()
    for entity in description.entities:
        if isinstance(entity, DeclareLaunchArgument):
            context.launch_configurations[entity.name] = entity.default_value[0].text
    context.launch_configurations["sim"] = "true"
    actions = launch.nodes_for(context)
    nodes = [a for a in actions if not isinstance(a, RegisterEventHandler)]
    assert len(nodes) == len(node_set(ChargerOptions(sim=True)))
    assert sum(isinstance(n, LifecycleNode) for n in nodes) == 1
    assert len(actions) - len(nodes) == 3


def test_protocol_version_reaches_every_node_and_pistols_is_the_argument_name() -> None:
    options = options_from_arguments({"pistols": "1-2", "sim": "true", "protocol_version": "3"})
    specs = node_set(options)
    assert options.pistols == (1, 2) and len(specs) == 8
    assert all(s.parameters["protocol_version"] == 3 for s in specs)
    assert "protocol_version" not in node_set(options_from_arguments({}))[0].parameters
    with pytest.raises(NodeSetError, match="protocol_version must be 2 or 3"):
        options_from_arguments({"protocol_version": "4"})
    with pytest.raises(NodeSetError, match="protocol_version must be 2 or 3"):
        options_from_arguments({"protocol_version": "three"})


@pytest.mark.skipif(not _launch_ros_available(), reason="launch_ros not installed")
def test_a_missed_transition_event_still_activates_the_driver(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """launch_ros can miss the configuring -> inactive event (ros2/rcl#1166): the launch file
    sees the driver stuck inactive through get_state and emits the activate itself, once."""
    import launch_ros.ros_adapters
    from lifecycle_msgs.msg import State
    from lifecycle_msgs.srv import GetState
    from rclpy.task import Future

    launch = _load_launch_file(monkeypatch, fake=False)
    monkeypatch.setattr(launch, "STUCK_INACTIVE", 0.3)
    current = [State.PRIMARY_STATE_UNCONFIGURED, State.PRIMARY_STATE_INACTIVE]  # configured
    emitted: list[Any] = []
    asked = threading.Event()

    class Client:
        def wait_for_service(self, timeout_sec: float) -> bool:
            return True

        def call_async(self, request: Any) -> Future:
            future = Future()
            future.set_result(GetState.Response(current_state=State(id=current[-1])))
            asked.set()
            return future

    class Loop:
        def call_soon_threadsafe(self, function: Any, event: Any) -> None:
            emitted.append(event)
            current.append(State.PRIMARY_STATE_ACTIVE)  # the activate goes through

    context = types.SimpleNamespace(is_shutdown=False, asyncio_loop=Loop())
    context.emit_event_sync = lambda event: None
    ros_node = types.SimpleNamespace(create_client=lambda srv_type, name: Client())
    monkeypatch.setattr(launch_ros.ros_adapters, "get_ros_node", lambda context: ros_node)
    node = types.SimpleNamespace(node_name="/evse/pistol1/converter_driver")
    assert launch.confirm_activation(context, node, "converter_driver") == []
    assert asked.wait(5.0)
    deadline = time.monotonic() + 5.0
    while not emitted and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.6)  # active now: no second activate
    assert len(emitted) == 1
    assert emitted[0].transition_id == 3  # TRANSITION_ACTIVATE
