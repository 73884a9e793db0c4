"""End to end in one process: action client -> charge server -> bridge -> virtual bus ->
controller + vehicle simulator, and converter driver -> bridge -> bus, as `evse-can-ros run --sim`
starts them (the node set of evse_can_ros.nodeset, one executor).

These prove the ROS wiring of the node set: one charge, one cancel and one fault (on two pistols
at once, so that they also prove that pistols are independent) and the main job. The behaviour
matrices (every fault, every phase, CHAdeMO, sessions without a goal ...) run on the in-memory
charger in test_charger_sim.py and test_fault_matrix.py.
"""

from __future__ import annotations

import io
import itertools
import re
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
from evse_can_ros.msg import ChargerAvailability, ConverterStatus, SafeToUnplug  # noqa: E402
from evse_can_ros.nodeset import ChargerOptions, pistol_namespace  # noqa: E402
from evse_can_ros.ros.charge_client import ChargeRequest, run_charge  # noqa: E402
from evse_can_ros.ros.charger import Charger, init_context  # noqa: E402
from evse_can_ros.ros.interfaces import LATCHED, SAFE_TO_UNPLUG  # noqa: E402
from evse_can_ros.tools.resources import config_file  # noqa: E402

SIM = config_file("sim.yaml")


FAST = {
    "vehicle.soc_time_scale": 500.0,
    "vehicle.negotiation_time": 0.3,
    "vehicle.current_request_delay": 0.2,
    "vehicle.welding_detection_time": 0.2,
    "vehicle.unplug_delay": 0.0,
    "boot_time": 0.2,
    "closing_time": 0.3,
    "insulation_pass_iterations": 3,
    "scenario.plug_in_delay": 0.2,
    "scenario.replug_delay": 0.2,
}
FAST_CONVERTER = {
    "simulated.wake_time": 0.1,
    "simulated.output_capacitance": 0.0004,
    "simulated.passive_bleed_resistance": 300.0,
}
"""The wiring is the point here, not the charge: a fast battery and a short boot."""


def params_file(tmp_path: Path, simulator: dict[str, Any]) -> str:
    """sim.yaml (with FAST*) with some controller_simulator parameters changed."""
    data = yaml.safe_load(SIM.read_text())
    data["/**/controller_simulator"]["ros__parameters"].update({**FAST, **simulator})
    data["/**/converter_driver"]["ros__parameters"].update(FAST_CONVERTER)
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


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


class Pistol2:
    """Goals on pistol 2 through a plain action client: one cancelled, one ended by a fault."""

    def __init__(self, charger: Charger) -> None:
        from rclpy.action import ActionClient
        from std_srvs.srv import Trigger

        self.node = rclpy.create_node("e2e_pistol2", context=charger.context)
        ns = pistol_namespace("evse", 2)
        self.client = ActionClient(self.node, Charge, f"{ns}/charge")
        self.ev_emergency = self.node.create_client(Trigger, f"{ns}/simulator/ev_emergency_stop")
        self.status: list[Any] = []
        self.node.create_subscription(
            ConverterStatus, f"{ns}/converter_status", self.status.append, 10
        )
        self.availability: list[str] = []
        self.charging_at: list[float] = []  # arrival times of feedback in stage charging
        self.node.create_subscription(
            ChargerAvailability,
            f"{ns}/charger_availability",
            lambda m: self.availability.append(m.availability_name),
            LATCHED,
        )
        # spun from here on (rclpy adds an ActionClient to its node before it is fully built)
        charger.executor.add_node(self.node)
        assert self.client.wait_for_server(timeout_sec=10.0)

    def close(self) -> None:
        self.client.destroy()
        self.node.destroy_node()

    def wait_until_free(self) -> None:
        """As a depot does between goals: wait until the last session has closed (a goal sent
        in Closing_Communication would take over the session that is ending)."""
        wait_until(
            lambda: self.availability and self.availability[-1] in ("available", "unavailable"),
            10.0,
            f"pistol 2 still {self.availability[-1:]}",
        )

    def goal_until_charging(self, **fields: Any) -> tuple[Any, list[Any]]:
        """Send a goal; return its handle and feedback once the pistol is charging."""
        feedback: list[Any] = []

        def on_feedback(msg: Any) -> None:
            feedback.append(msg.feedback)
            if msg.feedback.stage == Charge.Feedback.STAGE_CHARGING:
                self.charging_at.append(time.monotonic())

        sent = self.client.send_goal_async(Charge.Goal(**fields), feedback_callback=on_feedback)
        wait_until(
            lambda: (
                sent.done() and any(f.stage == Charge.Feedback.STAGE_CHARGING for f in feedback)
            ),
            30.0,
            f"pistol 2 never charging: {[f.stage_name for f in feedback]}",
        )
        handle = sent.result()
        assert handle.accepted
        return handle, feedback

    def result(self, handle: Any) -> Any:
        future = handle.get_result_async()
        wait_until(future.done, 30.0, "no result on pistol 2")
        return future.result().result

    def cancel_while_charging(self) -> None:
        """Cancel = user stop: the session ends normally, the result says CANCELLED."""
        handle, _ = self.goal_until_charging(target_soc=95.0)
        cancel = handle.cancel_goal_async()
        r = self.result(handle)
        assert cancel.done() and cancel.result().goals_canceling
        assert r.error_code == Charge.Result.CANCELLED, r.error_msg
        assert r.outcome == Charge.Result.OUTCOME_CANCELLED and r.safe_to_unplug
        assert r.session_end_state == Charge.Result.SESSION_END_CLEAN

    def fault_while_charging(self) -> None:
        """An EV emergency stop while charging: result code, no current, output de-energised."""
        handle, feedback = self.goal_until_charging(plug_in_timeout=30.0)
        wait_until(lambda: any(f.present_current > 10.0 for f in feedback), 10.0, "no current")
        call = self.ev_emergency.call_async(Trigger_request())
        wait_until(call.done, 5.0, "simulator/ev_emergency_stop did not answer")
        assert call.result().success, call.result().message
        r = self.result(handle)
        assert r.error_code == Charge.Result.EMERGENCY_STOP_PEV, (r.error_code, r.error_msg)
        assert r.outcome != Charge.Result.OUTCOME_COMPLETED and r.error_msg
        assert r.session_end_state == Charge.Result.SESSION_END_RUSHED
        # the safe state: no current, output de-energised, the session over (as measured by the
        # converter; the last feedback may still show the current of the charge: the server
        # publishes none in the step that decides the result)
        n = len(self.status)
        wait_until(
            lambda: (
                len(self.status) > n
                and abs(self.status[-1].current) < 1.0
                and self.status[-1].voltage < 60.0
            ),
            10.0,
            f"output not de-energised: {self.status[-1] if self.status else None}",
        )
        last = self.status[-1]
        assert last.mode != "REGULATE" or last.current_limit == 0.0, last


