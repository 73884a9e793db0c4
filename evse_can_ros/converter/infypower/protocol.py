"""InfyPower REG/CEG/LRG power-module CAN protocol ("V1.13"): identifiers, payloads, status bits.

Pure and stateless: no python-can, no clock. Facts from the project's digest
(``shared/spec/infypower_can.md``; section numbers below refer to it); the vendor document
itself was not available, so every choice where the sources are silent is marked *unknown* and
listed in the README ("Converter backends").

* CAN 2.0B, 29-bit identifiers only, 125 kbit/s, DLC 8 in every frame, big-endian (§1.1).
* ``ID = error<<26 | device<<22 | command<<16 | destination<<8 | source`` (§1.2). Device
  ``0x0A`` addresses one module, ``0x0B`` a module group. Replies swap source and destination and
  keep the command number (§1.3).
* Payload types differ per command (§2.2, pitfall 7): float32 in 0x03, scaled u16 in 0x0A/0x0C,
  u32 milli-units in 0x1C, single bytes elsewhere; the status bytes are in reverse order
  (state byte 0 is B7).
* Status bits map to the project's fault classes through one table, :data:`STATUS_BITS`
  (§3.1 bit positions; the class and severity are our choice, see each row's comment).
"""

from __future__ import annotations

import enum
import math
import struct
from dataclasses import dataclass
from typing import NamedTuple

from evse_can_ros.protocol.frame import CanFrame

BITRATE = 125_000
"""bit/s of the module bus (§1.1)."""
ID_MASK = 0x1FFF_FFFF
"""The 29 identifier bits (§1.2; flag bits of a SocketCAN id are not part of it, pitfall 11)."""
DLC = 8
"""Every frame carries 8 data bytes; reads are 8 zero bytes (§1.1, pitfall 8)."""
ZERO_DATA = bytes(DLC)
CONTROLLER_ADDRESS = 0xF0
"""Default controller (our) address (§1.4)."""
CONTROLLER_ADDRESSES = range(0xF0, 0xF8)
"""Allowed controller addresses: 0xF0-0xF7. 0xF8 is used by the modules' internal traffic
(pitfall 12), although one source allows it."""
INTERNAL_CONTROLLER_ADDRESS = 0xF8
"""Destination of the modules' internal 0x17 traffic (IDs 0x0757F8xx, §1.4): never ours."""
BROADCAST_ADDRESS = 0x3F
"""Broadcast module address per two sources (§1.4); the REG manifest calls 0 "broadcast" (§6.1).
The backend never sends to either as a broadcast (pitfall 1, 2)."""
MODULE_ADDRESSES = range(0x00, 0x3F)
"""Module addresses 0x00-0x3E (§1.4)."""
GROUP_NUMBERS = range(0, 61)
"""Group numbers 0-60 (§1.4, CB manifest)."""
MODULE_CUTOFF = 10.0
"""s: a module switches its output off after this long without controller traffic (§4.2)."""
MIN_TOTAL_CURRENT = 1.0
"""A: modules misbehave with a 0 A current limit; the REG driver never commands less in total
(pitfall 9)."""

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_F32x2 = struct.Struct(">ff")
_U16x4 = struct.Struct(">HHHH")
_U32x2 = struct.Struct(">II")


class Device(enum.IntEnum):
    """Device number, ID bits 25-22 (§1.2, §1.3)."""

    MODULE = 0x0A
    """Controller <-> one module (destination = module address)."""
    GROUP = 0x0B
    """Controller <-> a module group (destination = group number)."""


