"""Conformance of the project's own CAN databases with the vendor's KCD and DBC.

Interface v2: our v2 database against the vendor's v2.7 files (spec 5-7). Interface v3: our v3
database against the vendor's v3.6 files (v3 digest 2-4). Every test runs for both versions.
"""

from __future__ import annotations

import cantools
import pytest

from evse_can_ros.protocol import default_database_path

from .conftest import vendor_database

UNIT_ALIASES = {"degC": "°C"}  # our DBC is ASCII only (spec D15); the vendor writes a degree sign
NODE_ALIASES = {  # our node names -> the vendor's
    "Customer_Controller": "Generic_Power_Modules",
    "Advantics_Controller": "Advantics_Charge_Controller",
}
# protocol_version -> (messages, signals, label sets) of the vendor database
COUNTS = {2: (19, 87, 16), 3: (23, 106, 20)}


@pytest.fixture(scope="module", params=[2, 3], ids=["v2", "v3"])
def version(request) -> int:  # type: ignore[no-untyped-def]
    return int(request.param)


@pytest.fixture(scope="module")
def ours(version):  # type: ignore[no-untyped-def]
    return cantools.database.load_file(str(default_database_path(version)), strict=True)


def test_database_is_plain_ascii(version: int) -> None:
    default_database_path(version).read_bytes().decode("ascii")


def test_message_and_signal_counts(ours, version) -> None:  # type: ignore[no-untyped-def]
    messages, signals, _ = COUNTS[version]
    assert len(ours.messages) == messages
    assert sum(len(m.signals) for m in ours.messages) == signals


@pytest.mark.parametrize("fmt", ["kcd", "dbc"])
def test_every_message_and_signal_matches_vendor(ours, version, fmt) -> None:  # type: ignore[no-untyped-def]
    vendor = vendor_database(version, fmt)
    assert sorted(m.name for m in ours.messages) == sorted(m.name for m in vendor.messages)
    mismatches = []
    for m in ours.messages:
        v = vendor.get_message_by_name(m.name)
        for attr in ("frame_id", "is_extended_frame", "length", "cycle_time"):
            if getattr(m, attr) != getattr(v, attr):
                mismatches.append(f"{m.name}.{attr}: {getattr(m, attr)} != {getattr(v, attr)}")
        senders = [NODE_ALIASES.get(s, s) for s in m.senders]
        if senders != v.senders:
            mismatches.append(f"{m.name}.senders: {senders} != {v.senders}")
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


def test_every_label_set_is_present(ours, version) -> None:  # type: ignore[no-untyped-def]
    vendor = vendor_database(version, "kcd")
    ours_sets = {(m.name, s.name) for m in ours.messages for s in m.signals if s.choices}
    vendor_sets = {(m.name, s.name) for m in vendor.messages for s in m.signals if s.choices}
    assert ours_sets == vendor_sets
    assert len(ours_sets) == COUNTS[version][2]


def test_direction_senders(ours) -> None:  # type: ignore[no-untyped-def]
    for m in ours.messages:
        from_controller = bool(m.frame_id & 0x8000)
        assert m.senders == (
            ["Advantics_Controller"] if from_controller else ["Customer_Controller"]
        )


def test_bus_defaults_documented(ours) -> None:  # type: ignore[no-untyped-def]
    assert ours.dbc.attributes["Baudrate"].value == 500000
