"""can_bridge node over python-can's virtual bus, driven by a scripted controller.

The scripted controller encodes with the vendor's KCD (an independent encoder); every frame the
bridge sends is decoded with it too (PM-50). Timing assertions use the protocol's own tolerance
(PM-09: 100 ms +- 20 ms) with margin; performance is measured in bench/.
"""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import BatteryState  # noqa: E402
from std_srvs.srv import SetBool, Trigger  # noqa: E402

from evse_can_ros import msg as ros  # noqa: E402
from evse_can_ros import srv  # noqa: E402
from evse_can_ros.ros.can_bridge_node import CanBridgeNode  # noqa: E402
from evse_can_ros.ros.common import NodeConfigError  # noqa: E402
from evse_can_ros.ros.testing import Collector, RosHarness  # noqa: E402
from evse_can_ros.tools.bus_peer import BusPeer  # noqa: E402

LATCHED = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
STATE = {
    "Initialising": 0,
    "Waiting_For_PEV": 1,
    "Negotiating_Connection": 2,
    "Connected_With_Full_Info": 3,
    "Insulation_Test": 4,
    "Charging": 7,
    "Not_Available": 12,
}


@pytest.fixture
def channel() -> str:
    return f"bridge-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def peer(channel: str, vendor_kcd: Any) -> Iterator[BusPeer]:
    p = BusPeer("virtual", channel, vendor_kcd, pistol_index=1)
    yield p
    p.close()


def bridge_params(channel: str, **extra: Any) -> list[Parameter]:
    values: dict[str, Any] = {
        "can_interface": "virtual",
        "can_channel": channel,
        "can_bitrate": 0,
        "pistol_index": 1,
        **extra,
    }
    return [Parameter(k, value=v) for k, v in values.items()]


@pytest.fixture
def bridge(harness: RosHarness, channel: str, peer: BusPeer) -> Iterator[CanBridgeNode]:
    ns = f"/t{uuid.uuid4().hex[:8]}"
    node = harness.add(CanBridgeNode, namespace=ns, parameter_overrides=bridge_params(channel))
    yield node
    harness.remove(node)


def topic(bridge: CanBridgeNode, name: str) -> str:
    return f"{bridge.get_namespace()}/{name}"


def matched(bridge: CanBridgeNode, name: str) -> bool:
    """The bridge's publisher on topic ``name`` has a subscription matched (discovery done)."""
    full = topic(bridge, name)
    return any(p.topic_name == full and p.get_subscription_count() for p in bridge.publishers)


def publish_status(harness: RosHarness, bridge: CanBridgeNode, **fields: Any) -> Any:
    pub = harness.node.create_publisher(
        ros.PowerModulesStatus, topic(bridge, "power_modules_status"), 10
    )
    msg = ros.PowerModulesStatus(
        present_voltage=400.0,
        present_current=125.5,
        power_modules_temperature=35.0,
        enclosure_temperature=30.0,
        system_enable=True,
        insulation_resistance=500e3,
    )
    for k, v in fields.items():
        setattr(msg, k, v)
    return pub, msg


def call(harness: RosHarness, srv_type: Any, name: str, request: Any) -> Any:
    client = harness.node.create_client(srv_type, name)
    assert client.wait_for_service(timeout_sec=5.0), name
    future = client.call_async(request)
    assert harness.wait_for(future.done, 5.0), f"{name} did not answer"
    harness.node.destroy_client(client)
    return future.result()


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def assert_all_sent_frames_decode_with_vendor(peer: BusPeer) -> None:  # PM-50
    ours = {m.frame_id & 0xFFFFFF: m for m in peer.db.messages if not m.frame_id & 0x8000}
    for r in peer.all_received():
        m = ours.get(r.msg.arbitration_id & 0xFFFFFF)
        assert m is not None, f"unexpected frame {r.msg}"
        assert r.msg.is_extended_id and r.msg.arbitration_id >> 24 == peer.pistol_index  # PM-01
        assert r.msg.dlc == m.length  # PM-05
        m.decode(r.msg.data)


# --- receive: typed topics ----------------------------------------------------------------------


