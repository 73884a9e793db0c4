"""controller_simulator node with the real can_bridge node on python-can's virtual bus.

The power side is a bare publisher of ``power_modules_status`` at 10 Hz (no converter): enough
for the bridge to answer the simulator, so the session reaches the insulation test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")

from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from evse_can_ros import msg as ros  # noqa: E402
from evse_can_ros.core.battery import VehicleInlet  # noqa: E402
from evse_can_ros.ros.can_bridge_node import CanBridgeNode  # noqa: E402
from evse_can_ros.ros.controller_sim_node import (  # noqa: E402
    ControllerSimulatorNode,
    NodeConfigError,
    run_simulator,
)
from evse_can_ros.ros.testing import Collector, RosHarness  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LATCHED = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)


@pytest.fixture
def channel() -> str:
    return f"sim-{uuid.uuid4().hex[:8]}"


def sim_params(channel: str, **extra: Any) -> list[Parameter]:
    values: dict[str, Any] = {
        "can_channel": channel,
        "can_bitrate": 0,
        "boot_time": 0.3,
        "scenario.plug_in_delay": 1.0,
        "vehicle.negotiation_time": 0.5,
        **extra,
    }
    return [Parameter(k, value=v) for k, v in values.items()]


def test_bridge_sees_the_states_and_a_new_charge_session(
    harness: RosHarness, channel: str
) -> None:
    ns = f"/t{uuid.uuid4().hex[:8]}"
    bridge = harness.add(
        CanBridgeNode,
        namespace=ns,
        parameter_overrides=[
            Parameter("can_interface", value="virtual"),
            Parameter("can_channel", value=channel),
            Parameter("can_bitrate", value=0),
        ],
    )
    # deep history: a state that lasts one cycle must not be overwritten before we take it
    history = QoSProfile(depth=100, reliability=LATCHED.reliability, durability=LATCHED.durability)
    states = Collector(harness.node, ros.ControllerState, f"{ns}/controller_state", history)
    sessions = Collector(harness.node, ros.NewChargeSession, f"{ns}/new_charge_session")
    tests = Collector(harness.node, ros.InsulationTest, f"{ns}/insulation_test")
    sim_states = Collector(harness.node, ros.ControllerState, f"{ns}/simulator/state", LATCHED)
    status_pub = harness.node.create_publisher(
        ros.PowerModulesStatus, f"{ns}/power_modules_status", 10
    )

    def publish_status() -> None:
        status_pub.publish(
            ros.PowerModulesStatus(
                present_voltage=0.0,
                present_current=0.0,
                power_modules_temperature=30.0,
                enclosure_temperature=25.0,
                system_enable=True,
                insulation_resistance=500e3,
            )
        )

    timer = harness.node.create_timer(0.1, publish_status)
    inlet = VehicleInlet()
    sim = harness.add(
        ControllerSimulatorNode,
        namespace=ns,
        inlet=inlet,
        parameter_overrides=sim_params(channel, **{"vehicle.protocol": "CCS_DIN_70121_2012_v2"}),
    )
    try:
        assert sim.get_name() == "controller_simulator"
        assert sim.vehicle.inlet is inlet
        assert harness.wait_for(lambda: sessions.msgs, 10.0), [s.state_name for s in states.msgs]
        ncs = sessions.msgs[0]
        assert ncs.ev_maximum_voltage == pytest.approx(410.0)
        assert ncs.state_of_charge == 20
        assert ncs.communication_protocol_name == "CCS_DIN_70121_2012_v2"
        assert harness.wait_for(lambda: tests.msgs, 5.0)
        assert harness.wait_for(lambda: states.last.state_name == "Insulation_Test", 2.0)
        seen = [s.state_name for s in states.msgs]
        # Connected_With_Full_Info may last less than one 100 ms heartbeat period (the power
        # side answers at once), so it need not appear in the periodic status
        order = ["Initialising", "Waiting_For_PEV", "Negotiating_Connection", "Insulation_Test"]
        for name in order:
            assert name in seen, seen
        firsts = [seen.index(name) for name in order]
        assert firsts == sorted(firsts), seen
        assert all(s.alive for s in states.msgs if s.heartbeat_seen)
        assert inlet.plugged_in
        assert tests.msgs[0].test_voltage == pytest.approx(410.0)
        assert harness.wait_for(lambda: sim_states.last is not None, 3.0)
        assert sim_states.last.state_name == "Insulation_Test"
        assert sim.snapshot()["sessions"] == 1
    finally:
        harness.node.destroy_timer(timer)
        harness.remove(sim)
        harness.remove(bridge)


def test_status_topic_and_services(harness: RosHarness, channel: str) -> None:
    ns = f"/t{uuid.uuid4().hex[:8]}"
    status = Collector(harness.node, String, f"{ns}/simulator/status", LATCHED)
    sim = harness.add(
        ControllerSimulatorNode,
        namespace=ns,
        parameter_overrides=sim_params(channel, **{"scenario.plug_in_delay": -1.0}),
    )
    try:
        assert harness.wait_for(
            lambda: status.last and json.loads(status.last.data)["state"] == "Waiting_For_PEV",
            5.0,
        )
        assert not json.loads(status.last.data)["plugged_in"]
        client = harness.node.create_client(Trigger, f"{ns}/simulator/plug_in")
        assert client.wait_for_service(timeout_sec=5.0)
        future = client.call_async(Trigger.Request())
        assert harness.wait_for(future.done, 5.0)
        assert future.result().success
        # no power side: the session opens, then the Power_Modules_Status interlock trips
        assert harness.wait_for(lambda: sim.snapshot()["emergency"] == "EVSE", 10.0)
        assert "Power_Modules_Status timeout" in sim.snapshot()["end_reason"]
        harness.node.destroy_client(client)
    finally:
        harness.remove(sim)


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("pistol_index", 0, "pistol_index"),
        ("vehicle.protocol", "CCS_PWM", "protocol"),
        ("vehicle.capacity_kwh", 1, "floating-point"),
        ("scenario.reset_state", "Sleeping", "reset_state"),
        ("ccs_external_authorisation", True, "use_sequence_flags"),
        ("can_interface", "no_such_bus", "no_such_bus"),
        ("protocol_version", 4, "protocol_version"),
        ("protocol_version", 3.0, "protocol_version"),
    ],
)
def test_bad_parameters_are_clear_errors(
    harness: RosHarness, channel: str, name: str, value: Any, match: str
) -> None:
    params = {p.name: p for p in sim_params(channel)}
    params[name] = Parameter(name, value=value)
    with pytest.raises(NodeConfigError, match=match) as info:
        harness.add(
            ControllerSimulatorNode,
            namespace=f"/t{uuid.uuid4().hex[:8]}",
            parameter_overrides=list(params.values()),
        )
    assert "\n" not in str(info.value)
    harness.nodes[:] = [n for n in harness.nodes if n.context.ok() and n.handle is not None]


def _clean_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def test_executable_exits_2_with_one_line_for_bad_parameters() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "bin" / "nodes" / "controller_simulator"),
            "--ros-args",
            "-p",
            "vehicle.target_soc:=120.0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=_clean_env(),
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert lines == [lines[0]] and "controller_simulator: error:" in lines[0]
    assert "target_soc" in lines[0]


def test_run_simulator_cli_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_simulator(["--set", "no_equals_sign"]) == 2
    assert "NAME=VALUE" in capsys.readouterr().err


def test_a_bidirectional_vehicle_needs_protocol_version_3(
    harness: RosHarness, channel: str
) -> None:
    bpt = {"vehicle.protocol": "CCS_ISO_15118_2022", "vehicle.bpt_mode": "dynamic"}
    with pytest.raises(NodeConfigError, match="needs interface v3") as info:
        harness.add(
            ControllerSimulatorNode,
            namespace=f"/t{uuid.uuid4().hex[:8]}",
            parameter_overrides=sim_params(channel, **bpt),
        )
    assert "\n" not in str(info.value)
    harness.nodes[:] = [n for n in harness.nodes if n.context.ok() and n.handle is not None]


def test_protocol_version_3_puts_v3_frames_on_the_bus(harness: RosHarness, channel: str) -> None:
    import can

    from evse_can_ros.protocol import AdvanticsControllerStatus, CanFrame, load_codec

    v3 = load_codec(protocol_version=3)
    with can.Bus(interface="virtual", channel=channel) as bus:
        sim = harness.add(
            ControllerSimulatorNode,
            namespace=f"/t{uuid.uuid4().hex[:8]}",
            parameter_overrides=sim_params(channel, protocol_version=3),
        )
        try:
            heard = None
            for _ in range(50):
                msg = bus.recv(timeout=0.1)
                if msg is not None:
                    heard = CanFrame(msg.arbitration_id, bytes(msg.data))
                    break
            assert heard is not None and heard.arbitration_id == 0x0106B000  # v3 identifier
            assert isinstance(v3.decode(heard, 1), AdvanticsControllerStatus)
            assert sim.snapshot()["protocol_version"] == 3
        finally:
            harness.remove(sim)


@pytest.mark.parametrize("value", ["4", "v3", ""])
def test_simulate_refuses_a_bad_protocol_version(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_simulator(["--protocol-version", value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--protocol-version must be 2 or 3" in err


def test_simulate_protocol_version_3_runs() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "bin" / "evse-can-ros"),
            "simulate",
            "--protocol-version",
            "3",
            "--channel",
            f"sim-{uuid.uuid4().hex[:8]}",
            "--duration",
            "1.5",
            "--set",
            "boot_time=0.2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=_clean_env(),
    )
    assert result.returncode == 0, result.stderr
    snapshot = json.loads(result.stdout.strip().splitlines()[-1])
    assert snapshot["protocol_version"] == 3 and snapshot["state"] != "Initialising"
