"""InfyPower protocol layer: the digest's golden frames (§7.1), layouts, round trips, bits."""

from __future__ import annotations

import math
import struct

import pytest

from evse_can_ros.converter.infypower.protocol import (
    STATUS_BITS,
    Command,
    Device,
    ErrorCode,
    FaultClass,
    InfyId,
    InfyPowerProtocolError,
    ModuleRating,
    ModuleStatus,
    Severity,
    decode_after_diode,
    decode_barcode,
    decode_capabilities,
    decode_module_count,
    decode_on_off,
    decode_set_vi,
    decode_status,
    decode_vi,
    describe,
    encode_after_diode,
    encode_capabilities,
    encode_module_count,
    encode_set_vi,
    encode_status,
    encode_vi,
    faults_of,
    module_count_request,
    on_off_request,
    read_request,
    set_vi_request,
    status_bit,
)
from evse_can_ros.protocol.frame import CanFrame


def candump(frame: CanFrame) -> str:
    return f"{frame.arbitration_id:08X}#{frame.data.hex().upper()}"


def parse(text: str) -> tuple[InfyId, bytes]:
    ident, _, data = text.partition("#")
    return InfyId.decode(int(ident, 16)), bytes.fromhex(data)


# --- golden frames (digest §7.1; controller 0xF0, modules 0..2 in group 1) --------------------


def test_g1_read_vi_of_module_0() -> None:
    assert candump(read_request(Command.READ_VI, 0)) == "028300F0#0000000000000000"


def test_g2_vi_reply() -> None:
    ident, data = parse("0283F000#43FA000040600000")
    assert (ident.command, ident.source, ident.destination) == (Command.READ_VI, 0, 0xF0)
    assert decode_vi(data) == (500.0, 3.5)
    assert encode_vi(500.0, 3.5) == data


def test_g3_module_count_request_to_group_1() -> None:
    assert candump(module_count_request(1)) == "02C201F0#0000000000000000"


@pytest.mark.parametrize("ident", ["0282F000", "02C2F000"])  # device 0x0A or echoed 0x0B
def test_g4_module_count_reply(ident: str) -> None:
    decoded, data = parse(f"{ident}#0000030000000000")
    assert decoded.command == Command.READ_MODULE_COUNT and decode_module_count(data) == 3
    assert encode_module_count(3) == data


def test_g5_status_request_to_module_2() -> None:
    assert candump(read_request(Command.READ_STATUS, 2)) == "028402F0#0000000000000000"


def test_g6_status_dc_off_and_fault_alarm_is_a_hardware_fault() -> None:
    ident, data = parse("0284F002#0000010019000300")
    status = decode_status(data)
    assert (ident.source, status.group, status.temperature) == (2, 1, 25)
    assert status.dc_off
    faults = faults_of(2, status, output_wanted=False)
    assert [(f.fault, f.severity) for f in faults] == [(FaultClass.HARDWARE_FAULT, Severity.ERROR)]
    assert str(faults[0]) == "module 2: module fault alarm (B6.1) [HARDWARE_FAULT]"
    assert encode_status(status) == data


def test_g7_phase_lost_and_input_under_voltage_are_ac_faults() -> None:
    _, data = parse("0284F002#0000010019280000")
    faults = faults_of(2, decode_status(data), output_wanted=True)
    assert {f.text for f in faults} == {"input phase lost (B5.3)", "input under-voltage (B5.5)"}
    assert {f.fault for f in faults} == {FaultClass.UNDER_VOLTAGE_AC}
    assert all(f.severity is Severity.ERROR for f in faults)


def test_g8_capabilities() -> None:
    _, data = parse("028AF000#03E8009601F40BB8")
    rating = decode_capabilities(data)
    assert rating == ModuleRating(1000.0, 150.0, pytest.approx(50.0), 30000.0)
    assert encode_capabilities(ModuleRating(1000.0, 150.0, 50.0, 30000.0)) == data


def test_g9_after_diode() -> None:
    _, data = parse("028CF000#0FA001F400000000")
    v, i = decode_after_diode(data)
    assert (v, i) == (pytest.approx(400.0), pytest.approx(50.0))
    assert encode_after_diode(400.0, 50.0) == data


def test_g10_barcode_identity() -> None:
    _, data = parse("028BF000#56130C15A3FB06A8")
    assert decode_barcode(data) == "SN_130c15a3fb06a8_V"


