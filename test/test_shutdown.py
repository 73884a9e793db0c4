"""Shutdown always de-energises (issue 12 item 4): signals, and errors while tearing down.

Every converter output is commanded off (backend ``stop()``) before the nodes are destroyed, for
SIGINT and SIGTERM to ``evse-can-ros run``, ``evse-can-ros sim`` and the node executables, and
an exception in any node's ``destroy_node`` never skips the others.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")

from evse_can_ros.nodeset import ChargerOptions  # noqa: E402
from evse_can_ros.ros.charger import Charger, init_context  # noqa: E402
from evse_can_ros.tools.resources import config_file  # noqa: E402

CLI = [
    sys.executable,
    "-c",
    "import sys; from evse_can_ros.tools.cli import main; sys.exit(main())",
]


def start(args: list[str], ready: str, tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    """Start a process; wait until ``ready`` appears in its output (stdout + stderr)."""
    log = tmp_path / f"out-{uuid.uuid4().hex[:6]}.log"
    handle = log.open("w")
    proc = subprocess.Popen(
        args,
        stdout=handle,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "PYTHONUNBUFFERED": "1"},
    )
    wait_for_line(proc, log, ready)
    return proc, log


def wait_for_line(proc: subprocess.Popen[str], log: Path, text: str) -> None:
    deadline = time.monotonic() + 30.0
    while text not in log.read_text():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


def stop_and_read(proc: subprocess.Popen[str], log: Path, sig: int) -> tuple[int, str]:
    proc.send_signal(sig)
    try:
        code = proc.wait(timeout=20.0)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return code, log.read_text()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_run_switches_the_output_off_on_a_signal(sig: int, tmp_path: Path) -> None:
    channel = f"shut-{uuid.uuid4().hex[:6]}"
    proc, log = start(
        [*CLI, "run", "--sim", "--can-interface", "virtual", "--can-channel", channel,
         "--params-file", str(config_file("sim.yaml")), "--log-level", "info"],
        "charger running",
        tmp_path,
    )  # fmt: skip
    # the executor runs: the charge server has stepped (its first authorisation decision)
    wait_for_line(proc, log, "Start_Charge_Authorisation -> Not_Allowed")
    code, text = stop_and_read(proc, log, sig)
    assert code == 0, text
    assert "output off: shutdown" in text
    assert "Traceback" not in text


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_run_with_two_pistols_shuts_down_cleanly(sig: int, tmp_path: Path) -> None:
    """Either signal only ends the spin loop (the handler may run inside a callback); the
    charger's destroy then turns every output off and destroys the nodes."""
    channel = f"shut-{uuid.uuid4().hex[:6]}"
    proc, log = start(
        [*CLI, "run", "--pistols", "1,2", "--can-interface", "virtual", "--can-channel",
         channel, "--log-level", "info"],
        "charger running",
        tmp_path,
    )  # fmt: skip
    time.sleep(1.0)
    code, text = stop_and_read(proc, log, sig)
    assert code == 0, text
    for pistol in (1, 2):  # released by the context's shutdown, or by the charger's destroy
        assert f"[evse.pistol{pistol}.converter_driver]: output off" in text, text
    assert "Traceback" not in text


def test_sim_switches_the_output_off_on_sigterm_mid_charge(tmp_path: Path) -> None:
    proc, log = start([*CLI, "sim", "--log-level", "info"], "charging", tmp_path)
    code, text = stop_and_read(proc, log, signal.SIGTERM)
    assert "output off: shutdown" in text, text
    assert "Traceback" not in text
    assert code != 0  # the charge did not complete


def test_node_executable_switches_the_output_off_on_sigterm(tmp_path: Path) -> None:
    exe = next(
        (
            p / "lib" / "evse_can_ros" / "converter_driver"
            for p in map(Path, os.environ.get("AMENT_PREFIX_PATH", "").split(":"))
            if (p / "lib" / "evse_can_ros" / "converter_driver").exists()
        ),
        None,
    )
    assert exe is not None, "converter_driver not installed (run scripts/setup.sh)"
    proc, log = start(
        [sys.executable, str(exe), "--ros-args", "-r", f"__ns:=/shut{uuid.uuid4().hex[:6]}"],
        "converter driver active",
        tmp_path,
    )
    code, text = stop_and_read(proc, log, signal.SIGTERM)
    assert code == 0, text
    assert "output off: released" in text and "DDS domain " in text
    assert "Traceback" not in text