def Trigger_request() -> Any:
    from std_srvs.srv import Trigger

    return Trigger.Request()


def test_one_charge_one_cancel_one_fault_on_two_pistols_at_once(charger_factory: Any) -> None:
    """Pistol 1 charges to 60 % (the charge command's client) while pistol 2 runs a goal that
    is cancelled and then one that an EV emergency stop ends: each pistol keeps to itself."""
    charger = charger_factory(pistols=(1, 2))
    unplug: list[tuple[bool, int]] = []  # (value, number of feedbacks seen so far)
    feedback: list[Any] = []
    watcher = rclpy.create_node("e2e_watch", context=charger.context)
    watcher.create_subscription(
        SafeToUnplug,
        "/evse/pistol1/safe_to_unplug",
        lambda m: unplug.append((m.safe, len(feedback))),
        SAFE_TO_UNPLUG,
    )
    charger.executor.add_node(watcher)
    pistol2 = Pistol2(charger)
    outcome: list[Any] = []
    charging_times: list[float] = []  # pistol 1: arrival times of feedback in stage charging

    def on_feedback(fb: Any) -> None:
        feedback.append(fb)
        if fb.stage == Charge.Feedback.STAGE_CHARGING:
            charging_times.append(time.monotonic())

    def pistol1() -> None:
        code, result = run_charge(
            ChargeRequest(pistol_namespace("evse", 1), {"target_soc": 60.0}),
            out=io.StringIO(),
            on_feedback=on_feedback,
            context=charger.context,
        )
        outcome.append((code, result))

    thread = threading.Thread(target=pistol1)
    thread.start()
    try:
        pistol2.cancel_while_charging()
        pistol2.wait_until_free()
        pistol2.fault_while_charging()
    finally:
        thread.join(timeout=60.0)
        for node in (pistol2.node, watcher):  # no node of this test outlives it
            charger.executor.remove_node(node)
        pistol2.close()
        watcher.destroy_node()
    assert outcome, "pistol 1 did not finish"
    code, result = outcome[0]
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
    # both pistols were charging at the same time; each pistol's battery is its own
    p1, p2 = charging_times, pistol2.charging_at
    assert p1[0] < p2[-1] and p2[0] < p1[-1], (p1[0], p1[-1], p2[0], p2[-1])
    assert charger.inlets[1].battery is not charger.inlets[2].battery
    assert charger.inlets[2].battery.energy_charged_wh > 0.0


def test_main_job_command(tmp_path: Path) -> None:
    """The README's step 2: `evse-can-ros sim` charges and exits 0 (a separate process).

    With FAST simulator phases and the battery at sim.yaml's pace (200 times real time: 1 % of
    SoC in ~0.15 s, so the stop at the target may show one or two percent more under load, as
    the in-memory test_charger_sim.py::test_ccs_charge_to_80_percent allows too); the command
    without --params-file (sim.yaml as it is) runs in
    test_shutdown.py::test_sim_switches_the_output_off_on_sigterm_mid_charge.
    """
    import os
    import subprocess
    import sys

    sim_yaml = yaml.safe_load(SIM.read_text())["/**/controller_simulator"]["ros__parameters"]
    scale = sim_yaml["vehicle.soc_time_scale"]
    params = params_file(tmp_path, {"vehicle.soc_time_scale": scale})
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from evse_can_ros.tools.cli import main; sys.exit(main())",
            "sim",
            "--target-soc",
            "30",
            "--params-file",
            params,
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
    assert re.search(r"SoC: +20 % -> 3[0-2] %", proc.stdout), proc.stdout
    assert "Traceback" not in proc.stderr