def test_g11_g12_on_and_off_inverted_logic() -> None:
    assert candump(on_off_request(0, True)) == "029A00F0#0000000000000000"
    assert candump(on_off_request(0, False)) == "029A00F0#0100000000000000"
    assert decode_on_off(bytes(8)) is True
    assert decode_on_off(bytes([1]) + bytes(7)) is False
    with pytest.raises(InfyPowerProtocolError, match="neither"):
        decode_on_off(bytes([2]) + bytes(7))


def test_g13_charging_400_v_150_a_over_3_modules() -> None:
    frames = [set_vi_request(a, 400.0, 150.0 / 3) for a in range(3)]
    assert [candump(f) for f in frames] == [f"029C0{a}F0#00061A800000C350" for a in range(3)]


def test_g14_cable_check_500_v_2_a_over_2_modules() -> None:
    assert [candump(set_vi_request(a, 500.0, 1.0)) for a in range(2)] == [
        "029C00F0#0007A120000003E8",
        "029C01F0#0007A120000003E8",
    ]


def test_g15_reply_with_error_code_3() -> None:
    ident = InfyId.decode(0x0E9CF001)
    assert (ident.error, ident.command, ident.source) == (ErrorCode.DATA_INVALID, 0x1C, 1)
    assert "data invalid" in describe(CanFrame(0x0E9CF001, bytes(8)))


def test_g16_internal_frame_is_addressed_to_0xf8() -> None:
    ident = InfyId.decode(0x0757F800)
    assert (ident.error, ident.device, ident.command, ident.destination) == (1, 0x0D, 0x17, 0xF8)


def test_g17_group_setpoint_is_not_constructible_by_the_request_helpers() -> None:
    assert InfyId(Command.SET_VI, 1, 0xF0, Device.GROUP).encode() == 0x02DC01F0
    with pytest.raises(InfyPowerProtocolError, match="broadcast"):
        set_vi_request(0x3F, 400.0, 10.0)
    with pytest.raises(InfyPowerProtocolError, match="broadcast"):
        on_off_request(0x3F, True)


# --- identifiers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        (0x03, 0x00, 0xF0, 0x0A, 0),
        (0x1C, 0x3E, 0xF7, 0x0A, 0),
        (0x02, 0x3C, 0xF0, 0x0B, 7),
        (0x3F, 0xFF, 0xFF, 0x0F, 7),
    ],
)
def test_identifier_round_trip(fields: tuple[int, int, int, int, int]) -> None:
    ident = InfyId(*fields)
    value = ident.encode()
    assert value <= 0x1FFF_FFFF
    assert InfyId.decode(value) == ident
    assert InfyId.decode(value | 0x8000_0000) == ident  # SocketCAN EFF flag masked (pitfall 11)


def test_reply_swaps_source_and_destination() -> None:
    request = InfyId(Command.READ_STATUS, 2, 0xF0)
    assert request.reply() == InfyId(Command.READ_STATUS, 0xF0, 2)
    assert request.reply(ErrorCode.STARTING).error == 7


def test_fields_that_do_not_fit_are_refused() -> None:
    with pytest.raises(InfyPowerProtocolError, match="command"):
        InfyId(0x40, 0, 0xF0)
    with pytest.raises(InfyPowerProtocolError, match="destination"):
        InfyId(0x03, 256, 0xF0)


def test_reads_are_eight_zero_bytes_with_device_0x0a() -> None:
    for command in (
        Command.READ_VI,
        Command.READ_STATUS,
        Command.READ_CAPABILITIES,
        Command.READ_BARCODE,
        Command.READ_VI_AFTER_DIODE,
    ):
        f = read_request(command, 5, 0xF3)
        ident = InfyId.decode(f.arbitration_id)
        assert f.data == bytes(8) and f.is_extended_id
        assert (ident.device, ident.command, ident.destination, ident.source) == (
            Device.MODULE,
            command,
            5,
            0xF3,
        )
    with pytest.raises(InfyPowerProtocolError):
        read_request(Command.READ_MODULE_COUNT, 0)  # a group read
    with pytest.raises(InfyPowerProtocolError):
        read_request(Command.SET_VI, 0)


