"""The evse-can-ros command: exit codes and one-line errors."""

from __future__ import annotations

import pytest

from evse_can_ros.tools.cli import main


def test_decode_prints_typed_fields(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", "01068009#07", "01060010#A00FE7044B4601FA"]) == 0
    out = capsys.readouterr().out
    assert "pistol 1 Advantics_Controller_Status {'state': 'Charging'}" in out
    assert "'present_voltage': 400.0" in out and "'present_current': 125.5" in out


def test_decode_reports_bad_frames_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", "01068009#0700", "--pistol", "1"]) == 1  # the tool shows the DLC
    assert "DLC 2, expected 1" in capsys.readouterr().out
    assert main(["decode", "01068009#0700", "--pistol-index", "1"]) == 1  # the former name


@pytest.mark.parametrize("text", ["nonsense", "0106800G#00", "01068009#001122334455667788"])
def test_unparsable_input_is_one_line(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", text]) == 2
    err = capsys.readouterr().err
    assert err.startswith("evse-can-ros decode: error:") and err.count("\n") == 1


def test_help_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    with pytest.raises(SystemExit) as info:
        main(["no-such-command"])
    assert info.value.code == 2


def test_sim_options_select_the_backend_and_a_fresh_in_process_bus() -> None:
    """`evse-can-ros sim --converter-backend infypower` -> the node set the charger starts
    (the charge through it runs in test_e2e_infypower.py)."""
    import os

    from evse_can_ros.tools.cli import build_parser, charger_options

    args = build_parser().parse_args(["sim", "--converter-backend", "infypower", "--pistols", "2"])
    options = charger_options(args, sim=True)
    assert options.converter_backend == "infypower" and options.sim
    assert options.pistols == (2,) and options.can_interface == "virtual"
    assert options.can_channel == f"evse-sim-{os.getpid()}"
    assert options.params_file == ""  # _cmd_sim then takes the packaged sim.yaml