BUSY_NODE = """
import sys, time
from rclpy.node import Node
from evse_can_ros.ros.node_main import run_node

class Busy(Node):
    def __init__(self):
        super().__init__("busy_" + sys.argv[1])
        self.create_timer(0.001, self.tick)
        print("busy node up", flush=True)

    def tick(self):  # busy in a callback almost all the time
        try:
            end = time.monotonic() + 0.05
            while time.monotonic() < end:
                pass
        except KeyboardInterrupt:
            print("KeyboardInterrupt inside a callback", flush=True)
            raise

sys.exit(run_node(Busy, "busy", []))
"""


def test_a_signal_never_raises_inside_the_executor(tmp_path: Path) -> None:
    """Ctrl-C to a node executable sets a flag (node_main._flag_signals) instead of raising
    KeyboardInterrupt at whatever bytecode the main thread is on: inside the executor's C++ code
    the EventsExecutor once turned that into a RuntimeError, a traceback and exit code 1."""
    proc, log = start(
        [sys.executable, "-c", BUSY_NODE, uuid.uuid4().hex[:6]], "busy node up", tmp_path
    )
    time.sleep(0.5)
    code, text = stop_and_read(proc, log, signal.SIGINT)
    assert code == 0, text
    assert "KeyboardInterrupt inside a callback" not in text
    assert "Traceback" not in text


def test_a_guarded_error_while_shutting_down_is_safe_and_quiet(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A timer that runs while rclpy shuts the context down (Ctrl-C) fails to publish: the guard
    still runs the safe-state reaction, whose report cannot be published either. No traceback
    then (one appeared in the ``ros2 launch`` output); while the context is up it stays loud."""
    from types import SimpleNamespace

    from evse_can_ros.ros.common import Guard

    up = [False]
    reactions: list[str] = []

    def publish(*_: Any) -> None:
        raise RuntimeError("Failed to publish: publisher's context is invalid")

    def on_error(where: str, exc: BaseException) -> None:
        reactions.append(where)  # (the driver latches its output off here, then publishes)
        publish()

    node = SimpleNamespace(
        context=SimpleNamespace(ok=lambda: up[0]), get_logger=lambda: logging.getLogger("node")
    )
    guard = Guard(node, on_error)  # type: ignore[arg-type]
    with caplog.at_level(logging.DEBUG):
        assert guard("diagnostics", publish) is None
        assert reactions == ["diagnostics"]
        assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
        up[0] = True
        guard("diagnostics", publish)
    assert reactions == ["diagnostics", "diagnostics"]
    assert [r for r in caplog.records if r.exc_info], "a failed reaction must be logged loudly"


@pytest.mark.parametrize("broken", ["can_bridge", "charge_server", "controller_simulator"])
def test_an_error_in_any_destroy_never_skips_the_output_off(broken: str) -> None:
    options = ChargerOptions(
        can_interface="virtual",
        can_channel=f"shut-{uuid.uuid4().hex[:6]}",
        sim=True,
        params_file=str(config_file("sim.yaml")),
        log_level="error",
    )
    context = init_context(options)
    charger = Charger(options, context)
    try:
        driver = charger.drivers()[0]
        backend = driver.backend
        assert backend is not None
        stops: list[float] = []
        original = backend.stop

        def spy() -> None:
            stops.append(time.monotonic())
            original()

        backend.stop = spy  # type: ignore[method-assign]
        node = next(n for n in charger.nodes if n.get_name() == broken)
        destroyed: list[str] = []
        for n in charger.nodes:
            real = n.destroy_node

            def record(n: Any = n, real: Any = real) -> None:
                destroyed.append(n.get_name())
                if n is node:
                    raise RuntimeError("injected")
                real()

            n.destroy_node = record  # type: ignore[method-assign]
        charger.destroy()
        node.destroy_node = type(node).destroy_node.__get__(node)  # type: ignore[method-assign]
        assert stops, "the output was never commanded off"
        assert sorted(destroyed) == sorted(
            ["can_bridge", "converter_driver", "charge_server", "controller_simulator"]
        )
    finally:
        rclpy.try_shutdown(context=context)
