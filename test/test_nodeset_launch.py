"""The charger's node set (single source of truth) and the launch file built from it."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from evse_can_ros.nodeset import (
    EXECUTABLES,
    LAUNCH_ARGUMENTS,
    ChargerOptions,
    NodeSetError,
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
    assert options.can_interface is None and options.auto_activate is None
    with pytest.raises(NodeSetError, match="can_bitrate"):
        options_from_arguments({"can_bitrate": "fast"})
    with pytest.raises(NodeSetError, match="true or false"):
        options_from_arguments({"sim": "maybe"})


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
    """Stand-in for a launch action class: records its keyword arguments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs


class _LaunchConfiguration:
    def __init__(self, name: str) -> None:
        self.name = name

    def perform(self, context: dict[str, str]) -> str:
        return context[self.name]


def _fake_launch_modules() -> dict[str, types.ModuleType]:
    launch = types.ModuleType("launch")
    launch.LaunchDescription = list  # type: ignore[attr-defined]
    actions = types.ModuleType("launch.actions")
    actions.DeclareLaunchArgument = _Recorder  # type: ignore[attr-defined]
    actions.OpaqueFunction = _Recorder  # type: ignore[attr-defined]
    substitutions = types.ModuleType("launch.substitutions")
    substitutions.LaunchConfiguration = _LaunchConfiguration  # type: ignore[attr-defined]
    launch_ros = types.ModuleType("launch_ros")
    ros_actions = types.ModuleType("launch_ros.actions")
    ros_actions.Node = _Recorder  # type: ignore[attr-defined]
    return {
        "launch": launch,
        "launch.actions": actions,
        "launch.substitutions": substitutions,
        "launch_ros": launch_ros,
        "launch_ros.actions": ros_actions,
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
    nodes = opaque.kwargs["function"](context)
    options = options_from_arguments(context)
    expected = node_set(options)
    assert [(n.kwargs["executable"], n.kwargs["name"], n.kwargs["namespace"]) for n in nodes] == [
        (s.executable, s.name, s.namespace) for s in expected
    ]
    for node, spec in zip(nodes, expected, strict=True):
        assert node.kwargs["package"] == "evse_can_ros"
        params = node.kwargs["parameters"]
        assert params[-1] == spec.parameters  # overrides last: they win over the file
        assert params[:-1] == ([arguments["params_file"]] if "params_file" in arguments else [])
        assert node.kwargs["arguments"] == ["--ros-args", "--log-level", options.log_level]


@pytest.mark.skipif(not _launch_ros_available(), reason="launch_ros not installed (PyPI ROS)")
def test_launch_description_builds_with_launch_ros(monkeypatch: pytest.MonkeyPatch) -> None:
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument

    launch = _load_launch_file(monkeypatch, fake=False)
    description = launch.generate_launch_description()
    context = LaunchContext()
    for entity in description.entities:
        if isinstance(entity, DeclareLaunchArgument):
            context.launch_configurations[entity.name] = entity.default_value[0].text
    context.launch_configurations["sim"] = "true"
    nodes = launch.nodes_for(context)
    assert len(nodes) == len(node_set(ChargerOptions(sim=True)))
