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