def test_controller_state_is_latched_and_tracks_the_heartbeat(
    harness: RosHarness, bridge: CanBridgeNode, peer: BusPeer
) -> None:
    peer.heartbeat(STATE["Waiting_For_PEV"])
    states = Collector(
        harness.node, ros.ControllerState, topic(bridge, "controller_state"), LATCHED
    )
    assert harness.wait_for(lambda: states.last is not None and states.last.alive, 5.0)
    assert states.last.state_name == "Waiting_For_PEV" and states.last.pistol_index == 1
    assert states.last.heartbeat_age < 0.3
    late = Collector(harness.node, ros.ControllerState, topic(bridge, "controller_state"), LATCHED)
    assert harness.wait_for(lambda: late.last is not None, 3.0)  # transient local
    peer.heartbeat(200)  # a state a future controller might add (PM-06)
    assert harness.wait_for(lambda: states.last.state == 200, 3.0)
    assert states.last.state_name == "Unknown_200" and states.last.alive
    n = len(states.msgs)
    assert harness.wait_for(lambda: len(states.msgs) - n >= 3, 0.5)  # re-published periodically


def test_every_controller_message_reaches_its_topic(
    harness: RosHarness, bridge: CanBridgeNode, peer: BusPeer
) -> None:
    subs = {
        name: Collector(harness.node, t, topic(bridge, name))
        for name, t in [
            ("new_charge_session", ros.NewChargeSession),
            ("insulation_test", ros.InsulationTest),
            ("precharge", ros.Precharge),
            ("charging_loop", ros.ChargingLoop),
            ("charge_status_change", ros.ChargeStatusChange),
            ("emergency_stop", ros.EmergencyStop),
            ("charge_session_finished", ros.ChargeSessionFinished),
            ("controller_inputs", ros.ControllerInputs),
            ("ev_id", ros.EvId),
            ("ccs_extra_information", ros.CcsExtraInformation),
            ("mcs_extra_information", ros.McsExtraInformation),
        ]
    }
    assert harness.wait_for(lambda: all(matched(bridge, n) for n in subs), 5.0)  # discovery
    peer.send(
        "New_Charge_Session",
        {
            "Communication_Protocol": 2,
            "Plug_and_pins": 0,
            "EV_Maximum_Voltage": 420.0,
            "EV_Maximum_Current": 250.0,
            "Battery_Capacity": 78,
            "State_of_Charge": 35,
        },
    )
    peer.send("Insulation_Test", {"Test_Voltage": 500.0})
    peer.send("Precharge", {"Target_Voltage": 365.2, "Maximum_Current": 2.0})
    peer.send(
        "Charging_Loop", {"Target_Voltage": 410.5, "Target_Current": 150.0, "State_of_Charge": 63}
    )
    peer.send("Charge_Status_Change", {"Vehicle_Ready_for_Charging": 1})
    peer.send("Emergency_Stop", {"Origin": 3})
    peer.send("Charge_Session_Finished", {"State": 1})
    peer.send(
        "ADM_CS_SECC_Inputs",
        {
            "Digital_Input1": 1,
            "Digital_Input2": 0,
            "Digital_Input3": 1,
            "Digital_Input4": 0,
            "Reserved": 0,
            "CPU_Temperature": 45,
            "Pistol_PTC1": 20,
            "Pistol_PTC2": -5,
        },
    )
    peer.send("EV_ID_CCS_Part2_DIN", {f"Byte{i}": 0x10 + i for i in range(6)})
    peer.send("CCS_Extra_Information", {"CP_State": 6, "CP_Duty_Cycle": 5.0, "Reserved": 0})
    peer.send("MCS_Extra_Information", {"CE_State": 4, "ID_State": 1, "Reserved": 0})
    assert harness.wait_for(lambda: all(s.msgs for s in subs.values()), 5.0), [
        n for n, s in subs.items() if not s.msgs
    ]
    ncs = subs["new_charge_session"].last
    assert (ncs.communication_protocol, ncs.communication_protocol_name) == (
        2,
        "CCS_ISO_15118_2013_v2",
    )
    assert (
        ncs.ev_maximum_voltage,
        ncs.ev_maximum_current,
        ncs.battery_capacity,
        ncs.state_of_charge,
    ) == (420.0, 250.0, 78.0, 35)
    assert subs["insulation_test"].last.test_voltage == 500.0
    assert (subs["precharge"].last.target_voltage, subs["precharge"].last.maximum_current) == (
        365.2,
        2.0,
    )
    cl = subs["charging_loop"].last
    assert (cl.target_voltage, cl.target_current, cl.state_of_charge) == (410.5, 150.0, 63)
    assert subs["charge_status_change"].last.vehicle_ready_for_charging_name == "Charge_Started"
    assert (subs["emergency_stop"].last.origin, subs["emergency_stop"].last.origin_name) == (
        3,
        "PEV",
    )
    assert subs["charge_session_finished"].last.state_name == "Rushed_Stop"
    inputs = subs["controller_inputs"].last
    assert inputs.board == "ADM_CS_SECC" and list(inputs.digital_inputs) == [
        True,
        False,
        True,
        False,
    ]
    assert list(inputs.temperature_names) == ["CPU_Temperature", "Pistol_PTC1", "Pistol_PTC2"]
    assert list(inputs.temperatures) == [45.0, 20.0, -5.0]
    assert subs["ev_id"].last.ev_id_hex == "101112131415"
    assert subs["ccs_extra_information"].last.cp_state_name == "C"
    assert subs["mcs_extra_information"].last.ce_state_name == "B"