class Command(enum.IntEnum):
    """The commands of the V1.13 REG driver (§2.1)."""

    READ_MODULE_COUNT = 0x02
    """Group read: the group master answers with the number of modules in B2."""
    READ_VI = 0x03
    """Module output voltage and current, float32 (before the output diode)."""
    READ_STATUS = 0x04
    """Group number, temperature, status bytes B5-B7; the liveness evidence."""
    READ_CAPABILITIES = 0x0A
    """Vmax, Vmin (1 V), Imax (0.1 A), rated power (10 W), u16 each."""
    READ_BARCODE = 0x0B
    """B0 an ASCII character, B1-B7 a vendor-packed barcode."""
    READ_VI_AFTER_DIODE = 0x0C
    """External (cable side) voltage and available current, u16, 0.1 V / 0.1 A."""
    SET_ON_OFF = 0x1A
    """Output on (B0 = 0) or off (B0 = 1): inverted logic (pitfall 6)."""
    SET_VI = 0x1C
    """Voltage setpoint (u32 mV) and current limit (u32 mA) of one module."""


READ_COMMANDS = frozenset(
    {
        Command.READ_MODULE_COUNT,
        Command.READ_VI,
        Command.READ_STATUS,
        Command.READ_CAPABILITIES,
        Command.READ_BARCODE,
        Command.READ_VI_AFTER_DIODE,
    }
)


class ErrorCode(enum.IntEnum):
    """Error code in ID bits 28-26 of a reply (§2.4; values from the BEC/BEG sources)."""

    NORMAL = 0x00
    COMMAND_INVALID = 0x02
    DATA_INVALID = 0x03
    STARTING = 0x07
    """"In start processing": the module is still starting up."""


def error_label(code: int) -> str:
    """Name of an error code, also for values no source defines."""
    try:
        return ErrorCode(code).name.lower().replace("_", " ")
    except ValueError:
        return f"unknown error {code}"


class InfyPowerProtocolError(ValueError):
    """A frame or a value that the protocol cannot carry (one-line message)."""


# --- identifiers (§1.2) ---------------------------------------------------------------------


@dataclass(frozen=True)
class InfyId:
    """The fields of a 29-bit identifier."""

    command: int
    destination: int
    source: int
    device: int = Device.MODULE
    error: int = ErrorCode.NORMAL

    def __post_init__(self) -> None:
        for name, width in (
            ("error", 3),
            ("device", 4),
            ("command", 6),
            ("destination", 8),
            ("source", 8),
        ):
            value = getattr(self, name)
            if not 0 <= value < (1 << width):
                raise InfyPowerProtocolError(f"{name} {value} does not fit {width} bits")

    def encode(self) -> int:
        """Return the 29-bit identifier."""
        return (
            self.error << 26
            | self.device << 22
            | self.command << 16
            | self.destination << 8
            | self.source
        )

    @classmethod
    def decode(cls, identifier: int) -> InfyId:
        """Split an identifier (flag bits above bit 28 are masked off, pitfall 11)."""
        ident = identifier & ID_MASK
        return cls(
            command=(ident >> 16) & 0x3F,
            destination=(ident >> 8) & 0xFF,
            source=ident & 0xFF,
            device=(ident >> 22) & 0x0F,
            error=(ident >> 26) & 0x07,
        )

    def reply(self, error: int = ErrorCode.NORMAL) -> InfyId:
        """Return the reply's identifier: source and destination swapped (§1.3)."""
        return InfyId(self.command, self.source, self.destination, self.device, error)


def frame(ident: InfyId, data: bytes = ZERO_DATA, timestamp: float = 0.0) -> CanFrame:
    """Return an extended frame with ``data`` (exactly 8 bytes)."""
    if len(data) != DLC:
        raise InfyPowerProtocolError(f"InfyPower frames carry 8 bytes, got {len(data)}")
    return CanFrame(ident.encode(), bytes(data), timestamp, is_extended_id=True)


# --- requests (controller -> modules, §2.1) -------------------------------------------------


def read_request(command: Command, address: int, controller: int = CONTROLLER_ADDRESS) -> CanFrame:
    """Return a read of one module (device 0x0A, 8 zero bytes)."""
    if command not in READ_COMMANDS or command is Command.READ_MODULE_COUNT:
        raise InfyPowerProtocolError(f"{command!r} is not a module read")
    _check_module(address)
    return frame(InfyId(command, address, controller, Device.MODULE))


