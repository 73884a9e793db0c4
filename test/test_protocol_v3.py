"""Interface v3 in the protocol layer: version selection, golden frames, the v3 delta checklist.

Golden frames are worked out by hand from the v3 digest tables and must decode strictly with the
vendor's v3.6 KCD and DBC. Tests named ``test_v3_NN_...`` implement the protocol-layer part of
item V3-NN of the digest's delta checklist (v3 digest 10).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evse_can_ros.protocol import (
    MESSAGE_TYPES,
    MESSAGE_TYPES_V3,
    AdmCsSeccOutputs,
    AdmCsSpccOutputs,
    AdvanticsControllerStatus,
    ButtonState,
    CanFrame,
    CanMessage,
    Codec,
    CommunicationProtocol,
    Completion,
    ContactorState,
    ControllerState,
    DatabaseError,
    DcPowerControl,
    DcPowerParameters,
    EvInformationBattery,
    EvInformationChargeLimits,
    EvInformationDischargeLimits,
    EvInformationEnergy,
    EvInformationVoltages,
    FrameLengthError,
    NewChargeSession,
    NewChargeSessionV3,
    OcppControl,
    Permission,
    PlugAndPins,
    PowerFunction,
    PowerModulesStatus,
    ProtocolVersion,
    ProtocolVersionError,
    SequenceControl,
    SetpointsMode,
    SignalRangeError,
    UnknownMessageError,
    Validity,
    VoltageLowering,
    default_database_path,
    load_codec,
    make_can_id,
)

from .conftest import vendor_database, vendor_dir
from .test_protocol_roundtrip import raw_strategy, typed_from_raw

V3 = load_codec(protocol_version=3)


def dpc(
    function: PowerFunction = PowerFunction.POWER_TRANSFER,
    voltage: float = 450.0,
    range_max: float = 100.0,
    range_min: float = 100.0,
    *,
    mode: SetpointsMode = SetpointsMode.TARGET_MODE,
    contactors: ContactorState = ContactorState.CLOSE,
    lowering: VoltageLowering = VoltageLowering.NO_LOWERING,
) -> DcPowerControl:
    return DcPowerControl(voltage, range_max, range_min, function, mode, contactors, lowering)


def vendor_strict_decode(fmt: str, frame: CanFrame) -> dict[str, Any]:
    """Decode ``frame`` with the vendor v3.6 database: exact DLC, no excess, strict re-encode."""
    vendor = vendor_database(3, fmt).get_message_by_frame_id(frame.arbitration_id & 0xFFFFFF)
    values: dict[str, Any] = vendor.decode(
        frame.data, decode_choices=False, allow_truncated=False, allow_excess=False
    )
    assert vendor.encode(values, strict=True) == frame.data
    return {"name": vendor.name, **values}


# --- selecting the version ------------------------------------------------------------------


def test_v3_codec_is_loaded_once_and_separate_from_v2() -> None:
    assert load_codec(protocol_version=3) is V3
    assert load_codec(default_database_path(3), ProtocolVersion.V3) is V3
    assert load_codec() is not V3 and load_codec().protocol_version is ProtocolVersion.V2
    assert V3.protocol_version is ProtocolVersion.V3
    assert V3.database_path.name == "generic_evse_can_v3.dbc"
    assert V3.message_names == tuple(t.NAME for t in MESSAGE_TYPES_V3)
    assert len(V3.message_names) == 23


@pytest.mark.parametrize("bad", [1, 4, 0, "3", 3.0, True, None])
@pytest.mark.parametrize("loader", [Codec, load_codec])
def test_invalid_protocol_version_is_refused(loader: Any, bad: object) -> None:
    with pytest.raises(ProtocolVersionError, match="protocol_version must be 2 or 3") as info:
        loader(protocol_version=bad)
    assert "\n" not in str(info.value)


def test_version_properties() -> None:
    assert [(v.database_file, v.database_revision) for v in ProtocolVersion] == [
        ("generic_evse_can_v2.dbc", "2.7"),
        ("generic_evse_can_v3.dbc", "3.6"),
    ]
    assert ProtocolVersion.of(3) is ProtocolVersion.V3
    assert ProtocolVersion.V2.message_types is MESSAGE_TYPES


@pytest.mark.parametrize("fmt", ["kcd", "dbc"])
def test_vendor_v3_databases_are_accepted_as_overrides(fmt: str) -> None:
    codec = Codec(vendor_dir() / f"Advantics_Generic_EVSE_protocol_v3.6.{fmt}", 3)
    message = DcPowerParameters(920.0, 500.0, 200.0)
    assert codec.encode(message, 1) == V3.encode(message, 1)


@pytest.mark.parametrize(
    ("path", "version", "wrong"),
    [
        (default_database_path(2), 3, 2),
        (vendor_dir() / "Advantics_Generic_EVSE_protocol_v2.7.kcd", 3, 2),
        (default_database_path(3), 2, 3),
        (vendor_dir() / "Advantics_Generic_EVSE_protocol_v3.6.dbc", 2, 3),
    ],
)
def test_database_of_the_other_version_is_refused(path: Any, version: int, wrong: int) -> None:
    with pytest.raises(DatabaseError, match=f"is an interface v{wrong} database") as info:
        Codec(path, version)
    assert f"protocol_version is {version}" in str(info.value) and "\n" not in str(info.value)


def test_v3_names_on_v2_identifiers_are_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A v3.0-era database (v3 names, still v2 ids) is not wire compatible (v3 digest 2)."""
    v2_id = str(0x8000_0000 | 0x68005)  # the v2 Charging_Loop slot
    text = default_database_path(3).read_text().replace("2147921923", v2_id)
    edited = tmp_path / "v3_0.dbc"
    edited.write_text(text)
    with pytest.raises(DatabaseError, match=r"DC_Power_Control .* not an interface v3 identifier"):
        Codec(edited, 3)


