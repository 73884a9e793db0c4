"""End to end with ``converter_backend: infypower``: the module emulator on a second bus.

The acceptance runs of issue 14 in real time, kept short (high ``soc_time_scale``); the
module drop-out cases that need the 10 s cut-off run on a simulated clock in
test_infypower_charge.py.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")

from evse_can_ros.action import Charge  # noqa: E402
from evse_can_ros.msg import ConverterStatus  # noqa: E402
from evse_can_ros.nodeset import ChargerOptions, pistol_namespace  # noqa: E402
from evse_can_ros.ros.charge_client import ChargeRequest, run_charge  # noqa: E402
from evse_can_ros.ros.charger import Charger, ChargerError, init_context  # noqa: E402
from evse_can_ros.tools.resources import config_file  # noqa: E402

SIM = config_file("sim.yaml")


def params_file(tmp_path: Path, converter: dict[str, Any], emulator: dict[str, Any]) -> str:
    """sim.yaml, faster battery, with infypower.* and module_emulator parameters changed."""
    data = yaml.safe_load(SIM.read_text())
    data["/**/controller_simulator"]["ros__parameters"]["vehicle.soc_time_scale"] = 400.0
    data["/**/converter_driver"]["ros__parameters"].update(
        {f"infypower.{k}": v for k, v in converter.items()}
    )
    data["/**/module_emulator"]["ros__parameters"].update(emulator)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_sim_command_charges_20_to_80_percent_through_the_module_emulator(
    tmp_path: Path,
) -> None:
    """`evse-can-ros sim --converter-backend infypower` (a separate process) exits 0."""
    params = params_file(tmp_path, {}, {})
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from evse_can_ros.tools.cli import main; sys.exit(main())",
            "sim",
            "--converter-backend",
            "infypower",
            "--params-file",
            params,
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"},
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "result:        OK" in proc.stdout
    assert re.search(r"SoC: +20 % -> 8[0-3] %", proc.stdout), proc.stdout


def test_capacity_gone_mid_charge_ends_with_the_converter_fault_and_the_output_off(
    tmp_path: Path,
) -> None:
    """One of four modules drops out with min_modules 4: the session fails, output off."""
    params = params_file(
        tmp_path,
        {"min_modules": 4},
        # a short cut-off keeps the run short: the dropped module cannot hear the off command
        # and switches itself off (10 s on real modules; the simulated-clock test uses 10 s)
        {"fault": "drop_out", "fault_module": 3, "fault_delay": 1.0, "cutoff": 2.0},
    )
    options = ChargerOptions(
        can_interface="virtual",
        can_channel=f"e2e-infy-{uuid.uuid4().hex[:8]}",
        converter_backend="infypower",
        sim=True,
        params_file=params,
        log_level="error",
    )
    context = init_context(options)
    charger = Charger(options, context)
    try:
        faults: list[str] = []
        watcher = rclpy.create_node("e2e_infy_watch", context=context)
        watcher.create_subscription(
            ConverterStatus,
            pistol_namespace("evse", 1) + "/converter_status",
            lambda m: faults.append(m.fault) if m.fault else None,
            10,
        )
        charger.executor.add_node(watcher)
        charger.spin_in_thread()
        (plant,) = charger.plants
        code, result = run_charge(
            ChargeRequest(pistol_namespace("evse", 1), {"target_soc": 80.0}),
            out=io.StringIO(),
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