def module_count_request(group: int, controller: int = CONTROLLER_ADDRESS) -> CanFrame:
    """Return the group's module-count read (device 0x0B to the group number, G3)."""
    if group not in GROUP_NUMBERS:
        raise InfyPowerProtocolError(f"group {group} outside 0..60")
    return frame(InfyId(Command.READ_MODULE_COUNT, group, controller, Device.GROUP))


def on_off_request(address: int, on: bool, controller: int = CONTROLLER_ADDRESS) -> CanFrame:
    """Switch one module's output on or off (G11, G12). Never to a group or broadcast."""
    _check_module(address)
    return frame(InfyId(Command.SET_ON_OFF, address, controller), encode_on_off(on))


def set_vi_request(
    address: int, voltage: float, current: float, controller: int = CONTROLLER_ADDRESS
) -> CanFrame:
    """Voltage setpoint and current limit of one module (G13, G14). Never to a group."""
    _check_module(address)
    return frame(InfyId(Command.SET_VI, address, controller), encode_set_vi(voltage, current))


def _check_module(address: int) -> None:
    if address not in MODULE_ADDRESSES:
        raise InfyPowerProtocolError(
            f"module address {address} outside 0x00..0x3E (0x3F is the broadcast address)"
        )


# --- payloads (§2.2) ------------------------------------------------------------------------


def encode_on_off(on: bool) -> bytes:
    """0x1A payload: B0 = 0 switches on, 1 switches off (inverted, pitfall 6)."""
    return bytes([0 if on else 1]) + bytes(7)


def decode_on_off(data: bytes) -> bool:
    """Return True for "on"; InfyPowerProtocolError for a B0 other than 0 or 1."""
    _check_len(data)
    if data[0] not in (0, 1):
        raise InfyPowerProtocolError(f"on/off byte {data[0]:#04x} is neither 0 (on) nor 1 (off)")
    return data[0] == 0


def encode_set_vi(voltage: float, current: float) -> bytes:
    """0x1C payload: u32 mV, u32 mA, truncated towards zero (never above the request, §2.2)."""
    mv, ma = _milli(voltage, "voltage"), _milli(current, "current")
    return _U32x2.pack(mv, ma)


def decode_set_vi(data: bytes) -> tuple[float, float]:
    """Return (voltage V, current A) of a 0x1C payload."""
    _check_len(data)
    mv, ma = _U32x2.unpack(data)
    return mv / 1000.0, ma / 1000.0


def _milli(value: float, name: str) -> int:
    if not math.isfinite(value) or value < 0:
        raise InfyPowerProtocolError(f"{name} {value!r} is not a finite value >= 0")
    milli = math.floor(value * 1000.0 + 1e-6)  # 400.0 V -> 400000 even with float noise
    if milli > 0xFFFF_FFFF:
        raise InfyPowerProtocolError(f"{name} {value!r} does not fit the u32 milli-unit field")
    return milli


def encode_vi(voltage: float, current: float) -> bytes:
    """0x03 reply payload: float32 V, float32 A (G2)."""
    return _F32x2.pack(voltage, current)


def decode_vi(data: bytes) -> tuple[float, float]:
    """Return (voltage V, current A) of a 0x03 reply (may be NaN: the caller validates)."""
    _check_len(data)
    v, i = _F32x2.unpack(data)
    return float(v), float(i)


@dataclass(frozen=True)
class ModuleRating:
    """A module's limits from 0x0A (§2.2, §4.5)."""

    max_voltage: float  # V
    min_voltage: float  # V
    max_current: float  # A
    rated_power: float  # W


