"""charge_server + can_bridge over the virtual bus, with a scripted controller (vendor KCD).

Whole charges (controller simulator + converter driver) are in test_e2e_sim.py (ROS) and
test_charger_sim.py (simulated clock); here the controller side is scripted frame by frame, to
prove the node's wiring: goals, refusals, cancel, faults, bring-up order.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")

from rclpy.action import ActionClient  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from evse_can_ros import msg as ros  # noqa: E402
from evse_can_ros.action import Charge  # noqa: E402
from evse_can_ros.ros.can_bridge_node import CanBridgeNode  # noqa: E402
from evse_can_ros.ros.charge_server_node import ChargeServerNode  # noqa: E402
from evse_can_ros.ros.interfaces import LATCHED, SAFE_TO_UNPLUG  # noqa: E402
from evse_can_ros.ros.testing import RosHarness  # noqa: E402
from evse_can_ros.tools.bus_peer import BusPeer  # noqa: E402

STATES = {
    "Waiting_For_PEV": 1,
    "Negotiating_Connection": 2,
    "Connected_With_Full_Info": 3,
    "Insulation_Test": 4,
    "Precharge": 5,
    "Waiting_For_Charge": 6,
    "Charging": 7,
    "Ending_Charge": 8,
    "Closing_Communication": 10,
    "Not_Available": 12,
}


class Rig:
    """Bridge + charge server in a fresh namespace, a scripted controller and a fake converter.

    The script waits on conditions, never on fixed sleeps: a controller state counts as sent
    once the charge server's core has seen it and stepped once with it (the step decides the
    commands, feedback and depot topics); a fake converter status once the core has taken it.
    """

    def __init__(self, harness: RosHarness, vendor_kcd: Any) -> None:
        self.h = harness
        self.ns = f"/t{uuid.uuid4().hex[:8]}"
        channel = f"cs-{uuid.uuid4().hex[:8]}"
        self.peer = BusPeer("virtual", channel, vendor_kcd)
        self.bridge = harness.add(
            CanBridgeNode,
            namespace=self.ns,
            parameter_overrides=[
                Parameter("can_interface", value="virtual"),
                Parameter("can_channel", value=channel),
                Parameter("can_bitrate", value=0),
            ],
        )
        self.server = harness.add(
            ChargeServerNode,
            namespace=self.ns,
            parameter_overrides=[
                Parameter("safe_voltage_timeout", value=3.0),
                Parameter("controller_lost_grace", value=1.0),
                Parameter("node_timeout", value=60.0),  # no converter driver in this rig
            ],
        )
        self.steps = count_steps(self.server)
        node = harness.node
        with harness.paused():
            self.client = ActionClient(node, Charge, f"{self.ns}/charge")
        self.status_pub = node.create_publisher(
            ros.PowerModulesStatus, f"{self.ns}/power_modules_status", 10
        )
        self.voltage, self.current = 0.0, 0.0
        self.feedback: list[Any] = []
        self.availability: list[Any] = []
        self.unplug: list[bool] = []
        node.create_subscription(
            ros.ChargerAvailability,
            f"{self.ns}/charger_availability",
            self.availability.append,
            LATCHED,
        )
        node.create_subscription(
            ros.SafeToUnplug,
            f"{self.ns}/safe_to_unplug",
            lambda m: self.unplug.append(m.safe),
            SAFE_TO_UNPLUG,
        )
        assert self.client.wait_for_server(timeout_sec=5.0)

    @property
    def seen(self) -> Any:
        """What the charge server's core has observed (read-only use)."""
        return self.server.server.obs

    def stepped(self) -> None:
        """Wait until the charge server has stepped at least once from now on."""
        n = self.steps[0]
        assert self.h.wait_for(lambda: self.steps[0] > n, 5.0), "charge server not stepping"

    def power(self, voltage: float, current: float = 0.0) -> None:
        """Publish a converter status (again every 50 ms) until the server has taken it."""
        self.voltage, self.current = voltage, current
        sent = time.monotonic()
        msg = ros.PowerModulesStatus(
            present_voltage=voltage,
            present_current=current,
            power_modules_temperature=30.0,
            enclosure_temperature=25.0,
            system_enable=True,
            insulation_resistance=math.inf,
        )
        taken = lambda: (self.seen.power_time or 0.0) >= sent  # noqa: E731
        for _ in range(100):
            self.status_pub.publish(msg)
            if self.h.wait_for(taken, 0.05, period=0.005):
                return
        raise AssertionError(f"charge server never took the status {voltage} V {current} A")

    def state(self, name: str) -> None:
        """Heartbeat in state ``name`` until the server has seen it and stepped with it."""
        self.peer.heartbeat(STATES[name])
        assert self.h.wait_for(lambda: self.seen.state == STATES[name], 5.0), name
        self.stepped()
        self.power(self.voltage, self.current)

    def send_goal(self, **fields: Any) -> Any:
        goal = Charge.Goal(**fields)
        future = self.client.send_goal_async(
            goal, feedback_callback=lambda f: self.feedback.append(f.feedback)
        )
        assert self.h.wait_for(future.done, 5.0)
        handle = future.result()
        assert handle.accepted
        return handle

    def result(self, handle: Any, timeout: float = 10.0) -> Any:
        future = handle.get_result_async()
        assert self.h.wait_for(future.done, timeout), "no result"
        return future.result().result

    def flags(self) -> list[bytes]:
        return [bytes(r.msg.data) for r in self.peer.frames("Sequence_Control")]

    def open_session(self, ncs_soc: int = 30) -> None:
        self.state("Waiting_For_PEV")
        self.state("Negotiating_Connection")
        self.state("Connected_With_Full_Info")
        self.peer.send(
            "New_Charge_Session",
            {
                "Communication_Protocol": 2,
                "Plug_and_pins": 0,
                "EV_Maximum_Voltage": 450.0,
                "EV_Maximum_Current": 200.0,
                "Battery_Capacity": 60,
                "State_of_Charge": ncs_soc,
            },
        )
        session = lambda: self.server.server.session  # noqa: E731
        assert self.h.wait_for(lambda: session() and session().obs.session is not None, 5.0)
        self.stepped()

    def charge(self) -> None:
        self.state("Insulation_Test")
        self.power(10.0)
        self.state("Precharge")
        self.power(380.0)
        self.state("Waiting_For_Charge")
        self.state("Charging")
        self.power(385.0, 100.0)

    def end_clean(self) -> None:
        self.power(385.0, 0.0)
        self.state("Ending_Charge")
        self.power(5.0)
        self.state("Closing_Communication")
        self.peer.send("Charge_Session_Finished", {"State": 0})
        self.state("Waiting_For_PEV")

    def close(self) -> None:
        self.client.destroy()
        self.h.remove(self.server)
        self.h.remove(self.bridge)
        self.peer.close()