def test_v3_database_with_a_wrong_label_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    text = default_database_path(3).read_text().replace('8 "Power_Transfer"', '8 "Transfer"')
    edited = tmp_path / "edited.dbc"
    edited.write_text(text)
    with pytest.raises(DatabaseError, match="Power_Function labels"):
        Codec(edited, 3)


def test_frames_of_the_other_version_are_unknown() -> None:
    v2 = load_codec()
    heartbeat_v2 = CanFrame(0x01068009, b"\x07")
    heartbeat_v3 = CanFrame(0x0106B000, b"\x07")
    assert v2.decode(heartbeat_v2, 1) == V3.decode(heartbeat_v3, 1)
    with pytest.raises(UnknownMessageError):
        V3.decode(heartbeat_v2, 1)
    with pytest.raises(UnknownMessageError):
        v2.decode(heartbeat_v3, 1)


# --- message set: what is shared with v2 and what is new ------------------------------------


def _layout(version: int, name: str) -> tuple[Any, ...]:
    m = vendor_database(version, "kcd").get_message_by_name(name)
    attrs = ("name", "start", "length", "is_signed", "scale", "offset", "minimum", "maximum")
    signals = [
        [getattr(s, a) for a in attrs] + [{int(k): str(v) for k, v in (s.choices or {}).items()}]
        for s in m.signals
    ]
    return m.length, m.cycle_time, signals


@pytest.mark.parametrize("name", [t.NAME for t in MESSAGE_TYPES_V3])
def test_a_v2_class_is_reused_exactly_when_the_layout_is_unchanged(name: str) -> None:
    v2_names = {t.NAME: t for t in MESSAGE_TYPES}
    v3_class = V3.spec(name).type
    unchanged = name in v2_names and _layout(2, name) == _layout(3, name)
    assert (v3_class is v2_names.get(name)) == unchanged


def test_v3_drops_the_v2_power_commands() -> None:
    removed = {"Power_Modules_Limits", "Insulation_Test", "Precharge", "Charging_Loop"}
    added = {
        "DC_Power_Parameters",
        "DC_Power_Control",
        "EV_Information_Battery",
        "EV_Information_Voltages",
        "EV_Information_Charge_Limits",
        "EV_Information_Discharge_Limits",
        "EV_Information_Energy",
        "OCPP_Control",
    }
    v2 = set(load_codec().message_names)
    assert v2 - set(V3.message_names) == removed
    assert set(V3.message_names) - v2 == added
    assert V3.spec("New_Charge_Session").type is NewChargeSessionV3 is not NewChargeSession


# --- golden frames the power side sends (v3 digest 4.1-4.5), decoded by the vendor ------------