def encode_capabilities(rating: ModuleRating) -> bytes:
    """0x0A reply payload: u16 V, u16 V, u16 0.1 A, u16 10 W (G8)."""
    return _U16x4.pack(
        _u16(rating.max_voltage, 1.0),
        _u16(rating.min_voltage, 1.0),
        _u16(rating.max_current, 0.1),
        _u16(rating.rated_power, 10.0),
    )


def decode_capabilities(data: bytes) -> ModuleRating:
    """Return the rating carried by a 0x0A reply."""
    _check_len(data)
    v_max, v_min, i_max, p = _U16x4.unpack(data)
    return ModuleRating(float(v_max), float(v_min), i_max * 0.1, p * 10.0)


def encode_after_diode(voltage: float, available_current: float) -> bytes:
    """0x0C reply payload: u16 0.1 V, u16 0.1 A, 4 zero bytes (G9)."""
    return _U16.pack(_u16(voltage, 0.1)) + _U16.pack(_u16(available_current, 0.1)) + bytes(4)


def decode_after_diode(data: bytes) -> tuple[float, float]:
    """Return (external voltage V, available current A) of a 0x0C reply."""
    _check_len(data)
    return _U16.unpack_from(data, 0)[0] * 0.1, _U16.unpack_from(data, 2)[0] * 0.1


def encode_module_count(count: int) -> bytes:
    """0x02 reply payload: the count in B2 (G4)."""
    if not 0 <= count <= 0xFF:
        raise InfyPowerProtocolError(f"module count {count} does not fit a byte")
    return bytes([0, 0, count, 0, 0, 0, 0, 0])


def decode_module_count(data: bytes) -> int:
    """Return the number of modules in the group (B2 of a 0x02 reply)."""
    _check_len(data)
    return data[2]


def encode_barcode(character: str, packed: bytes) -> bytes:
    """0x0B reply payload: one ASCII character, then 7 vendor-packed bytes (G10)."""
    if len(character) != 1 or not character.isascii() or len(packed) != 7:
        raise InfyPowerProtocolError("barcode: one ASCII character and 7 bytes expected")
    return character.encode("ascii") + bytes(packed)


def decode_barcode(data: bytes) -> str:
    """Identity string ``SN_<hex of B1-B7>_<B0>`` as the REG driver builds it (G10)."""
    _check_len(data)
    char = chr(data[0]) if 0x20 <= data[0] < 0x7F else "?"
    return f"SN_{data[1:].hex()}_{char}"


def _u16(value: float, scale: float) -> int:
    if not math.isfinite(value) or value < 0:
        raise InfyPowerProtocolError(f"value {value!r} is not a finite value >= 0")
    raw = round(value / scale)
    if raw > 0xFFFF:
        raise InfyPowerProtocolError(f"value {value!r} does not fit u16 at scale {scale:g}")
    return raw


def _check_len(data: bytes) -> None:
    if len(data) != DLC:
        raise InfyPowerProtocolError(f"InfyPower payloads have 8 bytes, got {len(data)}")


# --- status bits and faults (§3) ------------------------------------------------------------


class FaultClass(enum.Enum):
    """The project's fault classes for power-module hardware (what a status bit means)."""

    COMMUNICATION_LOSS = "communication loss"
    HARDWARE_FAULT = "hardware fault"
    OVER_TEMPERATURE = "over-temperature"
    UNDER_TEMPERATURE = "under-temperature"
    OVER_VOLTAGE_AC = "AC over-voltage"
    UNDER_VOLTAGE_AC = "AC under-voltage"
    OVER_VOLTAGE_DC = "DC over-voltage"
    UNDER_VOLTAGE_DC = "DC under-voltage"
    OVER_CURRENT = "over-current"
    VENDOR_ERROR = "vendor error"
    VENDOR_WARNING = "vendor warning"


class Severity(enum.Enum):
    """What a status bit does to the session."""

    ERROR = "error"
    """Output off (every module), fault reported: the session ends (CONVERTER_FAULT)."""
    ERROR_WHEN_ON = "error when on"
    """An error while the output is commanded on, else a warning."""
    WARNING = "warning"
    """Logged and exposed; the output stays as it is."""
    STATUS = "status"
    """Information (e.g. DC side off); no fault."""


