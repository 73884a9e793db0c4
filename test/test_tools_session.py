"""Session logs (candump -l, ASC), plotting and bus replay, without ROS."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import can
import pytest

from evse_can_ros.protocol import (
    AdvanticsControllerStatus,
    CanFrame,
    ChargeSessionFinished,
    ChargingLoop,
    CommunicationProtocol,
    ControllerState,
    EmergencyStop,
    EmergencyStopOrigin,
    NewChargeSession,
    Permission,
    PlugAndPins,
    PowerModulesStatus,
    SessionEnd,
    load_codec,
)
from evse_can_ros.tools.plot import decode_series, plot_session
from evse_can_ros.tools.replay import replay_to_bus, select_frames
from evse_can_ros.transport.sessionlog import read_session

S = ControllerState


def scripted_session(pistol: int = 1, estop: bool = False) -> list[can.Message]:
    """A 60 s session at 10 Hz: states, requests, measurements, plus foreign and bad frames."""
    codec = load_codec()
    msgs: list[can.Message] = []
    t0 = 1_700_000_000.0

    def add(t: float, message: object, index: int = pistol) -> None:
        f = codec.encode(message, index)  # type: ignore[arg-type]
        msgs.append(
            can.Message(
                timestamp=t0 + t, arbitration_id=f.arbitration_id, data=f.data, is_extended_id=True
            )
        )

    plan = [
        (0, S.WAITING_FOR_PEV),
        (2, S.NEGOTIATING_CONNECTION),
        (4, S.CONNECTED_WITH_FULL_INFO),
        (6, S.INSULATION_TEST),
        (10, S.PRECHARGE),
        (12, S.WAITING_FOR_CHARGE),
        (13, S.CHARGING),
        (50, S.ENDING_CHARGE),
        (52, S.WELDING_DETECTION),
        (54, S.CLOSING_COMMUNICATION),
        (58, S.WAITING_FOR_PEV),
    ]
    for i in range(600):
        t = i / 10
        state = [st for start, st in plan if start <= t][-1]
        add(t, AdvanticsControllerStatus(state))
        charging = state == S.CHARGING
        voltage = (
            380.0 + (t - 13) * 0.5 if charging else (500.0 if state == S.INSULATION_TEST else 0.0)
        )
        add(
            t + 0.005,
            PowerModulesStatus(
                voltage, 100.0 if charging else 0.0, 40, 30, Permission.ALLOWED, 510
            ),
        )
        if charging:
            add(t + 0.01, ChargingLoop(420.0, 100.0, 30 + int((t - 13) / 37 * 20)))
        if state == S.CONNECTED_WITH_FULL_INFO and i % 10 == 0:
            add(
                t + 0.02,
                NewChargeSession(
                    CommunicationProtocol.CCS_ISO_15118_2013_V2,
                    PlugAndPins.CCS_DC_CORE,
                    450.0,
                    200.0,
                    60.0,
                    30,
                ),
            )
        if estop and 30 <= t < 31:
            add(t + 0.03, EmergencyStop(EmergencyStopOrigin.EVSE))
        if i % 50 == 0:
            add(t + 0.04, AdvanticsControllerStatus(S.CHARGING), index=pistol + 1)  # foreign
    add(54.5, ChargeSessionFinished(SessionEnd.RUSHED_STOP if estop else SessionEnd.CLEAN_STOP))
    msgs.append(
        can.Message(timestamp=t0 + 20.0, arbitration_id=(pistol << 24) | 0x68009, data=b"\x07\x07")
    )  # malformed: DLC 2
    msgs.sort(key=lambda m: m.timestamp)
    return msgs


def write_log(path: Path, messages: list[can.Message]) -> Path:
    with can.Logger(str(path)) as writer:  # picks CanutilsLogWriter (.log) or ASCWriter (.asc)
        for m in messages:
            writer.on_message_received(m)
    return path


@pytest.mark.parametrize("suffix", [".log", ".asc"])
def test_logs_written_by_python_can_are_read(tmp_path: Path, suffix: str) -> None:
    msgs = scripted_session()
    session = read_session(write_log(tmp_path / f"session{suffix}", msgs))
    assert session.problems == [] and len(session.frames) == len(msgs)
    assert [tf.frame.arbitration_id for tf in session.frames] == [m.arbitration_id for m in msgs]
    assert session.frames[0].frame.data == bytes(msgs[0].data)
    assert session.frames[-1].t - session.frames[0].t == pytest.approx(
        msgs[-1].timestamp - msgs[0].timestamp, abs=1e-3
    )


def test_series_decoded_from_a_log(tmp_path: Path) -> None:
    session = read_session(write_log(tmp_path / "s.log", scripted_session(estop=True)))
    s = decode_series(session)
    assert s.pistol == 1 and s.protocol == "CCS_ISO_15118_2013_v2"
    assert [st.label for _, _, st in s.states][:7] == [
        "Waiting_For_PEV",
        "Negotiating_Connection",
        "Connected_With_Full_Info",
        "Insulation_Test",
        "Precharge",
        "Waiting_For_Charge",
        "Charging",
    ]
    assert s.undecodable == 1  # the malformed frame; foreign frames are another pistol's
    assert s.soc[0] == 30 and s.soc[-1] >= 49
    assert 37 * 100 * 380 / 3.6e6 < s.energy_kwh < 37 * 100 * 400 / 3.6e6
    assert [text for _, text in s.faults] == ["Emergency_Stop EVSE", "Rushed_Stop"]
    assert s.session_end == "Rushed_Stop"


def test_plot_of_a_session(tmp_path: Path) -> None:
    session = read_session(write_log(tmp_path / "s.asc", scripted_session(estop=True)))
    out = tmp_path / "session.png"
    series = plot_session(session, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 30_000
    assert series.duration == pytest.approx(59.9, abs=0.2)


def test_replay_onto_a_virtual_bus_keeps_the_timing(tmp_path: Path) -> None:
    session = read_session(write_log(tmp_path / "s.log", scripted_session()))
    frames = select_frames(session, "controller", pistol=1)
    assert frames and all(
        load_codec().spec_for_id(tf.frame.arbitration_id).from_controller for tf in frames
    )
    frames = [tf for tf in frames if tf.t - frames[0].t < 5.0]  # 5 s of session at x10
    channel = f"replay-{uuid.uuid4().hex[:8]}"
    sink = can.Bus(interface="virtual", channel=channel)
    source = can.Bus(interface="virtual", channel=channel)
    got: list[tuple[float, can.Message]] = []
    stop = threading.Event()

    def receive() -> None:
        while not stop.is_set():
            m = sink.recv(0.05)
            if m is not None:
                got.append((time.monotonic(), m))

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    try:
        stats = replay_to_bus(frames, source, speed=10.0)
        time.sleep(0.2)
    finally:
        stop.set()
        thread.join()
        sink.shutdown()
        source.shutdown()
    assert stats.sent == len(frames) == len(got) and stats.failed == 0
    assert [m.arbitration_id for _, m in got] == [tf.frame.arbitration_id for tf in frames]
    span_rec = frames[-1].t - frames[0].t
    span_live = got[-1][0] - got[0][0]
    assert span_live == pytest.approx(span_rec / 10, abs=0.1)


def test_bad_inputs_give_clear_problems(tmp_path: Path) -> None:
    assert "no such file" in read_session(tmp_path / "missing.log").problems[0]
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    assert "not a rosbag2 or a CAN log" in read_session(other).problems[0]
    garbage = tmp_path / "garbage.blf"
    garbage.write_bytes(b"\x00" * 100)
    s = read_session(garbage)
    assert s.problems and not s.frames
    truncated = write_log(tmp_path / "t.log", scripted_session())
    text = truncated.read_text().splitlines()
    truncated.write_text("\n".join(text[:500]) + "\n(1700000040.000000) vcan0 0106\n")
    s = read_session(truncated)
    assert len(s.frames) >= 499  # partial result
    empty = tmp_path / "empty.log"
    empty.write_text("")
    assert "no CAN frames" in read_session(empty).problems[0]


def test_frames_of_other_pistols_and_bad_frames_are_skipped_when_replaying(tmp_path: Path) -> None:
    session = read_session(write_log(tmp_path / "s.log", scripted_session()))
    everything = select_frames(session, "all")
    ours = select_frames(session, "all", pistol=1)
    assert len(everything) > len(ours)
    with pytest.raises(ValueError):
        select_frames(session, "sideways")
    assert CanFrame(0, b"").dlc == 0
