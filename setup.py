"""Pure-Python part of evse_can_ros (protocol, core, converter, transport, tools).

The ROS 2 package is built with colcon (ament_cmake, CMakeLists.txt), which also generates the
interfaces; this file keeps ``pip install -e .`` working for the parts that need no ROS, e.g. to
use the codec or the simulators in another project.
"""

from setuptools import find_packages, setup

setup(
    name="evse_can_ros",
    version="0.1.0",
    packages=find_packages(include=["evse_can_ros", "evse_can_ros.*"]),
    package_data={"evse_can_ros.protocol": ["data/*.dbc"]},
    python_requires=">=3.10",
    install_requires=["python-can>=4.3", "cantools>=39", "PyYAML>=5.4"],
    entry_points={
        "console_scripts": ["evse-can-ros = evse_can_ros.tools.cli:main"],
        # built-in backends are also in converter/registry.py (colcon installs no entry points);
        # third-party backends register the same way
        "evse_can_ros.converter_backends": [
            "infypower = evse_can_ros.converter.infypower.backend:InfyPowerConverter",
        ],
    },
    license="Apache-2.0",
    zip_safe=False,
)