GOLDEN_TX = [
    (  # 400 V, 125.5 A from the vehicle (discharge), 35/30 degC, enabled, 500 kOhm
        PowerModulesStatus(400.0, -125.5, 35, 30, Permission.ALLOWED, 500),
        0x01063000,
        "A0 0F 19 FB 4B 46 01 FA",
    ),
    (  # 920 V, 500 A charge, 200 A discharge, Range_Target_Current 0 (B8)
        DcPowerParameters(920.0, 500.0, 200.0),
        0x01063001,
        "F0 23 88 13 D0 07 00 00",
    ),
    (
        SequenceControl(
            Permission.ALLOWED,
            ButtonState.NOT_PRESSED,
            Completion.DONE,
            Validity.VALID,
            Completion.DONE,
            ButtonState.NOT_PRESSED,
        ),
        0x01063002,
        "01 07 00",
    ),
    (
        AdmCsSeccOutputs(True, False, True, False, 100, 50, 255),
        0x01063201,
        "45 26 F3 0F 00 00 00 00",
    ),
    (AdmCsSpccOutputs(True, True, 1, 2, 3), 0x01063202, "07 08 0C 00 00 00 00 00"),
]


@pytest.mark.parametrize("fmt", ["kcd", "dbc"])
@pytest.mark.parametrize(
    ("message", "can_id", "hex_data"), GOLDEN_TX, ids=[m.NAME for m, _, _ in GOLDEN_TX]
)
def test_golden_tx_frames_decode_strictly_with_the_vendor(
    message: CanMessage, can_id: int, hex_data: str, fmt: str
) -> None:
    frame = V3.encode(message, 1)
    assert (frame.arbitration_id, frame.data) == (can_id, bytes.fromhex(hex_data))
    assert frame.is_extended_id
    assert V3.decode(frame, 1) == message
    theirs = vendor_strict_decode(fmt, frame)
    name, ours = V3.decode_signals(frame, 1)
    assert theirs.pop("name") == name
    assert theirs == pytest.approx(ours, abs=1e-9)


TX_NAMES = [n for n in V3.message_names if not V3.spec(n).from_controller]


@pytest.mark.parametrize("fmt", ["kcd", "dbc"])
@pytest.mark.parametrize("name", TX_NAMES)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_every_tx_frame_decodes_strictly_with_the_vendor(
    name: str, fmt: str, data: st.DataObject
) -> None:
    """Acceptance of issue 18: every frame the power side sends in v3 is valid vendor v3.6."""
    message = typed_from_raw(V3, name, data.draw(raw_strategy(V3, name)))
    frame = V3.encode(message, data.draw(st.integers(1, 31)))
    assert vendor_strict_decode(fmt, frame)["name"] == name


# --- DC_Power_Control worked encodings (v3 digest 4.9) ----------------------------------------


@pytest.mark.parametrize(
    ("hex_data", "message"),
    [
        ("00 00 00 00 00 00 41", dpc(PowerFunction.STANDBY, 0, 0, 0)),
        ("88 13 00 00 00 00 42", dpc(PowerFunction.INSULATION_TEST, 500.0, 0, 0)),
        (
            "94 11 E8 03 E0 FC 68",
            dpc(PowerFunction.POWER_TRANSFER, 450.0, 100.0, -80.0, mode=SetpointsMode.RANGE_MODE),
        ),
        (
            "00 00 00 00 00 00 81",
            dpc(
                PowerFunction.STANDBY,
                0,
                0,
                0,
                contactors=ContactorState.OPEN,
                lowering=VoltageLowering.LOWERING,
            ),
        ),
    ],
)
def test_dc_power_control_worked_examples(hex_data: str, message: DcPowerControl) -> None:
    frame = CanFrame(0x0106B003, bytes.fromhex(hex_data))
    assert V3.decode(frame, 1) == message
    assert V3.encode(message, 1) == frame
    assert vendor_strict_decode("kcd", frame)["Current_Range_Min"] == message.current_range_min


# --- v3 delta checklist (v3 digest 10), protocol-layer items ----------------------------------