def test_battery_state_for_the_vehicle(
    harness: RosHarness, bridge: CanBridgeNode, peer: BusPeer
) -> None:
    batt = Collector(harness.node, BatteryState, topic(bridge, "battery_state"), LATCHED)
    pub, status = publish_status(harness, bridge)
    peer.heartbeat(STATE["Charging"])
    assert harness.wait_for(lambda: bridge.core.controller_state == STATE["Charging"], 5.0)
    peer.send(
        "New_Charge_Session",
        {
            "Communication_Protocol": 2,
            "Plug_and_pins": 0,
            "EV_Maximum_Voltage": 420.0,
            "EV_Maximum_Current": 250.0,
            "Battery_Capacity": 80,
            "State_of_Charge": 35,
        },
    )
    peer.send(
        "Charging_Loop", {"Target_Voltage": 410.0, "Target_Current": 125.0, "State_of_Charge": 41}
    )
    pub.publish(status)
    assert harness.wait_for(lambda: batt.last is not None and batt.last.present, 4.0)
    b = batt.last
    assert b.percentage == pytest.approx(0.41) and b.voltage == 400.0 and b.current == 125.5
    assert b.power_supply_status == BatteryState.POWER_SUPPLY_STATUS_CHARGING
    assert b.design_capacity == pytest.approx(200.0)  # 80 kWh at 400 V
    assert "CCS_DC_Core" in b.location


# --- transmit ------------------------------------------------------------------------------------


def test_power_modules_status_every_100_ms_with_the_latest_values(
    harness: RosHarness, bridge: CanBridgeNode, peer: BusPeer
) -> None:
    pub, status = publish_status(harness, bridge)
    start = time.monotonic()
    while time.monotonic() - start < 2.0:
        pub.publish(status)
        time.sleep(0.05)
    frames = peer.decoded("Power_Modules_Status")
    assert len(frames) >= 15
    g = gaps([t for t, _ in frames[1:]])
    assert max(g) < 0.13 and min(g) > 0.07, g  # PM-09 +- 20 ms, with margin for CI
    _, signals = frames[-1]
    assert signals == {
        "Present_Voltage": 400.0,
        "Present_Current": 125.5,
        "Power_Modules_Temperature": 35,
        "Enclosure_Temperature": 30,
        "System_Enable": 1,
        "Insulation_Resistance": 500,
    }
    assert_all_sent_frames_decode_with_vendor(peer)


def test_stale_power_status_stops_claiming_system_enable(
    harness: RosHarness, bridge: CanBridgeNode, peer: BusPeer
) -> None:
    diags = Collector(harness.node, DiagnosticArray, "/diagnostics")
    pub, status = publish_status(harness, bridge, present_voltage=388.0)
    for _ in range(10):
        pub.publish(status)
        time.sleep(0.05)
    last_publish = time.monotonic()
    time.sleep(1.0)  # converter driver dead
    frames = peer.decoded("Power_Modules_Status", since=last_publish)
    enables = [(t - last_publish, s["System_Enable"]) for t, s in frames]
    assert [e for t, e in enables if t > 0.5] and all(e == 0 for t, e in enables if t > 0.5)
    assert all(s["Present_Voltage"] == 388.0 for _, s in frames)  # never an invented 0 V

    def power_diag() -> Any:
        for arr in reversed(diags.msgs):
            for s in arr.status:
                if s.name.endswith(": power status") and bridge.get_namespace() in s.name:
                    return s
        return None

    assert harness.wait_for(
        lambda: power_diag() is not None and power_diag().level == DiagnosticStatus.ERROR, 3.0
    )


