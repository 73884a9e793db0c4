"""End to end with ``converter_backend: infypower``: the module emulator on a second bus.

The ROS wiring of issue 14's acceptance runs: a charge and a module drop-out through the node
set that `evse-can-ros sim --converter-backend infypower` starts, in one process with short
simulator timing. The charges themselves (20 -> 80 % through four modules, drop-outs with and
without capacity left, after the modules' 10 s cut-off) run on a simulated clock in
test_infypower_charge.py; the command line's --converter-backend is checked in test_cli.py and
the `sim` command as a separate process in test_e2e_sim.py::test_main_job_command.
"""

from __future__ import annotations

import io
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")

from evse_can_ros.action import Charge  # noqa: E402
from evse_can_ros.msg import ChargerAvailability, ConverterStatus  # noqa: E402
from evse_can_ros.nodeset import ChargerOptions, pistol_namespace  # noqa: E402
from evse_can_ros.ros.charge_client import ChargeRequest, run_charge  # noqa: E402
from evse_can_ros.ros.charger import Charger, ChargerError, init_context  # noqa: E402
from evse_can_ros.ros.interfaces import LATCHED  # noqa: E402
from evse_can_ros.tools.resources import config_file  # noqa: E402

SIM = config_file("sim.yaml")

FAST = {
    "vehicle.soc_time_scale": 400.0,
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
"""The wiring is the point here, not the charge: a fast battery and short simulator phases."""


def params_file(tmp_path: Path, converter: dict[str, Any], emulator: dict[str, Any]) -> str:
    """sim.yaml with FAST, with infypower.* and module_emulator parameters changed."""
    data = yaml.safe_load(SIM.read_text())
    data["/**/controller_simulator"]["ros__parameters"].update(FAST)
    data["/**/converter_driver"]["ros__parameters"].update(
        {f"infypower.{k}": v for k, v in converter.items()}
    )
    data["/**/module_emulator"]["ros__parameters"].update(emulator)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_a_charge_then_capacity_gone_mid_charge_through_the_module_emulator(
    tmp_path: Path,
) -> None:
    """Four emulated modules, min_modules 4. The first goal charges to 30 % and succeeds; in
    the second, one module drops out while charging: the session fails with the converter
    fault (not the controller's consequent emergency stop) and every module's output is off."""
    params = params_file(
        tmp_path,
        {"min_modules": 4},
        # a short cut-off keeps the run short: the dropped module cannot hear the off command
        # and switches itself off (10 s on real modules; the simulated-clock test uses 10 s);
        # a smaller bleed resistor discharges the output faster after the insulation test
        {"cutoff": 2.0, "bleed_resistance": 500.0},
    )
    options = ChargerOptions(
        can_interface="virtual",
        can_channel=f"e2e-infy-{uuid.uuid4().hex[:8]}",
        converter_backend="infypower",
        sim=True,
        params_file=params,
        log_level="error",
    )
    ns = pistol_namespace("evse", 1)
    context = init_context(options)
    charger = Charger(options, context)
    watcher = None
    try:
        faults: list[str] = []
        availability: list[str] = []
        watcher = rclpy.create_node("e2e_infy_watch", context=context)
        watcher.create_subscription(
            ConverterStatus,
            ns + "/converter_status",
            lambda m: faults.append(m.fault) if m.fault else None,
            10,
        )
        watcher.create_subscription(
            ChargerAvailability,
            ns + "/charger_availability",
            lambda m: availability.append(m.availability_name),
            LATCHED,
        )
        charger.executor.add_node(watcher)
        charger.spin_in_thread()
        (plant,) = charger.plants

        # 1. a charge through the backend and the module emulator
        out = io.StringIO()
        code, result = run_charge(
            ChargeRequest(ns, {"target_soc": 30.0}), out=out, context=context
        )
        assert code == 0, out.getvalue()
        assert result.outcome == Charge.Result.OUTCOME_LIMIT_REACHED
        assert result.initial_soc == 20.0 and result.final_soc >= 30.0 and result.safe_to_unplug
        assert result.energy_delivered > 0.0 and not faults
        with plant.lock:
            assert not plant.emulator.output_on

        # 2. as a depot does: the next goal once the session has closed; a module drops out
        wait_until(
            lambda: availability and availability[-1] in ("available", "unavailable"),
            10.0,
            f"still {availability[-1:]}",
        )
        feedback: list[Any] = []

        def drop_out_when_charging(fb: Any) -> None:
            feedback.append(fb)
            if fb.stage == Charge.Feedback.STAGE_CHARGING and fb.present_current > 10.0:
                with plant.lock:
                    if "drop_out" not in plant.emulator.modules[3].faults:
                        plant.emulator.inject(3, "drop_out")

        code, result = run_charge(
            ChargeRequest(ns, {"target_soc": 80.0}),
            out=io.StringIO(),
            on_feedback=drop_out_when_charging,
            context=context,
        )
        assert code != 0 and result.outcome == Charge.Result.OUTCOME_FAILED
        assert any("only 3 of 4 InfyPower modules online" in f for f in faults), faults[:3]
        # The converter fault is the first cause, not the controller's consequent emergency stop.
        assert result.error_code == Charge.Result.CONVERTER_FAULT, result.error_msg
        assert result.final_soc < 80.0 and result.safe_to_unplug
        with plant.lock:
            assert not plant.emulator.output_on and plant.emulator.current == 0.0
    finally:
        if watcher is not None:
            charger.executor.remove_node(watcher)
            watcher.destroy_node()
        charger.destroy()
        rclpy.try_shutdown(context=context)


def test_two_pistols_on_one_module_bus_are_refused(tmp_path: Path) -> None:
    options = ChargerOptions(
        pistols=(1, 2),
        can_interface="virtual",
        can_channel=f"e2e-infy-{uuid.uuid4().hex[:8]}",
        converter_backend="infypower",
        sim=True,
        params_file=str(SIM),
        log_level="error",
    )
    context = init_context(options)
    try:
        with pytest.raises(ChargerError, match="two InfyPower backends share virtual:evse-sim"):
            Charger(options, context)
    finally:
        rclpy.try_shutdown(context=context)
