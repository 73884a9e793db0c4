"""Codec behaviour: worked examples of the spec, pistol addressing, typed errors on bad input."""

from __future__ import annotations

import math

import pytest

from evse_can_ros.protocol import (
    AdvanticsControllerStatus,
    ButtonState,
    CanFrame,
    ChargingLoop,
    Codec,
    CommunicationProtocol,
    Completion,
    ControllerState,
    DatabaseError,
    EmergencyStop,
    EmergencyStopOrigin,
    ForeignPistolError,
    FrameFormatError,
    FrameLengthError,
    InsulationTest,
    NewChargeSession,
    Permission,
    PistolIndexError,
    PlugAndPins,
    PowerModulesLimits,
    PowerModulesStatus,
    Precharge,
    ProtocolError,
    SequenceControl,
    SignalError,
    SignalRangeError,
    UnknownMessageError,
    Validity,
    load_codec,
    make_can_id,
    pistol_filter,
    split_can_id,
)
from evse_can_ros.protocol.messages import MESSAGE_TYPES, as_dict

from .conftest import vendor_dir


def pms(**kw: object) -> PowerModulesStatus:
    values: dict[str, object] = dict(
        present_voltage=400.0,
        present_current=125.5,
        power_modules_temperature=35,
        enclosure_temperature=30,
        system_enable=Permission.ALLOWED,
        insulation_resistance=500,
    )
    values.update(kw)
    return PowerModulesStatus(**values)  # type: ignore[arg-type]


# --- spec 3: worked byte example -------------------------------------------------------


def test_spec3_worked_example(codec: Codec) -> None:
    frame = codec.encode(pms(), 1)
    assert frame.data == bytes.fromhex("A0 0F E7 04 4B 46 01 FA")
    assert frame.arbitration_id == 0x01060010 and frame.is_extended_id and frame.dlc == 8


def test_spec3_negative_current(codec: Codec) -> None:
    assert codec.encode(pms(present_current=-2.5), 1).data[2:4] == bytes.fromhex("E7 FF")


def test_spec3_decodes_back(codec: Codec) -> None:
    decoded = codec.decode(CanFrame(0x01060010, bytes.fromhex("A0 0F E7 04 4B 46 01 FA")), 1)
    assert decoded == pms()


# --- spec 4: pistol index --------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "index", "can_id"),
    [
        (0x68001, 1, 0x01068001),  # New_Charge_Session, vendor example
        (0x60010, 1, 0x01060010),  # our Power_Modules_Status
        (0x68009, 2, 0x02068009),  # controller status, index 2
        (0x6800F, 31, 0x1F06800F),  # highest index
    ],
)
def test_spec4_pistol_index_examples(base: int, index: int, can_id: int) -> None:
    assert make_can_id(base, index) == can_id
    assert split_can_id(can_id) == (index, base)


@pytest.mark.parametrize("index", [1, 2, 17, 31])
def test_every_message_is_offset_by_the_pistol_index(codec: Codec, index: int) -> None:
    frame = codec.encode(SequenceControl(), index)
    assert frame.arbitration_id >> 24 == index
    assert codec.decode(frame, index) == SequenceControl()


@pytest.mark.parametrize("bad", [0, 32, -1, True, 1.0, "1"])
def test_invalid_pistol_index_is_refused(codec: Codec, bad: object) -> None:
    with pytest.raises(PistolIndexError):
        codec.encode(SequenceControl(), bad)  # type: ignore[arg-type]


def test_frames_of_other_pistols_are_not_ours(codec: Codec) -> None:
    frame = codec.encode(AdvanticsControllerStatus(ControllerState.CHARGING), 2)
    with pytest.raises(ForeignPistolError) as info:
        codec.decode(frame, 1)
    assert info.value.pistol_index == 2
    with pytest.raises(ForeignPistolError):  # index 0 is never valid
        codec.decode(CanFrame(0x00068009, b"\x07"))
    assert codec.decode(frame) == AdvanticsControllerStatus(ControllerState.CHARGING)


def test_pistol_filter_matches_only_that_index() -> None:
    f = pistol_filter(3)
    assert (0x03068009 & f["can_mask"]) == f["can_id"]
    assert (0x04068009 & f["can_mask"]) != f["can_id"]