def test_limits_then_charge_parameters_done(
    harness: RosHarness, bridge: CanBridgeNode, peer: BusPeer
) -> None:
    req = srv.SetPowerLimits.Request(
        maximum_voltage=500.0, maximum_current=200.0, charge_parameters_done=True
    )
    resp = call(harness, srv.SetPowerLimits, topic(bridge, "set_power_limits"), req)
    assert resp.success, resp.message
    assert harness.wait_for(lambda: peer.frames("Sequence_Control"), 2.0)
    limits = peer.frames("Power_Modules_Limits")
    flags = peer.frames("Sequence_Control")
    assert limits and limits[0].t <= flags[0].t  # PM-19
    assert peer.decoded("Power_Modules_Limits")[0][1] == {
        "Maximum_Voltage": 500.0,
        "Maximum_Current": 200.0,
        "Reserved": 0,
    }
    assert bytes(flags[-1].msg.data) == bytes.fromhex("00 04 00")  # not authorised by default
    bad = call(
        harness,
        srv.SetPowerLimits,
        topic(bridge, "set_power_limits"),
        srv.SetPowerLimits.Request(maximum_voltage=-5.0, maximum_current=10.0),
    )
    assert not bad.success and "maximum_voltage" in bad.message
    assert_all_sent_frames_decode_with_vendor(peer)


def test_buttons_are_pulses_and_authorisations_are_levels(
    harness: RosHarness, bridge: CanBridgeNode, peer: BusPeer
) -> None:
    assert call(harness, Trigger, topic(bridge, "press_user_stop"), Trigger.Request()).success
    second = call(harness, Trigger, topic(bridge, "press_user_stop"), Trigger.Request())
    assert not second.success and "in progress" in second.message
    assert harness.wait_for(lambda: len(peer.frames("Sequence_Control")) >= 2, 2.0)
    press, release = peer.frames("Sequence_Control")[:2]
    assert bytes(press.msg.data) == bytes.fromhex("00 00 01")
    assert bytes(release.msg.data) == bytes.fromhex("00 00 00")
    assert release.t - press.t >= 0.1  # PM-17
    assert call(
        harness, SetBool, topic(bridge, "set_ccs_authorisation"), SetBool.Request(data=False)
    ).success
    assert harness.wait_for(
        lambda: bytes(peer.frames("Sequence_Control")[-1].msg.data) == bytes.fromhex("00 01 00"),
        2.0,
    )  # Done, Valid=0 (PM-18)
    assert call(
        harness, SetBool, topic(bridge, "set_start_authorisation"), SetBool.Request(data=True)
    ).success
    assert harness.wait_for(
        lambda: bytes(peer.frames("Sequence_Control")[-1].msg.data) == bytes.fromhex("01 01 00"),
        2.0,
    )
    flags = Collector(
        harness.node, ros.SequenceControl, topic(bridge, "sequence_control"), LATCHED
    )
    assert harness.wait_for(lambda: flags.last is not None, 3.0)
    assert flags.last.start_charge_authorisation and flags.last.ccs_authorisation_done
    assert_all_sent_frames_decode_with_vendor(peer)


def test_flags_on_entry_into_not_available_and_reset_after_the_session(
    harness: RosHarness, bridge: CanBridgeNode, peer: BusPeer
) -> None:
    peer.heartbeat(STATE["Not_Available"])
    assert harness.wait_for(lambda: peer.frames("Sequence_Control"), 2.0)  # PM-15
    assert bytes(peer.frames("Sequence_Control")[0].msg.data) == bytes.fromhex("00 00 00")
    call(harness, SetBool, topic(bridge, "set_start_authorisation"), SetBool.Request(data=True))
    assert harness.wait_for(
        lambda: bytes(peer.frames("Sequence_Control")[-1].msg.data) == bytes.fromhex("01 00 00"),
        2.0,
    )
    peer.heartbeat(STATE["Connected_With_Full_Info"])
    assert harness.wait_for(
        lambda: bridge.core.controller_state == STATE["Connected_With_Full_Info"], 5.0
    )
    call(harness, SetBool, topic(bridge, "set_ccs_authorisation"), SetBool.Request(data=True))
    assert harness.wait_for(
        lambda: bytes(peer.frames("Sequence_Control")[-1].msg.data) == bytes.fromhex("01 03 00"),
        2.0,
    )
    peer.send("Charge_Session_Finished", {"State": 0})
    assert harness.wait_for(
        lambda: bytes(peer.frames("Sequence_Control")[-1].msg.data) == bytes.fromhex("01 00 00"),
        2.0,
    )  # PM-21


