"""converter_driver with converter_backend: infypower (ROS parameters infypower.*)."""

from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")

from rclpy.parameter import Parameter  # noqa: E402

from evse_can_ros.converter.infypower.backend import InfyPowerConverter  # noqa: E402
from evse_can_ros.ros.can_bridge_node import NodeConfigError  # noqa: E402
from evse_can_ros.ros.converter_driver_node import ConverterDriverNode  # noqa: E402
from evse_can_ros.ros.testing import RosHarness  # noqa: E402
from evse_can_ros.tools.resources import config_file  # noqa: E402


def infypower(**values: object) -> list[Parameter]:
    params = {"can_interface": "virtual", "can_channel": f"ros-infy-{uuid.uuid4().hex[:8]}"}
    params.update(values)  # type: ignore[arg-type]
    return [Parameter("converter_backend", value="infypower")] + [
        Parameter(f"infypower.{k}", value=v) for k, v in params.items()
    ]


def test_the_backend_is_created_from_its_ros_parameters(harness: RosHarness) -> None:
    node = harness.add(
        ConverterDriverNode,
        "converter_driver",
        namespace=f"/t{uuid.uuid4().hex[:6]}",
        parameter_overrides=infypower(module_addresses="4-5", controller_address=241),
    )
    try:
        assert isinstance(node.backend, InfyPowerConverter) and node.backend.is_open
        p = node.backend.params
        assert (p.addresses(), p.controller_address, p.can_interface) == ((4, 5), 241, "virtual")
        result = node.set_parameters([Parameter("infypower.min_modules", value=2)])[0]
        assert not result.successful  # read-only: hardware parameters do not change at run time
    finally:
        harness.remove(node)


def test_the_example_params_file_configures_the_node(harness: RosHarness) -> None:
    node = harness.add(
        ConverterDriverNode,
        "converter_driver",
        namespace=f"/t{uuid.uuid4().hex[:6]}",
        cli_args=["--ros-args", "--params-file", str(config_file("infypower.yaml"))],
        parameter_overrides=infypower(),  # not socketcan:can1 here
    )
    try:
        assert isinstance(node.backend, InfyPowerConverter)
        assert node.backend.params.offline_timeout == 15.0
        assert node.get_parameter("infypower.insulation_monitor").value == "none"
    finally:
        harness.remove(node)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"offline_timeout": 12.0}, "must exceed the modules' 10 s cut-off"),
        ({"controller_address": 248}, "controller_address"),
        ({"module_addresses": "0,63"}, "broadcast"),
        ({"can_interface": "no_such_interface"}, "not available"),
    ],
)
def test_bad_infypower_parameters_are_one_line_errors(
    harness: RosHarness, values: dict[str, object], match: str
) -> None:
    with pytest.raises(NodeConfigError, match=match) as info:
        harness.add(
            ConverterDriverNode,
            f"cd_{uuid.uuid4().hex[:6]}",
            parameter_overrides=infypower(**values),
        )
    assert "\n" not in str(info.value)
