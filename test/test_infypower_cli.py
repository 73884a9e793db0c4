"""``evse-can-ros simulate-modules``: the module emulator on a bus, serving a real backend."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from evse_can_ros.converter import Mode, Setpoint, create_backend
from evse_can_ros.tools.cli import main


def test_simulate_modules_serves_the_infypower_backend(capsys: pytest.CaptureFixture[str]) -> None:
    channel = f"cli-{uuid.uuid4().hex[:8]}"
    codes: list[int] = []
    argv = ["simulate-modules", "--interface", "virtual", "--channel", channel, "--modules", "2"]
    argv += ["--duration", "3", "--status-period", "0"]
    thread = threading.Thread(target=lambda: codes.append(main(argv)))
    thread.start()
    backend = create_backend(
        "infypower",
        {
            "can_interface": "virtual",
            "can_channel": channel,
            "module_addresses": "0-1",
            "poll_period": 0.2,
            "frame_spacing": 0.01,
            "reply_timeout": 1.0,
            "offline_timeout": 11.5,
        },
    )
    backend.open()
    try:
        backend.wake()
        deadline = time.monotonic() + 2.0
        m = backend.read(time.monotonic())
        while not m.ready and time.monotonic() < deadline:
            time.sleep(0.02)
            m = backend.read(time.monotonic())
        assert m.ready, backend.supervisor.events  # type: ignore[attr-defined]
        assert backend.capabilities(time.monotonic()).max_current == 100.0
        sp = Setpoint(Mode.REGULATE, 400.0, 10.0)
        while m.voltage < 100.0 and time.monotonic() < deadline + 0.8:
            backend.apply(sp, time.monotonic())
            time.sleep(0.02)
            m = backend.read(time.monotonic())
        assert m.output_enabled and m.voltage > 100.0
    finally:
        backend.close()
    thread.join(timeout=10.0)
    assert codes == [0]
    assert "2 InfyPower module(s), addresses 0..1" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "code", "text"),
    [
        (["--modules", "99"], 2, "modules = 99 is above the maximum 60"),
        (["--fault", "drop_out", "--fault-module", "7"], 2, "fault_module 7"),
        (["--interface", "no_such_bus"], 1, "cannot open no_such_bus:can1"),
    ],
)
def test_bad_options_are_one_line(
    argv: list[str], code: int, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate-modules", "--duration", "0.1", *argv]) == code
    err = capsys.readouterr().err
    assert text in err and err.count("\n") == 1