def test_controller_outputs_every_second(
    harness: RosHarness, bridge: CanBridgeNode, peer: BusPeer
) -> None:
    req = srv.SetControllerOutputs.Request(
        board=0, enabled=True, digital_outputs=[True, False, False, True], leds=[100, 0, 50]
    )
    assert call(
        harness, srv.SetControllerOutputs, topic(bridge, "set_controller_outputs"), req
    ).success
    time.sleep(2.3)
    frames = peer.decoded("ADM_CS_SECC_Outputs")
    assert len(frames) == 3 and all(0.9 < g < 1.1 for g in gaps([t for t, _ in frames]))
    assert frames[0][1]["Digital_Output4"] == 1 and frames[0][1]["Led3"] == 50
    bad = srv.SetControllerOutputs.Request(
        board=1, enabled=True, digital_outputs=[True], leds=[0, 0, 0]
    )
    resp = call(harness, srv.SetControllerOutputs, topic(bridge, "set_controller_outputs"), bad)
    assert not resp.success and "2 digital outputs" in resp.message
    call(
        harness,
        srv.SetControllerOutputs,
        topic(bridge, "set_controller_outputs"),
        srv.SetControllerOutputs.Request(enabled=False),
    )
    n = len(peer.frames("ADM_CS_SECC_Outputs"))
    time.sleep(1.2)
    assert len(peer.frames("ADM_CS_SECC_Outputs")) == n


# --- supervision ---------------------------------------------------------------------------------


def test_heartbeat_loss_is_published_at_once(
    harness: RosHarness, bridge: CanBridgeNode, peer: BusPeer
) -> None:
    states = Collector(
        harness.node, ros.ControllerState, topic(bridge, "controller_state"), LATCHED
    )
    diags = Collector(harness.node, DiagnosticArray, "/diagnostics")
    peer.heartbeat(STATE["Charging"])
    assert harness.wait_for(lambda: states.last is not None and states.last.alive, 5.0)
    time.sleep(0.3)
    peer.heartbeat(None)
    time.sleep(0.15)  # the heartbeat thread has seen the stop
    last_hb = peer.last_heartbeat_time
    assert last_hb is not None
    assert harness.wait_for(lambda: not states.last.alive, 2.0)
    lost_at = next(
        t for m, t in zip(states.msgs, states.times, strict=True) if not m.alive and t > last_hb
    )
    assert 0.2 <= lost_at - last_hb < 0.4  # PM-07: lost 200 ms after the last heartbeat
    assert states.last.heartbeat_age > 0.2

    def ctrl_diag() -> Any:
        for arr in reversed(diags.msgs):
            for s in arr.status:
                if s.name.endswith(": controller heartbeat") and bridge.get_namespace() in s.name:
                    return s
        return None

    assert harness.wait_for(
        lambda: ctrl_diag() is not None and ctrl_diag().level == DiagnosticStatus.ERROR, 3.0
    )
    peer.heartbeat(STATE["Waiting_For_PEV"])
    assert harness.wait_for(lambda: states.last.alive, 2.0)