def count_steps(node: ChargeServerNode) -> list[int]:
    """Count the steps of the node's core (a spy on ``ChargeServer.step``): ``[n]``."""
    core = node.server
    real = core.step
    steps = [0]

    def step(now: float) -> Any:
        out = real(now)
        steps[0] += 1
        return out

    core.step = step  # type: ignore[method-assign]
    return steps


@pytest.fixture
def rig(harness: RosHarness, vendor_kcd: Any) -> Iterator[Rig]:
    r = Rig(harness, vendor_kcd)
    yield r
    r.close()


def test_charge_command_to_target_soc_with_limits(rig: Rig) -> None:
    """The charge command's goal through the whole scripted session: limits, flags, feedback,
    availability and safe_to_unplug, progress lines, the result and the authorisation reset."""
    import io
    import threading

    from evse_can_ros.ros.charge_client import ChargeRequest, progress_bar, run_charge

    assert progress_bar(0.5, 10) == "[#####-----]" and progress_bar(float("nan"), 4) == "[????]"
    rig.peer.heartbeat(STATES["Waiting_For_PEV"])
    rig.power(0.0)
    assert rig.h.wait_for(
        lambda: rig.availability and rig.availability[-1].availability_name == "available", 3.0
    )
    out = io.StringIO()
    outcome: list[Any] = []
    goal = {"target_soc": 40.0, "max_voltage": 500.0, "max_current": 150.0}
    thread = threading.Thread(
        target=lambda: outcome.append(
            run_charge(
                ChargeRequest(rig.ns, goal),
                out=out,
                on_feedback=rig.feedback.append,
                context=rig.h.context,
            )
        )
    )
    thread.start()
    assert rig.h.wait_for(lambda: any(f[0] & 1 for f in rig.flags()), 5.0)  # authorised
    assert rig.h.wait_for(lambda: any(f[0] & 2 for f in rig.flags()), 2.0)  # CHAdeMO start pulse
    rig.open_session()
    assert rig.h.wait_for(lambda: rig.peer.frames("Power_Modules_Limits"), 2.0)
    limits = rig.peer.decoded("Power_Modules_Limits")[-1][1]
    assert (limits["Maximum_Voltage"], limits["Maximum_Current"]) == (500.0, 150.0)
    assert rig.h.wait_for(lambda: rig.flags()[-1][1] & 4, 2.0)  # Charge_Parameters_Done
    rig.charge()
    assert rig.h.wait_for(lambda: rig.availability[-1].availability_name == "charging", 3.0)
    assert rig.unplug[-1] is False
    rig.peer.send(
        "Charging_Loop", {"Target_Voltage": 420.0, "Target_Current": 100.0, "State_of_Charge": 40}
    )
    assert rig.h.wait_for(lambda: any(f[2] & 1 for f in rig.flags()), 3.0)  # User_Stop_Button
    rig.end_clean()
    thread.join(timeout=10.0)
    assert outcome, out.getvalue()
    code, result = outcome[0]
    assert code == 0, out.getvalue()
    assert result.error_code == 0 and result.outcome == Charge.Result.OUTCOME_LIMIT_REACHED
    assert result.safe_to_unplug and result.final_soc == 40.0 and result.initial_soc == 30.0
    assert result.energy_delivered > 0
    stages = [f.stage for f in rig.feedback]
    assert stages == sorted(stages) and Charge.Feedback.STAGE_CHARGING in stages
    text = out.getvalue()
    assert "charging" in text and "385.0 V" in text and "SoC" in text and "[" in text
    assert (
        "result:        OK" in text and "limit_reached" in text and "safe to unplug: yes" in text
    )
    assert rig.h.wait_for(lambda: rig.unplug and rig.unplug[-1] is True, 3.0)
    # the goal is over: Start_Charge_Authorisation back to the default (authorisation: goal)
    assert rig.h.wait_for(lambda: rig.flags()[-1][0] & 1 == 0, 3.0)


