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