def test_malformed_foreign_and_unexpected_frames_are_counted(
    harness: RosHarness, bridge: CanBridgeNode, peer: BusPeer
) -> None:
    charging = Collector(harness.node, ros.ChargingLoop, topic(bridge, "charging_loop"))
    states = Collector(
        harness.node, ros.ControllerState, topic(bridge, "controller_state"), LATCHED
    )
    diags = Collector(harness.node, DiagnosticArray, "/diagnostics")
    assert harness.wait_for(lambda: matched(bridge, "charging_loop"), 5.0)  # discovery
    peer.send(
        "Charging_Loop",
        {"Target_Voltage": 400, "Target_Current": 100, "State_of_Charge": 50},
        pistol=2,
    )  # foreign pistol
    peer.send_raw(0x01068005, b"\x07\x00")  # Charging_Loop too short (padding is accepted)
    peer.send_raw(0x01068008, b"\x00")  # unknown id
    peer.send_raw(0x01060010, bytes(8))  # someone else sends our Power_Modules_Status
    peer.send_raw(0x009, b"\x07", is_extended_id=False)
    time.sleep(0.3)
    assert not charging.msgs  # PM-02
    assert states.last is None or not states.last.alive

    def bus_values() -> dict[str, str]:
        for arr in reversed(diags.msgs):
            for s in arr.status:
                if s.name.endswith(": CAN bus") and bridge.get_namespace() in s.name:
                    return {kv.key: kv.value for kv in s.values}
        return {}

    assert harness.wait_for(lambda: bus_values().get("malformed_frames") == "2", 3.0), bus_values()
    values = bus_values()
    assert values["unexpected_frames"] == "1"
    # python-can filters foreign pistols before they reach us (kernel side on SocketCAN)
    assert values["foreign_frames"] == "0"
    assert bridge.link.up


def test_two_bridges_on_one_bus_do_not_interfere(
    harness: RosHarness, channel: str, peer: BusPeer, vendor_kcd: Any
) -> None:
    ns = f"/t{uuid.uuid4().hex[:8]}"
    b1 = harness.add(
        CanBridgeNode,
        "can_bridge_1",
        namespace=ns,
        parameter_overrides=bridge_params(channel, pistol_index=1),
    )
    b2 = harness.add(
        CanBridgeNode,
        "can_bridge_2",
        namespace=ns,
        parameter_overrides=bridge_params(channel, pistol_index=2),
    )
    try:
        s1 = Collector(harness.node, ros.ControllerState, f"{ns}/controller_state", LATCHED)
        peer2 = BusPeer("virtual", channel, vendor_kcd, pistol_index=2)
        try:
            peer.heartbeat(STATE["Charging"])
            peer2.heartbeat(STATE["Waiting_For_PEV"])
            for b in (b1, b2):
                pub, status = publish_status(harness, b)
                for _ in range(3):
                    pub.publish(status)
            assert harness.wait_for(
                lambda: (
                    peer.frames("Power_Modules_Status") and peer2.frames("Power_Modules_Status")
                ),
                3.0,
            )
            assert harness.wait_for(
                lambda: len({(m.pistol_index, m.state_name) for m in s1.msgs if m.alive}) == 2, 3.0
            )
            assert {(m.pistol_index, m.state_name) for m in s1.msgs if m.alive} == {
                (1, "Charging"),
                (2, "Waiting_For_PEV"),
            }
            assert b1.core.counters.rx_malformed == b2.core.counters.rx_malformed == 0
        finally:
            peer2.close()
    finally:
        harness.remove(b1)
        harness.remove(b2)


def test_bus_errors_are_reported_and_recovered(
    harness: RosHarness, channel: str, peer: BusPeer, monkeypatch: Any
) -> None:
    import can
    from can.interfaces.virtual import VirtualBus

    class FlakyVirtualBus(VirtualBus):
        fail_send = False

        def send(self, msg: can.Message, timeout: float | None = None) -> None:
            if FlakyVirtualBus.fail_send:
                raise can.CanOperationError("No buffer space available")
            super().send(msg, timeout)

        def _recv_internal(self, timeout: float | None) -> tuple[can.Message | None, bool]:
            msg, filtered = super()._recv_internal(timeout)
            # SocketCAN delivers error frames whatever the id filters; so does this test bus
            return msg, filtered or bool(msg is not None and msg.is_error_frame)

    def factory(**kwargs: Any) -> can.BusABC:
        return FlakyVirtualBus(**{k: v for k, v in kwargs.items() if k != "interface"})

    monkeypatch.setattr(can, "Bus", factory)
    ns = f"/t{uuid.uuid4().hex[:8]}"
    node = harness.add(
        CanBridgeNode,
        namespace=ns,
        parameter_overrides=bridge_params(
            channel, can_reconnect_interval=0.2, can_max_send_failures=3
        ),
    )
    try:
        states = Collector(harness.node, ros.ControllerState, f"{ns}/controller_state", LATCHED)
        peer.heartbeat(STATE["Charging"])
        assert harness.wait_for(lambda: states.last is not None and states.last.alive, 5.0)
        n = len(states.msgs)
        peer.send_raw(0x20000040, bytes(8), is_error_frame=True)  # bus-off (PM-44)
        assert harness.wait_for(lambda: any(not m.alive for m in states.msgs[n:]), 2.0)
        assert harness.wait_for(lambda: states.last.alive, 2.0)  # next heartbeat: back
        assert node.core.counters.rx_error_frames == 1 and node.link.stats.bus_off_events == 1
        pub, status = publish_status(harness, node)
        FlakyVirtualBus.fail_send = True
        for _ in range(10):
            pub.publish(status)
            time.sleep(0.05)
        assert harness.wait_for(lambda: node.link.stats.tx_failures >= 3, 2.0)
        assert harness.wait_for(lambda: node.link.stats.reconnects >= 1, 3.0)
        FlakyVirtualBus.fail_send = False
        before = len(peer.frames("Power_Modules_Status"))
        for _ in range(10):
            pub.publish(status)
            time.sleep(0.05)
        assert len(peer.frames("Power_Modules_Status")) > before  # recovered
        assert "send failures" in node.link.last_error
    finally:
        harness.remove(node)