def test_goal_before_the_bridge_is_up_keeps_its_authorisation(
    harness: RosHarness, vendor_kcd: Any
) -> None:
    """Commands are repeated until the bridge confirms them (bring-up order does not matter)."""
    ns = f"/t{uuid.uuid4().hex[:8]}"
    channel = f"cs-{uuid.uuid4().hex[:8]}"
    server = harness.add(
        ChargeServerNode,
        namespace=ns,
        parameter_overrides=[Parameter("node_timeout", value=60.0)],
    )
    with harness.paused():
        client = ActionClient(harness.node, Charge, f"{ns}/charge")
    assert client.wait_for_server(timeout_sec=5.0)
    core = server.server
    real_result = core.command_result
    failed: list[str] = []

    def spy(now: float, command: Any, ok: bool, text: str = "") -> None:
        if not ok:
            failed.append(type(command).__name__)
        real_result(now, command, ok, text)

    core.command_result = spy  # type: ignore[method-assign]
    future = client.send_goal_async(Charge.Goal(plug_in_timeout=0.0))
    assert harness.wait_for(future.done, 5.0) and future.result().accepted
    # the bridge's services do not exist yet: the server tries, fails and tries again
    assert harness.wait_for(lambda: failed.count("SetStartAuthorisation") >= 2, 5.0), failed
    peer = BusPeer("virtual", channel, vendor_kcd)
    bridge = harness.add(
        CanBridgeNode,
        namespace=ns,
        parameter_overrides=[
            Parameter("can_interface", value="virtual"),
            Parameter("can_channel", value=channel),
            Parameter("can_bitrate", value=0),
        ],
    )
    try:
        peer.heartbeat(STATES["Not_Available"])
        assert harness.wait_for(
            lambda: any(bytes(r.msg.data)[0] & 1 for r in peer.frames("Sequence_Control")), 5.0
        ), "Start_Charge_Authorisation never reached the bus"
        cancel = future.result().cancel_goal_async()
        assert harness.wait_for(cancel.done, 3.0)
    finally:
        client.destroy()
        harness.remove(server)
        harness.remove(bridge)
        peer.close()


def test_second_goal_and_invalid_goal_are_refused_with_a_reason(rig: Rig) -> None:
    rig.peer.heartbeat(STATES["Waiting_For_PEV"])
    first = rig.send_goal(plug_in_timeout=0.0)
    assert rig.h.wait_for(lambda: rig.server.server.session is not None, 3.0)
    second = rig.send_goal()
    r2 = rig.result(second, 3.0)
    assert r2.error_code == Charge.Result.BUSY and "busy" in r2.error_msg
    bad = rig.send_goal(target_soc=150.0)
    r3 = rig.result(bad, 3.0)
    assert r3.error_code == Charge.Result.INVALID_GOAL and "target_soc" in r3.error_msg
    cancel = first.cancel_goal_async()
    assert rig.h.wait_for(cancel.done, 3.0)
    r1 = rig.result(first, 3.0)
    assert r1.error_code == Charge.Result.CANCELLED


def test_cancel_while_charging_presses_stop_and_waits_for_the_end(rig: Rig) -> None:
    handle = rig.send_goal()
    rig.open_session()
    rig.charge()
    cancel = handle.cancel_goal_async()
    assert rig.h.wait_for(cancel.done, 3.0)
    assert rig.h.wait_for(lambda: any(f[2] & 1 for f in rig.flags()), 3.0)
    get = handle.get_result_async()
    time.sleep(0.5)
    assert not get.done()  # the result waits for the session to end
    rig.end_clean()
    assert rig.h.wait_for(get.done, 5.0)
    result = get.result().result
    assert result.error_code == Charge.Result.CANCELLED and result.safe_to_unplug


def test_emergency_stop_ends_the_goal_with_its_origin(rig: Rig) -> None:
    handle = rig.send_goal()
    rig.open_session()
    rig.charge()
    rig.peer.send("Emergency_Stop", {"Origin": 1})
    assert rig.h.wait_for(lambda: rig.availability[-1].availability_name == "faulted", 3.0)
    rig.power(0.0)
    rig.state("Closing_Communication")
    rig.peer.send("Charge_Session_Finished", {"State": 1})
    rig.state("Waiting_For_PEV")
    result = rig.result(handle)
    assert result.error_code == Charge.Result.EMERGENCY_STOP_EVSE
    assert result.session_end_state == Charge.Result.SESSION_END_RUSHED