# v3 digest 3: name -> (base id, DLC, sent by the controller, group of bits 11..8)
DIGEST_CATALOGUE = {
    "Power_Modules_Status": (0x63000, 8, False, 0),
    "DC_Power_Parameters": (0x63001, 8, False, 0),
    "Sequence_Control": (0x63002, 3, False, 0),
    "ADM_CS_SECC_Outputs": (0x63201, 8, False, 2),
    "ADM_CS_SPCC_Outputs": (0x63202, 8, False, 2),
    "Advantics_Controller_Status": (0x6B000, 1, True, 0),
    "New_Charge_Session": (0x6B001, 2, True, 0),
    "Charge_Status_Change": (0x6B002, 1, True, 0),
    "DC_Power_Control": (0x6B003, 7, True, 0),
    "Charge_Session_Finished": (0x6B004, 1, True, 0),
    "Emergency_Stop": (0x6B005, 1, True, 0),
    "EV_Information_Battery": (0x6B100, 6, True, 1),
    "EV_Information_Voltages": (0x6B101, 6, True, 1),
    "EV_Information_Charge_Limits": (0x6B102, 8, True, 1),
    "EV_Information_Discharge_Limits": (0x6B103, 8, True, 1),
    "EV_Information_Energy": (0x6B104, 6, True, 1),
    "EV_ID_CCS_Part2_DIN": (0x6B105, 6, True, 1),
    "ADM_CO_CUI1_Inputs": (0x6B200, 8, True, 2),
    "ADM_CS_SECC_Inputs": (0x6B201, 8, True, 2),
    "ADM_CS_SPCC_Inputs": (0x6B202, 8, True, 2),
    "CCS_Extra_Information": (0x6B203, 8, True, 2),
    "MCS_Extra_Information": (0x6B204, 8, True, 2),
    "OCPP_Control": (0x6B300, 2, True, 3),
}


def test_v3_01_identifiers_dlcs_and_directions() -> None:
    assert set(V3.message_names) == set(DIGEST_CATALOGUE)
    for name, (base, dlc, from_controller, group) in DIGEST_CATALOGUE.items():
        spec = V3.spec(name)
        assert (spec.base_id, spec.length, spec.from_controller) == (base, dlc, from_controller)
        assert base >> 12 == (0x6B if from_controller else 0x63)  # 0x6Bgnn / 0x63gnn
        assert (base >> 8) & 0xF == group
    assert sorted(TX_NAMES) == sorted(n for n, v in DIGEST_CATALOGUE.items() if not v[2])


@pytest.mark.parametrize(("index", "can_id"), [(1, 0x0106B003), (2, 0x0206B003), (31, 0x1F06B003)])
def test_v3_01_pistol_index_in_bits_28_to_24(index: int, can_id: int) -> None:
    assert make_can_id(V3.spec("DC_Power_Control").base_id, index) == can_id
    assert V3.encode(dpc(), index).arbitration_id == can_id
    assert V3.encode(DcPowerParameters(0, 0, 0), index).arbitration_id == index << 24 | 0x63001
    assert V3.decode(CanFrame(can_id, V3.encode(dpc(), 1).data), index) == dpc()


DEFINED_FUNCTIONS = [0, 1, 2, 4, 8]


def test_v3_02_byte6_bits_of_dc_power_control() -> None:
    """Bits 0-3 power function, bit 4 ignored, bit 5 mode, bit 6 contactors, bit 7 lowering."""
    head = bytes.fromhex("94 11 E8 03 E0 FC")
    for function, reserved, mode, contactors, lowering in itertools.product(
        DEFINED_FUNCTIONS, (0, 1), (0, 1), (0, 1), (0, 1)
    ):
        byte6 = function | reserved << 4 | mode << 5 | contactors << 6 | lowering << 7
        msg = V3.decode(CanFrame(0x0106B003, head + bytes([byte6])), 1)
        assert isinstance(msg, DcPowerControl)
        assert (
            msg.power_function,
            msg.setpoints_mode,
            msg.output_contactors,
            msg.lower_output_voltage,
        ) == (function, mode, contactors, lowering)
        assert msg.power_function.known
        assert (msg.target_voltage, msg.current_range_max, msg.current_range_min) == (
            450.0,
            100.0,
            -80.0,
        )
        # we never set the reserved bit when encoding (simulator side)
        assert V3.encode(msg, 1).data[6] == byte6 & ~0x10