# --- parameters ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "match"),
    [
        (Parameter("pistol_index", value=0), "pistol_index"),
        (Parameter("pistol_index", value=32), "pistol_index"),
        (Parameter("heartbeat_timeout", value=1), "floating-point"),
        (Parameter("can_interface", value="no_such_bus"), "no_such_bus"),
        (Parameter("database_path", value="/nonexistent.dbc"), "cannot read"),
        (Parameter("limits_min_interval", value=0.01), "limits_min_interval"),
    ],
)
def test_invalid_parameters_are_clear_errors(
    harness: RosHarness, channel: str, override: Parameter, match: str
) -> None:
    params = {p.name: p for p in bridge_params(channel)}
    params[override.name] = override
    with pytest.raises(NodeConfigError, match=match):
        harness.add(
            CanBridgeNode,
            namespace=f"/t{uuid.uuid4().hex[:8]}",
            parameter_overrides=list(params.values()),
        )
    harness.nodes[:] = [
        n for n in harness.nodes if not isinstance(n, CanBridgeNode) or n.context.ok()
    ]


def test_node_executable_exits_2_with_one_line_for_bad_parameters() -> None:
    prefix = Path(os.environ.get("AMENT_PREFIX_PATH", "").split(":")[0])
    exe = next(
        (
            p / "lib" / "evse_can_ros" / "can_bridge"
            for p in map(Path, os.environ.get("AMENT_PREFIX_PATH", "").split(":"))
            if (p / "lib" / "evse_can_ros" / "can_bridge").exists()
        ),
        None,
    )
    assert exe is not None, f"can_bridge not installed under {prefix} (run scripts/setup.sh)"
    result = subprocess.run(
        [
            sys.executable,
            str(exe),
            "--ros-args",
            "-p",
            "pistol_index:=40",
            "-p",
            "can_interface:=virtual",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "can_bridge: error:" in result.stderr and "pistol_index" in result.stderr
    assert math.isfinite(result.returncode)


def test_readme_documents_every_topic_and_service_of_the_node(
    harness: RosHarness, bridge: CanBridgeNode
) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    name, ns = bridge.get_name(), bridge.get_namespace()

    def relative(full: str) -> str:
        return full[len(ns) + 1 :] if full.startswith(ns + "/") else full

    assert harness.wait_for(lambda: harness.node.get_service_names_and_types_by_node(name, ns), 5)
    pubs = [relative(t) for t, _ in harness.node.get_publisher_names_and_types_by_node(name, ns)]
    subs = [relative(t) for t, _ in harness.node.get_subscriber_names_and_types_by_node(name, ns)]
    services = [relative(s) for s, _ in harness.node.get_service_names_and_types_by_node(name, ns)]
    ours = [
        n
        for n in pubs + subs + services
        if not n.startswith(("/rosout", "/parameter_events", "can_bridge/"))
    ]
    assert len(ours) > 20
    missing = [n for n in ours if f"`{n}`" not in readme]
    assert not missing, f"not in README: {missing}"
