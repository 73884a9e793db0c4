"""Interface v3 through ROS: the ``sim`` command with a V2G vehicle (issue 18 acceptance).

One process, every node on ``protocol_version`` 3 (config/sim_v2g.yaml): the bridge's v3 codec
and EV_Information topics, the converter driver on dc_power_control / ocpp_control and the
charge server's operating point. The V2G decisions themselves are tested on the in-memory
charger (test_charger_v3.py); this proves the wiring.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros


def test_sim_v2g_discharges_then_charges_and_exits_0(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from evse_can_ros.tools.cli import main; sys.exit(main())",
            "sim",
            "--params-file",
            "sim_v2g.yaml",  # a packaged configuration, by name
            "--max-discharge-current",
            "100",
            "--min-soc",
            "72",
            "--target-soc",
            "82",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"},
        cwd=tmp_path,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "result:        OK" in out and "session end:   Clean_Stop" in out
    assert re.search(r"charging\s+\d+\.\d V\s+-\d+\.\d A", out), out  # discharging
    exported = re.search(r"exported:\s+(-\d+\.\d+) kWh", out)
    assert exported and float(exported.group(1)) < 0, out
    assert "SoC:           80 % -> 8" in out
    assert "Traceback" not in proc.stderr