# --- spec 6 examples -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "hex_data"),
    [
        (
            SequenceControl(
                Permission.ALLOWED,
                ButtonState.NOT_PRESSED,
                Completion.DONE,
                Validity.VALID,
                Completion.DONE,
                ButtonState.NOT_PRESSED,
            ),
            "01 07 00",
        ),
        (SequenceControl(Permission.ALLOWED, user_stop_button=ButtonState.PRESSED), "01 00 01"),
        (
            NewChargeSession(
                CommunicationProtocol.CCS_ISO_15118_2013_V2,
                PlugAndPins.CCS_DC_CORE,
                420.0,
                250.0,
                78.0,
                35,
            ),
            "02 00 68 10 C4 09 27 23",
        ),
        (InsulationTest(500.0), "88 13"),
        (Precharge(365.2, 2.0), "44 0E 14 00"),
        (ChargingLoop(410.5, 150.0, 63), "09 10 DC 05 3F"),
    ],
)
def test_spec6_examples(codec: Codec, message: object, hex_data: str) -> None:
    frame = codec.encode(message, 1)  # type: ignore[arg-type]
    assert frame.data == bytes.fromhex(hex_data)
    assert codec.decode(frame, 1) == message


def test_dlc_of_transmitted_messages(codec: Codec) -> None:  # PM-05
    assert codec.encode(pms(), 1).dlc == 8
    assert codec.encode(PowerModulesLimits(500.0, 200.0), 1).dlc == 8
    assert codec.encode(SequenceControl(), 1).dlc == 3


def test_limits_reserved_is_zero(codec: Codec) -> None:  # PM-20
    assert codec.encode(PowerModulesLimits(920.0, 500.0), 1).data[4:] == bytes(4)


# --- typed results, unknown enum values ------------------------------------------------


@pytest.mark.parametrize("raw", [13, 14, 200, 255])
def test_unknown_or_undocumented_states_decode(codec: Codec, raw: int) -> None:  # PM-06
    msg = codec.decode(CanFrame(0x01068009, bytes([raw])), 1)
    assert isinstance(msg, AdvanticsControllerStatus)
    assert isinstance(msg.state, ControllerState) and int(msg.state) == raw
    assert msg.state.known == (raw <= 13)
    assert msg.state.label == ("Charge_Pause" if raw == 13 else f"Unknown_{raw}")


def test_unassigned_emergency_origin_decodes(codec: Codec) -> None:
    msg = codec.decode(CanFrame(0x01068006, b"\x02"), 1)
    assert msg == EmergencyStop(EmergencyStopOrigin(2)) and not msg.origin.known
    assert codec.encode(msg, 1).data == b"\x02"


def test_types_of_decoded_fields(codec: Codec) -> None:
    msg = codec.decode(codec.encode(pms(), 1), 1)
    assert isinstance(msg, PowerModulesStatus)
    assert type(msg.present_voltage) is float and type(msg.power_modules_temperature) is float
    assert msg.system_enable is Permission.ALLOWED
    assert as_dict(msg)["system_enable"] == "Allowed"


def test_encode_by_name_with_labels(codec: Codec) -> None:
    frame = codec.encode_signals("Advantics_Controller_Status", {"State": "Charging"}, 1)
    assert frame.data == b"\x07"
    name, values = codec.decode_signals(frame, 1)
    assert (name, values) == ("Advantics_Controller_Status", {"State": 7})


def test_reserved_may_be_omitted_or_given(codec: Codec) -> None:
    a = codec.encode_signals(
        "Power_Modules_Limits", {"Maximum_Voltage": 500, "Maximum_Current": 100}, 1
    )
    b = codec.encode_signals(
        "Power_Modules_Limits", {"Maximum_Voltage": 500, "Maximum_Current": 100, "Reserved": 0}, 1
    )
    assert a == b


# --- bad input: clear, typed errors ----------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (CanFrame(0x01068008, b"\x00"), UnknownMessageError),  # removed Controller_Inputs
        (CanFrame(0x01012345, b"\x00"), UnknownMessageError),
        (CanFrame(0x01068009, b""), FrameLengthError),
        (CanFrame(0x01068009, b"\x07\x00"), FrameLengthError),
        (CanFrame(0x01060010, bytes(7)), FrameLengthError),
        (CanFrame(0x009, b"\x07", is_extended_id=False), FrameFormatError),
        (CanFrame(0x01068009, b"", is_remote_frame=True), FrameFormatError),
        (CanFrame(0x0, b"", is_error_frame=True), FrameFormatError),
        (CanFrame(0x05068009, b"\x07"), ForeignPistolError),
    ],
)
def test_bad_frames_raise_typed_errors(
    codec: Codec, frame: CanFrame, error: type[Exception]
) -> None:
    with pytest.raises(error) as info:
        codec.decode(frame, 1)
    assert isinstance(info.value, ProtocolError) and isinstance(info.value, ValueError)
    assert "\n" not in str(info.value) and str(info.value)


