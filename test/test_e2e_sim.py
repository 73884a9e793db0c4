"""End to end in one process: action client -> charge server -> bridge -> virtual bus ->
controller + vehicle simulator, and converter driver -> bridge -> bus, as `evse-can-ros run --sim`
starts them (the node set of evse_can_ros.nodeset, one executor).

These prove the ROS wiring of the node set: one charge, one fault, one cancel, two pistols and
the main job. The behaviour matrices (every fault, every phase, CHAdeMO, sessions without a
goal ...) run on the in-memory charger in test_charger_sim.py and test_fault_matrix.py.
"""

from __future__ import annotations

import io
import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")


from evse_can_ros.action import Charge  # noqa: E402
from evse_can_ros.msg import ConverterStatus, SafeToUnplug  # noqa: E402
from evse_can_ros.nodeset import ChargerOptions, pistol_namespace  # noqa: E402
from evse_can_ros.ros.charge_client import ChargeRequest, run_charge  # noqa: E402
from evse_can_ros.ros.charger import Charger, init_context  # noqa: E402
from evse_can_ros.ros.interfaces import SAFE_TO_UNPLUG  # noqa: E402
from evse_can_ros.tools.resources import config_file  # noqa: E402

SIM = config_file("sim.yaml")


FAST = {
    "vehicle.soc_time_scale": 500.0,
    "vehicle.negotiation_time": 0.3,
    "vehicle.current_request_delay": 0.2,
    "vehicle.welding_detection_time": 0.2,
    "boot_time": 0.2,
    "closing_time": 0.3,
    "scenario.plug_in_delay": 0.2,
}
"""The wiring is the point here, not the charge: a fast battery and a short boot."""


def params_file(tmp_path: Path, simulator: dict[str, Any]) -> str:
    """sim.yaml (with FAST) with some controller_simulator parameters changed."""
    data = yaml.safe_load(SIM.read_text())
    data["/**/controller_simulator"]["ros__parameters"].update({**FAST, **simulator})
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.fixture
def charger_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    made: list[tuple[Charger, Any]] = []

    def make(pistols: tuple[int, ...] = (1,), params: str = "") -> Charger:
        if not params:
            params = params_file(tmp_path_factory.mktemp("e2e"), {})
        options = ChargerOptions(
            pistols=pistols,
            can_interface="virtual",
            can_channel=f"e2e-{uuid.uuid4().hex[:8]}",
            sim=True,
            params_file=params,
            log_level="warn",
        )
        context = init_context(options)
        charger = Charger(options, context)
        charger.spin_in_thread()
        made.append((charger, context))
        return charger

    yield make
    for charger, context in made:
        charger.destroy()
        rclpy.try_shutdown(context=context)


def charge(charger: Charger, pistol: int, goal: dict[str, Any]) -> tuple[int, Any, list[Any]]:
    feedback: list[Any] = []
    code, result = run_charge(
        ChargeRequest(pistol_namespace("evse", pistol), goal),
        out=io.StringIO(),
        on_feedback=feedback.append,
        context=charger.context,
    )
    return code, result, feedback


def test_ccs_charge_to_60_percent(charger_factory: Any) -> None:
    charger = charger_factory()
    unplug: list[tuple[bool, int]] = []  # (value, number of feedbacks seen so far)
    feedback_seen: list[Any] = []
    watcher = rclpy.create_node("e2e_watch", context=charger.context)
    watcher.create_subscription(
        SafeToUnplug,
        "/evse/pistol1/safe_to_unplug",
        lambda m: unplug.append((m.safe, len(feedback_seen))),
        SAFE_TO_UNPLUG,
    )
    charger.executor.add_node(watcher)
    code, result, feedback = charge(charger, 1, {"target_soc": 60.0})
    feedback_seen.extend(feedback)
    assert code == 0, result.error_msg
    assert result.error_code == Charge.Result.NONE
    assert result.outcome == Charge.Result.OUTCOME_LIMIT_REACHED
    assert result.session_end_state == Charge.Result.SESSION_END_CLEAN
    assert result.safe_to_unplug
    assert result.final_soc >= 60.0 and result.initial_soc < 30.0
    # energy: the battery gained what the charger measured, times the simulator's time scale
    # (the charger measures real time; the battery ages soc_time_scale times faster)
    scale = FAST["vehicle.soc_time_scale"]
    battery = charger.inlets[1].battery
    # the vehicle reports whole percent; the battery may be a little past 60 % when it stops
    assert 60.0 <= battery.soc < 70.0
    assert result.energy_delivered * scale == pytest.approx(battery.energy_charged_wh, rel=0.05)
    # feedback: energy never decreases, stages in spec order
    energies = [f.energy_delivered for f in feedback]
    assert all(b >= a - 1e-6 for a, b in itertools.pairwise(energies))
    stages = [f.stage for f in feedback]
    seen = list(dict.fromkeys(stages))
    assert seen == sorted(seen), [f.stage_name for f in feedback]
    for stage in (
        Charge.Feedback.STAGE_INSULATION_TEST,
        Charge.Feedback.STAGE_PRECHARGE,
        Charge.Feedback.STAGE_CHARGING,
    ):
        assert stage in seen
    assert max(f.present_current for f in feedback) > 50.0
    # safe_to_unplug: false while charging, true only at the end
    charging_at = next(
        i for i, f in enumerate(feedback) if f.stage == Charge.Feedback.STAGE_CHARGING
    )
    assert not any(v for v, n in unplug if n and n <= charging_at)