# --- payloads ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("volts", "amps", "mv", "ma"),
    [
        (400.0, 50.0, 400_000, 50_000),
        (399.9999, 33.3333333, 399_999, 33_333),  # truncated: never above the request
        (0.0, 0.0, 0, 0),
        (1000.0, 0.001, 1_000_000, 1),
    ],
)
def test_set_vi_milli_units_truncate(volts: float, amps: float, mv: int, ma: int) -> None:
    data = encode_set_vi(volts, amps)
    assert struct.unpack(">II", data) == (mv, ma)
    assert decode_set_vi(data) == (mv / 1000, ma / 1000)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0, 5e6])
def test_set_vi_refuses_values_it_cannot_carry(bad: float) -> None:
    with pytest.raises(InfyPowerProtocolError):
        encode_set_vi(bad, 1.0)
    with pytest.raises(InfyPowerProtocolError):
        encode_set_vi(400.0, bad)


def test_float_and_scaled_round_trips() -> None:
    assert decode_vi(encode_vi(123.5, -0.25)) == (123.5, -0.25)
    v, i = decode_after_diode(encode_after_diode(321.4, 12.3))
    assert (v, i) == (pytest.approx(321.4), pytest.approx(12.3))
    rating = ModuleRating(750.0, 200.0, 40.0, 20000.0)
    assert decode_capabilities(encode_capabilities(rating)) == ModuleRating(
        750.0, 200.0, pytest.approx(40.0), 20000.0
    )
    with pytest.raises(InfyPowerProtocolError, match="u16"):
        encode_after_diode(7000.0, 0.0)


def test_payloads_must_have_eight_bytes() -> None:
    for decode in (decode_vi, decode_status, decode_capabilities, decode_after_diode):
        with pytest.raises(InfyPowerProtocolError, match="8 bytes"):
            decode(bytes(7))  # type: ignore[operator]


def test_status_round_trip_with_negative_temperature() -> None:
    status = ModuleStatus(group=5, temperature=-20, byte5=0x81, byte6=0x10, byte7=0x01)
    assert decode_status(encode_status(status)) == status


# --- status bits ------------------------------------------------------------------------------


def test_every_defined_bit_is_in_the_table_once() -> None:
    keys = [(b.byte, b.bit) for b in STATUS_BITS]
    assert len(keys) == len(set(keys)) == 19  # §3.1 defines 19 bits
    assert all(b.byte in (5, 6, 7) and 0 <= b.bit <= 7 for b in STATUS_BITS)


@pytest.mark.parametrize(
    ("byte", "bit", "fault", "severity"),
    [
        (7, 0, FaultClass.OVER_CURRENT, Severity.ERROR),
        (6, 1, FaultClass.HARDWARE_FAULT, Severity.ERROR),
        (6, 3, FaultClass.VENDOR_WARNING, Severity.WARNING),
        (6, 4, FaultClass.OVER_TEMPERATURE, Severity.ERROR),
        (6, 5, FaultClass.OVER_VOLTAGE_DC, Severity.ERROR),
        (5, 1, FaultClass.HARDWARE_FAULT, Severity.ERROR),
        (5, 5, FaultClass.UNDER_VOLTAGE_AC, Severity.ERROR),
        (5, 6, FaultClass.OVER_VOLTAGE_AC, Severity.ERROR),
    ],
)
def test_bit_mapping(byte: int, bit: int, fault: FaultClass, severity: Severity) -> None:
    status = ModuleStatus().with_bits((byte, bit))
    found = [f for f in faults_of(1, status, output_wanted=True) if f.fault is fault]
    assert found and found[0].severity is severity


def test_communication_alarm_is_an_error_only_while_the_output_is_wanted() -> None:
    status = ModuleStatus().with_bits((6, 7))
    assert faults_of(0, status, output_wanted=True)[0].severity is Severity.ERROR
    assert faults_of(0, status, output_wanted=False)[0].severity is Severity.WARNING


def test_status_bits_without_a_fault_class_raise_nothing() -> None:
    status = ModuleStatus().with_bits((6, 0), (6, 6), (5, 0), (5, 7), (7, 4))
    assert faults_of(0, status, output_wanted=True) == []
    assert status_bit(6, 0).name == "DC side off"


def test_undefined_bits_are_vendor_warnings() -> None:
    status = ModuleStatus(byte7=0b1100_0010)
    faults = faults_of(3, status, output_wanted=True)
    assert [f.text for f in faults] == [
        "undefined bit B7.1",
        "undefined bit B7.6",
        "undefined bit B7.7",
    ]
    assert {f.severity for f in faults} == {Severity.WARNING}
