"""package.xml resolves in a real ROS 2 workspace, and declares everything the code imports.

Every dependency key must be one that rosdep knows (rosdep/known_keys.yaml lists them with their
source in ros/rosdistro, plus rosdep/evse_can_ros.yaml for keys rosdistro lacks), and every module
that the package, its launch file, executables and tests import must map to a declared key.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DEPEND_TAGS = ("buildtool_depend", "build_depend", "depend", "exec_depend", "test_depend")
RUNTIME_TAGS = ("depend", "exec_depend")

# Module -> rosdep key. A new third-party import fails the test until it is added here and to
# package.xml (exec_depend for the package, test_depend for the tests only).
MODULE_KEYS = {
    "action_msgs": "action_msgs",
    "ament_index_python": "ament_index_python",
    "builtin_interfaces": "builtin_interfaces",
    "can": "python3-can",
    "cantools": "python3-cantools-pip",
    "diagnostic_msgs": "diagnostic_msgs",
    "hypothesis": "python3-hypothesis",
    "launch": "launch",
    "launch_ros": "launch_ros",
    "lifecycle_msgs": "lifecycle_msgs",
    "matplotlib": "python3-matplotlib",
    "pytest": "python3-pytest",
    "rcl_interfaces": "rcl_interfaces",
    "rclpy": "rclpy",
    "rosbags": "python3-rosbags-pip",
    "rosidl_parser": "rosidl_parser",
    "sensor_msgs": "sensor_msgs",
    "std_msgs": "std_msgs",
    "std_srvs": "std_srvs",
    "yaml": "python3-yaml",
}
# PyPI distribution of a versioned key (to check the lock meets package.xml's minimums).
DISTRIBUTIONS = {
    "python3-can": "python-can",
    "python3-cantools-pip": "cantools",
    "python3-yaml": "PyYAML",
    "python3-rosbags-pip": "rosbags",
    "python3-matplotlib": "matplotlib",
}
OWN_MODULES = {"evse_can_ros", "benchlib", "reference", "targets", "ros2_tools", "conftest"}


def dependencies() -> dict[str, ET.Element]:
    """Key -> element of every dependency in package.xml."""
    root = ET.parse(REPO / "package.xml").getroot()
    return {e.text.strip(): e for tag in DEPEND_TAGS for e in root.iter(tag) if e.text}


def known_keys() -> dict[str, set[str]]:
    known = yaml.safe_load((REPO / "rosdep" / "known_keys.yaml").read_text())
    own = yaml.safe_load((REPO / "rosdep" / "evse_can_ros.yaml").read_text())
    assert set(known["own"]) == set(own), "rosdep/known_keys.yaml 'own' != evse_can_ros.yaml"
    return {"ros": set(known["ros"]), "python.yaml": set(known["python.yaml"]), "own": set(own)}


def imports(paths: list[Path]) -> dict[str, set[str]]:
    """Top-level module -> files importing it (absolute imports, stdlib left out)."""
    found: dict[str, set[str]] = {}
    for path in paths:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in OWN_MODULES:
                    found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def package_sources() -> list[Path]:
    """The Python that ships: the package, the launch file, the installed executables."""
    scripts = [p for p in (REPO / "bin").rglob("*") if p.is_file()]
    return [
        *sorted((REPO / "evse_can_ros").rglob("*.py")),
        *(REPO / "launch").glob("*.py"),
        *scripts,
    ]


def test_every_dependency_key_is_known_to_rosdep() -> None:
    known = known_keys()
    everything = set().union(*known.values())
    unknown = sorted(set(dependencies()) - everything)
    assert not unknown, f"keys rosdep cannot resolve: {unknown} (see rosdep/known_keys.yaml)"
    assert not known["own"] & (known["ros"] | known["python.yaml"]), "own key shadows rosdistro"
    assert "python3-cantools" not in dependencies()  # not a rosdistro key


def test_every_import_of_the_package_is_declared() -> None:
    deps = dependencies()
    runtime = {k for k, e in deps.items() if e.tag in RUNTIME_TAGS}
    for module, files in sorted(imports(package_sources()).items()):
        assert module in MODULE_KEYS, f"{module} (imported by {sorted(files)[:3]}) has no key"
        assert MODULE_KEYS[module] in runtime, (
            f"{module} is imported by {sorted(files)[:3]}: declare {MODULE_KEYS[module]} as "
            "an exec_depend in package.xml"
        )


def test_every_import_of_the_tests_is_declared() -> None:
    deps = dependencies()
    tests = sorted((REPO / "test").glob("*.py")) + sorted((REPO / "bench").glob("*.py"))
    for module, files in sorted(imports(tests).items()):
        assert module in MODULE_KEYS, f"{module} (imported by {sorted(files)[:3]}) has no key"
        assert MODULE_KEYS[module] in deps, f"declare {MODULE_KEYS[module]} in package.xml"


def test_declared_minimum_versions_match_setup_py_and_the_lock() -> None:
    setup_py = (REPO / "setup.py").read_text()
    bounds = dict(re.findall(r'"([A-Za-z0-9_.-]+)>=([0-9.]+)"', setup_py))
    for key, element in dependencies().items():
        minimum = element.get("version_gte")
        if minimum is None:
            continue
        dist = DISTRIBUTIONS[key]
        if dist in bounds:  # one minimum for pip users and ROS users
            assert bounds[dist] == minimum.removesuffix(".0"), (
                f"{dist}: setup.py says {bounds[dist]}"
            )
        try:
            installed = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue  # a workspace without it: nothing to compare
        have = tuple(int(x) for x in re.findall(r"\d+", installed)[:3])
        want = tuple(int(x) for x in minimum.split("."))
        assert have[: len(want)] >= want, (
            f"{dist} {installed} is older than package.xml's {minimum}"
        )
