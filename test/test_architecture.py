"""Architecture rules that a reviewer would otherwise have to remember."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import evse_can_ros

PACKAGE = Path(evse_can_ros.__file__).resolve().parent
ROS_GLUE = PACKAGE / "ros"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):  # also imports inside functions
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def python_files() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts]


def test_only_the_ros_package_imports_rclpy() -> None:
    offenders = []
    for path in python_files():
        if ROS_GLUE in path.resolve().parents:
            continue
        ros_imports = {
            m
            for m in imported_modules(path)
            if m.split(".")[0] in {"rclpy", "launch", "launch_ros", "rosidl_runtime_py"}
            or m.startswith(("evse_can_ros.msg", "evse_can_ros.srv", "evse_can_ros.action"))
        }
        if ros_imports:
            offenders.append(f"{path.relative_to(PACKAGE)}: {sorted(ros_imports)}")
    assert not offenders, "ROS imports outside evse_can_ros/ros/:\n" + "\n".join(offenders)
    assert len(python_files()) > 5  # the scan really looked at the package


def test_pure_packages_import_without_rclpy() -> None:
    code = (
        "import sys, importlib, pkgutil, evse_can_ros\n"
        "pure = ['protocol', 'core', 'converter', 'transport', 'tools']\n"
        "for sub in pure:\n"
        "    try:\n"
        "        pkg = importlib.import_module('evse_can_ros.' + sub)\n"
        "    except ModuleNotFoundError:\n"
        "        continue\n"
        "    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'rclpy')\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_ros_glue_is_where_rclpy_is_used() -> None:
    users = [
        p
        for p in python_files()
        if ROS_GLUE in p.resolve().parents
        and any(m.split(".")[0] == "rclpy" for m in imported_modules(p))
    ]
    assert users, "the check above would be vacuous"


# --- one-way layers (issue 17): the allowed edges between the package's parts ------------------

LAYERS = """
text, config        leaf modules: import nothing of the package
protocol            <- text
core                <- protocol, config, text
transport           <- protocol, config, text
converter           <- core, transport, protocol, config, text
nodeset             (pure data: imports nothing of the package)
simulation          <- core, converter, protocol, config, text
ros                 <- core, converter, transport, simulation, nodeset, protocol, config, text,
                       the generated msg/srv/action, the package root (__version__)
tools               <- everything (the evse-can-ros command sits on top)
"""
ALLOWED: dict[str, set[str]] = {
    "": set(),  # the package root: version and namespace set-up only
    "text": set(),
    "config": set(),
    "protocol": {"text"},
    "core": {"protocol", "config", "text"},
    "transport": {"protocol", "config", "text"},
    "converter": {"core", "transport", "protocol", "config", "text"},
    "nodeset": set(),
    "simulation": {"core", "converter", "protocol", "config", "text"},
    "ros": {
        "core", "converter", "transport", "simulation", "nodeset", "protocol", "config", "text",
        "msg", "srv", "action", "",
    },
    "tools": {
        "ros", "core", "converter", "transport", "simulation", "nodeset", "protocol", "config",
        "text", "msg", "srv", "action", "",
    },
}  # fmt: skip
"""part -> parts it may import ("" = the package root); the docstring above in words."""


def part_of(module: str) -> str | None:
    """``evse_can_ros.core.bridge`` -> ``core``; None outside the package."""
    parts = module.split(".")
    if parts[0] != "evse_can_ros":
        return None
    return parts[1] if len(parts) > 1 else ""


def layer_violations(files: list[Path] | None = None) -> list[str]:
    found = []
    for path in files or python_files():
        rel = path.resolve().relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(p for p in rel.parts if p != "__init__")
        source = part_of(module)
        assert source is not None
        allowed = ALLOWED.get(source)
        assert allowed is not None, f"{path}: part {source!r} missing from ALLOWED"
        for imported in sorted(imported_modules(path)):
            target = part_of(imported)
            if target is not None and target != source and target not in allowed:
                found.append(f"{rel}: {source} -> {target} ({imported})")
    return found


def test_dependencies_point_one_way() -> None:
    assert not layer_violations(), "imports against the layers:\n" + "\n".join(layer_violations())


def test_the_layer_check_catches_a_wrong_import(tmp_path: Path) -> None:
    """The check is not vacuous: a core module importing a converter backend is reported."""
    bad = PACKAGE / "core" / "_architecture_probe.py"
    bad.write_text("from evse_can_ros.converter.simulated import SimulatedConverter\n")
    try:
        assert layer_violations([bad]) == [
            "evse_can_ros/core/_architecture_probe: core -> converter "
            "(evse_can_ros.converter.simulated)"
        ]
    finally:
        bad.unlink()


def test_no_node_file_imports_another_node_file() -> None:
    nodes = sorted(ROS_GLUE.glob("*_node.py"))
    assert len(nodes) >= 4
    offenders = [
        f"{p.name} imports {m}"
        for p in nodes
        for m in imported_modules(p)
        if m.startswith("evse_can_ros.ros.") and m.endswith("_node") and not m.endswith(p.stem)
    ]
    assert not offenders, offenders


def test_no_long_function_without_a_reason() -> None:
    """Functions over 60 lines say why in their docstring ("Long: ...")."""
    long = []
    for path in python_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                doc = ast.get_docstring(node) or ""
                if size > 60 and "Long:" not in doc:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({size})")
    assert not long, long
