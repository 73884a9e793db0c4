"""Record a session through the bridge, replay it offline and on the virtual bus: same stream.

The session here is scripted with the vendor KCD: the recorder and the decoder do not depend on
who plays the controller.
"""

from __future__ import annotations

import math
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")

from rclpy.parameter import Parameter  # noqa: E402

from evse_can_ros import msg as ros  # noqa: E402
from evse_can_ros.ros.can_bridge_node import CanBridgeNode  # noqa: E402
from evse_can_ros.ros.interfaces import TOPIC_OF_MESSAGE  # noqa: E402
from evse_can_ros.ros.recording import SessionRecorder, decode_to_bag  # noqa: E402
from evse_can_ros.ros.testing import RosHarness  # noqa: E402
from evse_can_ros.tools.bus_peer import BusPeer  # noqa: E402
from evse_can_ros.tools.replay import replay_to_bus, select_frames  # noqa: E402
from evse_can_ros.transport.sessionlog import read_session  # noqa: E402

EVENT_TOPICS = sorted({t.name for t in TOPIC_OF_MESSAGE.values()})


def typed_stream(bag: Path, ns: str) -> list[tuple[str, float, dict[str, Any]]]:
    """(topic, header stamp, fields without header) of the event topics, in bag order."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    wanted = {f"{ns}/{t}" for t in EVENT_TOPICS}
    out = []
    with AnyReader([bag], default_typestore=get_typestore(Stores.LATEST)) as reader:
        conns = [c for c in reader.connections if c.topic in wanted]
        for conn, _, raw in reader.messages(connections=conns):
            m = reader.deserialize(raw, conn.msgtype)
            fields = {k: _plain(getattr(m, k)) for k in m.__dataclass_fields__ if k != "header"}
            stamp = m.header.stamp.sec + m.header.stamp.nanosec * 1e-9
            out.append((conn.topic[len(ns) + 1 :], stamp, fields))
    return out


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


def bridge(harness: RosHarness, ns: str, channel: str) -> CanBridgeNode:
    return harness.add(
        CanBridgeNode,
        namespace=ns,
        parameter_overrides=[
            Parameter("can_interface", value="virtual"),
            Parameter("can_channel", value=channel),
            Parameter("can_bitrate", value=0),
        ],
    )


def play_script(peer: BusPeer, status_pub: Any) -> None:
    """A short CCS session, frame by frame (vendor KCD), with a fake converter status."""

    def state(s: int, dwell: float = 0.3) -> None:
        peer.heartbeat(s)
        t_end = time.monotonic() + dwell
        while time.monotonic() < t_end:
            status_pub.publish(
                ros.PowerModulesStatus(
                    present_voltage=400.0,
                    present_current=50.0,
                    power_modules_temperature=40.0,
                    enclosure_temperature=30.0,
                    system_enable=True,
                    insulation_resistance=math.inf,
                )
            )
            time.sleep(0.05)

    state(1)
    state(2)
    state(3, 0.1)
    for _ in range(3):
        peer.send(
            "New_Charge_Session",
            {
                "Communication_Protocol": 2,
                "Plug_and_pins": 0,
                "EV_Maximum_Voltage": 450.0,
                "EV_Maximum_Current": 200.0,
                "Battery_Capacity": 60,
                "State_of_Charge": 30,
            },
        )
        time.sleep(0.1)
    state(4, 0.1)
    for v in (500.0, 500.0, 0.0):
        peer.send("Insulation_Test", {"Test_Voltage": v})
        time.sleep(0.1)
    state(5, 0.1)
    peer.send("Precharge", {"Target_Voltage": 380.0, "Maximum_Current": 2.0})
    time.sleep(0.1)
    peer.send("Precharge", {"Target_Voltage": 380.0, "Maximum_Current": 0.0})
    state(6, 0.1)
    peer.send("Charge_Status_Change", {"Vehicle_Ready_for_Charging": 1})
    state(7, 0.1)
    for soc in range(30, 36):
        peer.send(
            "Charging_Loop",
            {"Target_Voltage": 420.0, "Target_Current": 50.0, "State_of_Charge": soc},
        )
        time.sleep(0.1)
    peer.send("EV_ID_CCS_Part2_DIN", {f"Byte{i}": i for i in range(6)})
    state(8, 0.1)
    peer.send("Charge_Status_Change", {"Vehicle_Ready_for_Charging": 0})
    state(10, 0.1)
    peer.send("Charge_Session_Finished", {"State": 0})
    state(1)


def record(harness: RosHarness, tmp: Path, name: str, ns: str) -> SessionRecorder:
    return harness.add(SessionRecorder, tmp / name, namespace=ns)


def count_event_writes(rec: SessionRecorder, ns: str) -> list[int]:
    """Count what the recorder writes to the bag on the event topics (a spy): ``[n]``."""
    wanted = {f"{ns}/{t}" for t in EVENT_TOPICS}
    real = rec.bag.write
    n = [0]

    def write(topic: str, msgtype: str, timestamp_ns: int, data: bytes) -> None:
        real(topic, msgtype, timestamp_ns, data)
        if topic in wanted:
            n[0] += 1

    rec.bag.write = write  # type: ignore[method-assign]
    return n


def test_record_then_replay_offline_and_on_the_bus(
    harness: RosHarness, tmp_path: Path, vendor_kcd: Any
) -> None:
    # 1. record a session through the bridge
    ns, channel = f"/r{uuid.uuid4().hex[:6]}", f"rec-{uuid.uuid4().hex[:8]}"
    b1 = bridge(harness, ns, channel)
    rec = record(harness, tmp_path, "original", ns)
    peer = BusPeer("virtual", channel, vendor_kcd)
    status_pub = harness.node.create_publisher(
        ros.PowerModulesStatus, f"{ns}/power_modules_status", 10
    )
    try:
        assert harness.wait_for(lambda: b1.publish_raw, 5.0)  # the recorder switched raw frames on
        time.sleep(0.3)
        play_script(peer, status_pub)
        time.sleep(0.5)
    finally:
        peer.close()
        harness.remove(rec)
        harness.remove(b1)
    original = tmp_path / "original"
    assert (original / "metadata.yaml").exists()
    session = read_session(original)
    assert session.problems == [] and len(session.frames) > 60
    assert {tf.source for tf in session.frames} == {f"{ns}/can_rx", f"{ns}/can_tx"}
    assert session.metadata["evse_can_ros.database_sha256"]
    assert session.metadata["evse_can_ros.pistol_index"] == "1"
    assert "v2.7" in session.metadata["evse_can_ros.protocol"]
    stream = typed_stream(original, ns)
    topics = [t for t, _, _ in stream]
    assert {
        "new_charge_session",
        "insulation_test",
        "precharge",
        "charging_loop",
        "charge_status_change",
        "charge_session_finished",
        "ev_id",
    } <= set(topics)

    # 2. offline: the bridge's decoder on the recorded frames gives the same stream
    offline = tmp_path / "offline"
    stats = decode_to_bag(session, offline, namespace=ns)
    assert stats.malformed == 0 and stats.messages > len(stream)
    replayed = typed_stream(offline, ns)
    assert [(t, f) for t, _, f in replayed] == [(t, f) for t, _, f in stream]
    assert max(abs(a[1] - b[1]) for a, b in zip(stream, replayed, strict=True)) < 0.05

    # 3. onto the virtual bus, live, into another bridge: the same stream again
    ns2, channel2 = f"/r{uuid.uuid4().hex[:6]}", f"rec-{uuid.uuid4().hex[:8]}"
    b2 = bridge(harness, ns2, channel2)
    rec2 = record(harness, tmp_path, "live", ns2)
    import can

    written = count_event_writes(rec2, ns2)
    bus = can.Bus(interface="virtual", channel=channel2)
    try:
        assert harness.wait_for(lambda: b2.publish_raw, 5.0)  # the recorder switched raw on
        replay_stats = replay_to_bus(select_frames(session, "controller"), bus, speed=2.0)
        assert replay_stats.sent > 50 and replay_stats.failed == 0
        # every event message of the original stream has reached the second bag
        assert harness.wait_for(lambda: written[0] >= len(stream), 5.0), (written, len(stream))
    finally:
        bus.shutdown()
        harness.remove(rec2)
        harness.remove(b2)
    live = typed_stream(tmp_path / "live", ns2)
    assert [(t, f) for t, _, f in live] == [(t, f) for t, _, f in stream]
    rel = [s - live[0][1] for _, s, _ in live]
    orig_rel = [(s - stream[0][1]) / 2.0 for _, s, _ in stream]
    assert max(abs(a - b) for a, b in zip(rel, orig_rel, strict=True)) < 0.1


def test_bad_bags_are_reported_not_raised(tmp_path: Path, harness: RosHarness) -> None:
    ns = f"/r{uuid.uuid4().hex[:6]}"
    rec = record(harness, tmp_path, "empty", ns)
    status_pub = harness.node.create_publisher(
        ros.PowerModulesStatus, f"{ns}/power_modules_status", 10
    )
    time.sleep(0.5)
    for _ in range(5):
        status_pub.publish(ros.PowerModulesStatus(present_voltage=1.0))
        time.sleep(0.05)
    time.sleep(0.3)
    harness.remove(rec)
    s = read_session(tmp_path / "empty")
    assert (
        s.frames == []
        and "no CAN frames" in s.problems[0]
        and "power_modules_status" in s.problems[0]
    )
    # a truncated mcap: keep the first half of the file
    mcap = next((tmp_path / "empty").glob("*.mcap"))
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) // 2])
    s = read_session(tmp_path / "empty")
    assert s.problems and not s.frames