@pytest.mark.parametrize("raw", sorted(set(range(16)) - set(DEFINED_FUNCTIONS)))
def test_v3_02_undefined_power_functions_decode_as_unknown(raw: int) -> None:
    """Values 3, 5-7, 9-15 are undefined: decoded, flagged unknown, never converting (B1)."""
    msg = V3.decode(CanFrame(0x0106B003, bytes(6) + bytes([0x40 | raw])), 1)
    assert isinstance(msg, DcPowerControl)
    assert int(msg.power_function) == raw and not msg.power_function.known
    assert msg.power_function.label == f"Unknown_{raw}"
    assert not msg.power_function.converts_power


def test_v3_03_off_and_standby_ask_for_no_power_conversion() -> None:
    assert {f.label for f in PowerFunction if f.converts_power} == {
        "Insulation_Test",
        "Precharge",
        "Power_Transfer",
    }


@pytest.mark.parametrize("target", [120.0, 0.0, -50.0])
def test_v3_06_target_mode_follows_current_range_max(target: float) -> None:
    """Target_Mode: Max (= Min) is the setpoint, negative when discharging; OCPP is ignored."""
    command = dpc(range_max=target, range_min=target)
    assert command.operating_current() == target
    assert command.operating_current(dynamic_target=33.0) == target
    frame = V3.encode(command, 1)
    assert vendor_strict_decode("kcd", frame)["Current_Range_Max"] == pytest.approx(target)


@pytest.mark.parametrize(
    ("range_min", "range_max", "dynamic", "expected"),
    [
        (-80.0, 100.0, None, 100.0),  # no CSMS setpoint: the range maximum (B3)
        (-80.0, 100.0, 40.0, 40.0),  # CSMS setpoint inside the range
        (-80.0, 100.0, -30.0, -30.0),  # negative = discharge
        (-80.0, 100.0, 250.0, 100.0),  # clamped to the range
        (-80.0, 100.0, -250.0, -80.0),
        (10.0, 100.0, -20.0, 10.0),  # charge only: Min >= 0
        (-80.0, -10.0, None, -10.0),  # discharge only: both negative
        (-80.0, -10.0, 5.0, -10.0),
        (20.0, 10.0, 15.0, 10.0),  # inverted range: Max wins
    ],
)
def test_v3_07_range_mode_operating_point(
    range_min: float, range_max: float, dynamic: float | None, expected: float
) -> None:
    command = dpc(range_max=range_max, range_min=range_min, mode=SetpointsMode.RANGE_MODE)
    assert command.operating_current(dynamic) == expected
    assert V3.decode(V3.encode(command, 1), 1) == command


def test_v3_07_ocpp_control_is_signed() -> None:
    frame = CanFrame(0x0106B300, bytes.fromhex("38 FF"))  # -200 * 0.1 A
    assert V3.decode(frame, 1) == OcppControl(-20.0)
    assert vendor_strict_decode("kcd", frame)["Dynamic_Target_Current"] == pytest.approx(-20.0)
    assert V3.encode(OcppControl(3276.7), 1).data == bytes.fromhex("FF 7F")
    with pytest.raises(SignalRangeError):
        V3.encode(OcppControl(3276.8), 1)


@pytest.mark.parametrize(
    ("current", "raw"), [(-125.5, "19 FB"), (-0.1, "FF FF"), (-3276.8, "00 80"), (3276.7, "FF 7F")]
)
def test_v3_09_present_current_is_signed(current: float, raw: str) -> None:
    frame = V3.encode(PowerModulesStatus(400.0, current, 35, 30, Permission.ALLOWED, 500), 1)
    assert frame.data[2:4] == bytes.fromhex(raw)
    assert vendor_strict_decode("kcd", frame)["Present_Current"] == pytest.approx(current)
    with pytest.raises(SignalRangeError):
        V3.encode(PowerModulesStatus(400.0, -3276.9, 35, 30, Permission.ALLOWED, 500), 1)


def test_v3_10_dc_power_parameters() -> None:
    """Three unsigned maxima (magnitudes), Range_Target_Current 0 by default, DLC 8."""
    frame = V3.encode(DcPowerParameters(1000.0, 4000.0, 6553.5), 1)
    assert frame.dlc == 8 and frame.data[6:] == bytes(2)
    # unsigned: 4000 A and 6553.5 A fit (the signed v2 Maximum_Current stopped at 3276.7 A)
    assert vendor_strict_decode("dbc", frame)["Maximum_Discharge_Current"] == 6553.5
    for negative in (
        DcPowerParameters(-1.0, 0, 0),
        DcPowerParameters(0, -0.1, 0),
        DcPowerParameters(0, 0, -200.0),
    ):
        with pytest.raises(SignalRangeError, match="outside 0\\.\\."):
            V3.encode(negative, 1)
    assert V3.encode(DcPowerParameters(0, 0, 0, -12.5), 1).data[6:] == bytes.fromhex("83 FF")


