"""Conformance of the project's own CAN database with the vendor's v2.7 KCD and DBC (spec 5-7)."""

from __future__ import annotations

import cantools
import pytest

from evse_can_ros.protocol import default_database_path

UNIT_ALIASES = {"degC": "°C"}  # our DBC is ASCII only (spec D15); the vendor writes a degree sign


@pytest.fixture(scope="module")
def ours():  # type: ignore[no-untyped-def]
    return cantools.database.load_file(str(default_database_path()), strict=True)


def test_database_is_plain_ascii() -> None:
    default_database_path().read_bytes().decode("ascii")


def test_nineteen_messages_and_87_signals(ours) -> None:  # type: ignore[no-untyped-def]
    assert len(ours.messages) == 19
    assert sum(len(m.signals) for m in ours.messages) == 87


@pytest.mark.parametrize("vendor_fixture", ["vendor_kcd", "vendor_dbc"])
def test_every_message_and_signal_matches_vendor(ours, vendor_fixture, request) -> None:  # type: ignore[no-untyped-def]
    vendor = request.getfixturevalue(vendor_fixture)
    assert sorted(m.name for m in ours.messages) == sorted(m.name for m in vendor.messages)
    mismatches = []
    for m in ours.messages:
        v = vendor.get_message_by_name(m.name)
        for attr in ("frame_id", "is_extended_frame", "length", "cycle_time"):
            if getattr(m, attr) != getattr(v, attr):
                mismatches.append(f"{m.name}.{attr}: {getattr(m, attr)} != {getattr(v, attr)}")
        assert [s.name for s in m.signals] == [s.name for s in v.signals], m.name
        for s in m.signals:
            t = v.get_signal_by_name(s.name)
            for attr in (
                "start",
                "length",
                "byte_order",
                "is_signed",
                "scale",
                "offset",
                "minimum",
                "maximum",
            ):
                if getattr(s, attr) != getattr(t, attr):
                    mismatches.append(
                        f"{m.name}.{s.name}.{attr}: {getattr(s, attr)} != {getattr(t, attr)}"
                    )
            ours_labels = {int(k): str(x) for k, x in (s.choices or {}).items()}
            vendor_labels = {int(k): str(x) for k, x in (t.choices or {}).items()}
            if ours_labels != vendor_labels:
                mismatches.append(f"{m.name}.{s.name} labels: {ours_labels} != {vendor_labels}")
            if UNIT_ALIASES.get(s.unit or "", s.unit or "") != (t.unit or ""):
                mismatches.append(f"{m.name}.{s.name}.unit: {s.unit!r} != {t.unit!r}")
    assert not mismatches, "\n".join(mismatches)


def test_every_label_set_is_present(ours, vendor_kcd) -> None:  # type: ignore[no-untyped-def]
    ours_sets = {(m.name, s.name) for m in ours.messages for s in m.signals if s.choices}
    vendor_sets = {(m.name, s.name) for m in vendor_kcd.messages for s in m.signals if s.choices}
    assert ours_sets == vendor_sets
    assert len(ours_sets) == 16


def test_direction_senders(ours) -> None:  # type: ignore[no-untyped-def]
    for m in ours.messages:
        from_controller = bool(m.frame_id & 0x8000)
        assert m.senders == (
            ["Advantics_Controller"] if from_controller else ["Customer_Controller"]
        )


def test_bus_defaults_documented(ours) -> None:  # type: ignore[no-untyped-def]
    assert ours.dbc.attributes["Baudrate"].value == 500000