class StatusBit(NamedTuple):
    """One bit of the 0x04 reply: ``byte`` is the data byte (5, 6 or 7), ``bit`` 0..7."""

    byte: int
    bit: int
    name: str
    fault: FaultClass | None
    severity: Severity


E, W, S = Severity.ERROR, Severity.WARNING, Severity.STATUS
STATUS_BITS: tuple[StatusBit, ...] = (
    # byte 7 = state byte 0 (§3.1)
    StatusBit(7, 0, "output short circuit", FaultClass.OVER_CURRENT, E),  # REG: OverCurrentDC
    StatusBit(7, 4, "module sleeping", None, S),
    StatusBit(7, 5, "discharge abnormal", FaultClass.HARDWARE_FAULT, E),  # REG: HardwareFault
    # byte 6 = state byte 1 (DC side / alarms)
    StatusBit(6, 0, "DC side off", None, S),  # output off: used to confirm stop()
    StatusBit(6, 1, "module fault alarm", FaultClass.HARDWARE_FAULT, E),
    StatusBit(6, 2, "protection alarm", FaultClass.HARDWARE_FAULT, E),
    StatusBit(6, 3, "fan fault", FaultClass.VENDOR_WARNING, W),  # REG: VendorWarning (Medium)
    StatusBit(6, 4, "over-temperature alarm", FaultClass.OVER_TEMPERATURE, E),
    StatusBit(6, 5, "output over-voltage alarm", FaultClass.OVER_VOLTAGE_DC, E),
    StatusBit(6, 6, "walk-in enabled", None, S),
    # B6.7: the module lost us (its 10 s cut-off). Whether it latches is unknown (§9): an error
    # only while we want the output on (the module is then not delivering), else a warning.
    StatusBit(
        6, 7, "communication interrupted", FaultClass.COMMUNICATION_LOSS, Severity.ERROR_WHEN_ON
    ),
    # byte 5 = state byte 2 (input / PFC side)
    StatusBit(5, 0, "power limiting", None, S),
    # Duplicate address: two modules take one module's setpoint, so the total current exceeds
    # the request (pitfall 1 in another form). REG ignores it; we stop (deviation).
    StatusBit(5, 1, "duplicate module address", FaultClass.HARDWARE_FAULT, E),
    StatusBit(5, 2, "load-sharing alarm", FaultClass.HARDWARE_FAULT, E),  # REG: HardwareFault
    StatusBit(5, 3, "input phase lost", FaultClass.UNDER_VOLTAGE_AC, E),  # REG: VendorError
    StatusBit(5, 4, "input unbalanced", FaultClass.UNDER_VOLTAGE_AC, E),  # REG: UnderVoltageAC
    # The AC input bits as CB maps them; the REG driver's mapping is odd (§6.1, pitfall 17).
    StatusBit(5, 5, "input under-voltage", FaultClass.UNDER_VOLTAGE_AC, E),
    StatusBit(5, 6, "input over-voltage", FaultClass.OVER_VOLTAGE_AC, E),
    StatusBit(5, 7, "PFC side off", None, S),
)
"""Every status bit a source defines (§3.1) with our fault class and severity (§3.2 compared)."""
del E, W, S

_BIT_INDEX = {(b.byte, b.bit): b for b in STATUS_BITS}


def status_bit(byte: int, bit: int) -> StatusBit:
    """Return the table row of ``B<byte>.<bit>`` (KeyError for undefined bits)."""
    return _BIT_INDEX[(byte, bit)]