EV_INFORMATION = [
    EvInformationBattery,
    EvInformationVoltages,
    EvInformationChargeLimits,
    EvInformationDischargeLimits,
    EvInformationEnergy,
]


@pytest.mark.parametrize("cls", EV_INFORMATION)
def test_v3_11_ev_information_zero_means_not_provided(cls: type[CanMessage]) -> None:
    """All-zero frames decode (0 = not provided); the codec needs no prior New_Charge_Session."""
    spec = V3.spec(cls.NAME)
    msg = V3.decode(CanFrame(make_can_id(spec.base_id, 7), bytes(spec.length)), 7)
    assert type(msg) is cls
    assert all(v == 0 for v in vars(msg).values())


def test_v3_11_ev_information_values() -> None:
    cases: list[tuple[str, CanMessage]] = [
        ("4D 00 2A 0A 50 5A", EvInformationBattery(77.0, 42, 10, 80, 90)),
        ("A0 0F 40 1F 8C 0E", EvInformationVoltages(400.0, 800.0, 372.4)),
        ("0A 00 C4 09 01 00 96 00", EvInformationChargeLimits(1.0, 250.0, 1.0, 150.0)),
        ("00 00 E8 03 00 00 0B 00", EvInformationDischargeLimits(0.0, 100.0, 0.0, 11.0)),
        ("F6 FF 00 00 14 00", EvInformationEnergy(-10.0, 0.0, 20.0)),
    ]
    for hex_data, message in cases:
        frame = V3.encode(message, 1)
        assert frame.data == bytes.fromhex(hex_data)
        assert V3.decode(frame, 1) == message
        assert vendor_strict_decode("kcd", frame)["name"] == message.NAME
    with pytest.raises(FrameLengthError, match="expected 6"):
        V3.decode(CanFrame(0x0106B100, bytes.fromhex("4D 00 2A 0A 50 5A 00 00")), 1)
    with pytest.raises(SignalRangeError):  # state of charge is 0..100 % in the database
        V3.encode(EvInformationBattery(77.0, 101, 0, 0, 0), 1)


@pytest.mark.parametrize("raw", [13, 14, 200, 255])
def test_v3_14_controller_state_13_and_unknown_values(raw: int) -> None:
    msg = V3.decode(CanFrame(0x0106B000, bytes([raw])), 1)
    assert isinstance(msg, AdvanticsControllerStatus) and int(msg.state) == raw
    assert msg.state.known == (raw == 13)
    assert msg.state == ControllerState.CHARGE_PAUSE or msg.state.label == f"Unknown_{raw}"


# --- other v3 specifics ----------------------------------------------------------------------


def test_new_charge_session_is_two_bytes_in_v3() -> None:
    message = NewChargeSessionV3(CommunicationProtocol.CCS_ISO_15118_2022, PlugAndPins.MCS)
    frame = V3.encode(message, 1)
    assert (frame.arbitration_id, frame.data) == (0x0106B001, bytes.fromhex("07 04"))
    with pytest.raises(FrameLengthError, match="expected 2"):  # a v2-sized frame
        V3.decode(CanFrame(0x0106B001, bytes.fromhex("02 00 68 10 C4 09 27 23")), 1)


def test_dc_power_control_is_seven_bytes() -> None:
    with pytest.raises(FrameLengthError, match="expected 7"):
        V3.decode(CanFrame(0x0106B003, bytes(8)), 1)


def test_v3_current_edges() -> None:
    edge = dpc(voltage=6553.5, range_max=3276.7, range_min=-3276.8, mode=SetpointsMode.RANGE_MODE)
    assert V3.encode(edge, 1).data[:6] == bytes.fromhex("FF FF FF 7F 00 80")
    for bad in (dpc(range_max=3276.8), dpc(range_min=-3276.9), dpc(voltage=math.nan)):
        with pytest.raises(SignalRangeError):
            V3.encode(bad, 1)
