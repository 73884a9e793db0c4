"""Record, replay and plot of an interface v3 (V2G) session (issue 18 item 6).

The frames of a whole V2G charge on the in-memory charger are written as a candump log; the
tools find the interface version in the identifiers and decode with the v3 database: the offline
decode into a bag (typed v3 topics), the replay selection (the controller's frames only) and the
plot (signed current, exported energy).
"""

from __future__ import annotations

from pathlib import Path

import can
import pytest

from evse_can_ros.protocol import DcPowerControl, load_codec
from evse_can_ros.simulation import simulated_charger
from evse_can_ros.tools.plot import decode_series, plot_session
from evse_can_ros.tools.replay import select_frames
from evse_can_ros.transport.sessionlog import Session, read_session

SCALE = 50.0


@pytest.fixture(scope="module")
def v2g_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Session, float]:
    """A recorded V2G session and the exported energy the charge result reported [Wh]."""
    c = simulated_charger(
        protocol_version=3,
        vehicle={
            "protocol": "CCS_ISO_15118_2022",
            "bpt_mode": "dynamic",
            "initial_soc": 80.0,
            "target_soc": 90.0,
            "soc_time_scale": SCALE,
        },
    )
    with c.quiet():
        result = c.charge(max_discharge_current=100.0, min_soc=74.0, target_soc=78.0)
    path = tmp_path_factory.mktemp("v3") / "v2g.log"
    with can.Logger(str(path)) as writer:
        for r in c.trace.bus:
            assert r.frame is not None
            writer.on_message_received(
                can.Message(
                    timestamp=1_800_000_000.0 + r.time,
                    arbitration_id=r.frame.arbitration_id,
                    data=r.frame.data,
                    is_extended_id=True,
                )
            )
    return read_session(path), result.energy_exported


def test_the_tools_find_the_interface_version(v2g_log: tuple[Session, float]) -> None:
    session, _ = v2g_log
    assert session.ok and session.protocol_version() == 3
    assert session.codec() is load_codec(protocol_version=3)


def test_plot_shows_the_discharge(v2g_log: tuple[Session, float], tmp_path: Path) -> None:
    session, exported_wh = v2g_log
    series = plot_session(session, tmp_path / "v2g.png")
    assert (tmp_path / "v2g.png").read_bytes()[:4] == b"\x89PNG"
    assert series.protocol == "CCS_ISO_15118_2022" and series.undecodable == 0
    assert min(series.current) < -90.0 and min(series.target_current_min) < 0  # the range
    assert series.soc[0] == 80.0 and min(series.soc) <= 74.0
    # the status frames every 100 ms give the same exported energy as the driver's 20 Hz
    assert series.energy_exported_kwh * 1000 == pytest.approx(exported_wh, rel=0.05)
    assert decode_series(session).session_end == "Clean_Stop" and not series.faults


def test_replay_selects_the_controllers_v3_frames(v2g_log: tuple[Session, float]) -> None:
    session, _ = v2g_log
    codec = session.codec()
    frames = select_frames(session, "controller")
    specs = [codec.spec_for_id(f.frame.arbitration_id) for f in frames]
    assert frames and all(spec is not None and spec.from_controller for spec in specs)
    assert any(isinstance(codec.decode(f.frame, 1), DcPowerControl) for f in frames)


@pytest.mark.ros
def test_offline_decode_into_typed_v3_topics(
    v2g_log: tuple[Session, float], tmp_path: Path
) -> None:
    from evse_can_ros.ros.recording import decode_to_bag

    session, _ = v2g_log
    stats = decode_to_bag(session, tmp_path / "bag", namespace="/evse/pistol1")
    assert stats.malformed == 0 and stats.foreign == 0
    for topic in ("dc_power_control", "ev_information_battery", "new_charge_session"):
        assert stats.topics.get(f"/evse/pistol1/{topic}", 0) > 0, stats.topics