@pytest.mark.parametrize(
    ("changes", "signal"),
    [
        ({"power_modules_temperature": 216}, "Power_Modules_Temperature"),
        ({"enclosure_temperature": -41}, "Enclosure_Temperature"),
        ({"present_voltage": -1.0}, "Present_Voltage"),
        ({"present_voltage": 6553.6}, "Present_Voltage"),
        ({"present_current": 3276.8}, "Present_Current"),
        ({"insulation_resistance": 512}, "Insulation_Resistance"),
        ({"present_voltage": math.nan}, "Present_Voltage"),
        ({"present_current": math.inf}, "Present_Current"),
        ({"system_enable": Permission(256)}, "System_Enable"),
    ],
)
def test_out_of_range_values_are_refused(
    codec: Codec, changes: dict[str, object], signal: str
) -> None:
    with pytest.raises(SignalRangeError) as info:
        codec.encode(pms(**changes), 1)
    assert info.value.signal == signal
    assert signal in str(info.value)


def test_field_edges_are_accepted(codec: Codec) -> None:
    frame = codec.encode(
        pms(
            present_voltage=6553.5,
            present_current=-3276.8,
            power_modules_temperature=-40,
            enclosure_temperature=215,
            insulation_resistance=510,
        ),
        1,
    )
    assert frame.data == bytes.fromhex("FF FF 00 80 00 FF 01 FF")


def test_soc_limit_from_database(codec: Codec) -> None:
    with pytest.raises(SignalRangeError):
        codec.encode(ChargingLoop(400, 10, 101), 1)


def test_signal_errors(codec: Codec) -> None:
    with pytest.raises(SignalError, match="missing"):
        codec.encode_signals("Charging_Loop", {"Target_Voltage": 1, "Target_Current": 1}, 1)
    with pytest.raises(SignalError, match="no signal"):
        codec.encode_signals("Insulation_Test", {"Test_Voltage": 1, "Voltage": 2}, 1)
    with pytest.raises(SignalError, match="labels"):
        codec.encode_signals("Advantics_Controller_Status", {"State": "Flying"}, 1)
    with pytest.raises(SignalError, match="type"):
        codec.encode_signals("Insulation_Test", {"Test_Voltage": [500]}, 1)
    with pytest.raises(UnknownMessageError):
        codec.encode_signals("Controller_Inputs", {}, 1)


def test_clamp_saturates_into_the_field(codec: Codec) -> None:  # PM-12, PM-14
    assert codec.clamp("Power_Modules_Status", "Power_Modules_Temperature", 300) == 215
    assert codec.clamp("Power_Modules_Status", "Power_Modules_Temperature", -60) == -40
    assert codec.clamp("Power_Modules_Status", "Insulation_Resistance", 2000) == 510


def test_message_specs(codec: Codec) -> None:
    assert codec.spec("Power_Modules_Status").cycle_time_ms == 100
    assert not codec.spec("Power_Modules_Status").from_controller
    assert codec.spec("Charging_Loop").from_controller
    assert codec.spec_for_id(0x1F068005) is codec.spec("Charging_Loop")
    assert codec.spec_for_id(0x01068008) is None
    assert len(codec.message_names) == len(MESSAGE_TYPES) == 19


# --- loading ---------------------------------------------------------------------------


def test_codec_is_loaded_once() -> None:
    assert load_codec() is load_codec()


def test_vendor_kcd_is_accepted_as_an_override() -> None:
    kcd = Codec(vendor_dir() / "Advantics_Generic_EVSE_protocol_v2.7.kcd")
    assert kcd.encode(pms(), 1).data == bytes.fromhex("A0 0F E7 04 4B 46 01 FA")


def test_bad_database_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DatabaseError, match="cannot read"):
        Codec(tmp_path / "missing.dbc")
    wrong_ext = tmp_path / "db.txt"
    wrong_ext.write_text("x")
    with pytest.raises(DatabaseError, match=r"\.dbc or \.kcd"):
        Codec(wrong_ext)
    garbage = tmp_path / "garbage.dbc"
    garbage.write_text("BO_ this is not a database")
    with pytest.raises(DatabaseError, match="cannot load"):
        Codec(garbage)
    v3 = vendor_dir() / "Advantics_Generic_EVSE_protocol_v3.6.kcd"
    with pytest.raises(DatabaseError):  # a v3 database is not the v2 interface
        Codec(v3)


def test_database_with_a_wrong_label_is_refused(tmp_path, codec: Codec) -> None:  # type: ignore[no-untyped-def]
    text = codec.database_path.read_text().replace('7 "Charging"', '7 "Charge"')
    edited = tmp_path / "edited.dbc"
    edited.write_text(text)
    with pytest.raises(DatabaseError, match="labels"):
        Codec(edited)


def test_pm13_system_enable_outside_0_1_never_reaches_the_bus(codec: Codec) -> None:
    from evse_can_ros.protocol import Permission, SignalRangeError

    status = PowerModulesStatus(400.0, 10.0, 30.0, 25.0, Permission(2), 500.0)
    with pytest.raises(SignalRangeError, match="System_Enable = 2 is not one of its labels"):
        codec.encode(status, 1)