@dataclass(frozen=True)
class ModuleStatus:
    """A 0x04 reply (§2.2): group, temperature and the three state bytes."""

    group: int = 0
    temperature: int = 25  # degC, signed 8 bit (module ambient, per the EV dissector)
    byte5: int = 0  # state byte 2 (input / PFC)
    byte6: int = 0x01  # state byte 1 (DC side); default: DC side off
    byte7: int = 0  # state byte 0

    def bit(self, byte: int, bit: int) -> bool:
        """Value of ``B<byte>.<bit>``."""
        value = {5: self.byte5, 6: self.byte6, 7: self.byte7}[byte]
        return bool(value >> bit & 1)

    @property
    def dc_off(self) -> bool:
        """B6.0: the module's output is off."""
        return self.bit(6, 0)

    def active(self) -> list[StatusBit]:
        """Return the defined bits that are set, in table order."""
        return [b for b in STATUS_BITS if self.bit(b.byte, b.bit)]

    def undefined_bits(self) -> list[str]:
        """Set bits that no source defines (reported as vendor warnings)."""
        out = []
        for byte in (5, 6, 7):
            for bit in range(8):
                if self.bit(byte, bit) and (byte, bit) not in _BIT_INDEX:
                    out.append(f"B{byte}.{bit}")
        return out

    def with_bits(self, *bits: tuple[int, int], on: bool = True) -> ModuleStatus:
        """Return a copy with ``(byte, bit)`` set (or cleared)."""
        values = {5: self.byte5, 6: self.byte6, 7: self.byte7}
        for byte, bit in bits:
            values[byte] = values[byte] | (1 << bit) if on else values[byte] & ~(1 << bit)
        return ModuleStatus(self.group, self.temperature, values[5], values[6], values[7])


def encode_status(status: ModuleStatus) -> bytes:
    """0x04 reply payload (G6): B2 group, B4 temperature (int8), B5-B7 state bytes."""
    temperature = max(-128, min(127, int(status.temperature)))
    s = status
    return bytes([0, 0, s.group & 0xFF, 0, temperature & 0xFF, s.byte5, s.byte6, s.byte7])


def decode_status(data: bytes) -> ModuleStatus:
    """Return the content of a 0x04 reply."""
    _check_len(data)
    temperature = data[4] - 256 if data[4] >= 128 else data[4]
    return ModuleStatus(data[2], temperature, data[5], data[6], data[7])


@dataclass(frozen=True)
class ModuleFault:
    """A fault or warning of one module."""

    address: int
    fault: FaultClass
    severity: Severity
    text: str  # e.g. "over-temperature alarm (B6.4)"

    def __str__(self) -> str:
        return f"module {self.address}: {self.text} [{self.fault.name}]"


def faults_of(address: int, status: ModuleStatus, output_wanted: bool) -> list[ModuleFault]:
    """Faults and warnings of one 0x04 reply; ``output_wanted`` resolves ERROR_WHEN_ON."""
    out = []
    for b in status.active():
        if b.fault is None:
            continue
        severity = b.severity
        if severity is Severity.ERROR_WHEN_ON:
            severity = Severity.ERROR if output_wanted else Severity.WARNING
        out.append(ModuleFault(address, b.fault, severity, f"{b.name} (B{b.byte}.{b.bit})"))
    for where in status.undefined_bits():
        out.append(
            ModuleFault(
                address, FaultClass.VENDOR_WARNING, Severity.WARNING, f"undefined bit {where}"
            )
        )
    return out


# --- logs -----------------------------------------------------------------------------------


def describe(frame_: CanFrame) -> str:
    """One line for logs: ``028300F0 [8] 00 .. READ_VI dev 0x0A F0->00``."""
    ident = InfyId.decode(frame_.arbitration_id)
    try:
        name = Command(ident.command).name
    except ValueError:
        name = f"cmd {ident.command:#04x}"
    err = f" error {ident.error} ({error_label(ident.error)})" if ident.error else ""
    return (
        f"{frame_} {name} dev {ident.device:#04x} {ident.source:02X}->{ident.destination:02X}{err}"
    )