def test_two_pistols_charge_concurrently(charger_factory: Any) -> None:
    charger = charger_factory(pistols=(1, 2))
    results: dict[int, Any] = {}

    def run(pistol: int) -> None:
        results[pistol] = charge(charger, pistol, {"target_soc": 30.0})

    threads = [threading.Thread(target=run, args=(p,)) for p in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert set(results) == {1, 2}
    for pistol, (code, result, _feedback) in results.items():
        assert code == 0, (pistol, result.error_msg)
        assert result.final_soc >= 30.0
    # both were charging at the same time
    windows = {}
    for pistol, (_, _, feedback) in results.items():
        times = [f.elapsed for f in feedback if f.stage == Charge.Feedback.STAGE_CHARGING]
        windows[pistol] = (min(times), max(times))
    assert windows[1][0] < windows[2][1] and windows[2][0] < windows[1][1]
    # each pistol's battery is its own
    assert charger.inlets[1].battery is not charger.inlets[2].battery


def test_main_job_command(tmp_path: Path) -> None:
    """The README's step 2: `evse-can-ros sim` charges and exits 0 (a separate process)."""
    import os
    import subprocess
    import sys

    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from evse_can_ros.tools.cli import main; sys.exit(main())",
            "sim",
            "--target-soc",
            "30",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"},
        cwd=tmp_path,  # not the repo root: the installed package must be complete
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "result:        OK" in proc.stdout
    assert "SoC:           20 % -> 30 %" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_a_fault_ends_in_the_safe_state(charger_factory: Any, tmp_path: Path) -> None:
    """An EV emergency stop while charging: result code, no current, output de-energised."""
    code, charged, goal = Charge.Result.EMERGENCY_STOP_PEV, True, {}
    charger = charger_factory(params=params_file(tmp_path, {"scenario.ev_emergency_after": 1.0}))
    status: list[Any] = []
    watcher = rclpy.create_node("e2e_fault_watch", context=charger.context)
    watcher.create_subscription(
        ConverterStatus, "/evse/pistol1/converter_status", status.append, 10
    )
    charger.executor.add_node(watcher)
    rc, result, feedback = charge(charger, 1, {"plug_in_timeout": 30.0, **goal})
    assert result is not None
    assert result.error_code == code, (result.error_code, result.error_msg)
    assert (rc == 0) == (code == Charge.Result.NONE)
    assert result.error_msg if code else not result.error_msg
    assert any(f.present_current > 10.0 for f in feedback) == charged
    # the safe state: no current, output de-energised, the session over
    assert feedback[-1].present_current < 1.0
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and not (
        status and abs(status[-1].current) < 1.0 and status[-1].voltage < 60.0
    ):
        time.sleep(0.1)
    last = status[-1]
    assert abs(last.current) < 1.0 and last.voltage < 60.0, last
    assert last.mode != "REGULATE" or last.current_limit == 0.0, last


def test_cancel_while_charging_ends_in_the_safe_state(charger_factory: Any) -> None:
    """Cancel = user stop: the session ends normally, the result says CANCELLED."""
    from rclpy.action import ActionClient

    charger = charger_factory()
    node = rclpy.create_node("e2e_cancel", context=charger.context)
    charger.executor.add_node(node)
    client = ActionClient(node, Charge, "/evse/pistol1/charge")
    assert client.wait_for_server(timeout_sec=10.0)
    stages: list[int] = []
    sent = client.send_goal_async(
        Charge.Goal(target_soc=95.0), feedback_callback=lambda f: stages.append(f.feedback.stage)
    )
    deadline = time.monotonic() + 30.0
    while not (sent.done() and Charge.Feedback.STAGE_CHARGING in stages):
        assert time.monotonic() < deadline, stages
        time.sleep(0.05)
    handle = sent.result()
    cancel = handle.cancel_goal_async()
    result = handle.get_result_async()
    while not result.done():
        assert time.monotonic() < deadline + 30.0
        time.sleep(0.05)
    assert cancel.result().goals_canceling
    r = result.result().result
    assert r.error_code == Charge.Result.CANCELLED, r.error_msg
    assert r.outcome == Charge.Result.OUTCOME_CANCELLED and r.safe_to_unplug
    assert r.session_end_state == Charge.Result.SESSION_END_CLEAN
    client.destroy()
