"""Encode and decode Generic EVSE CAN interface frames by message name (spec 3-6).

The codec wraps the project's own CAN database of one interface version (``protocol_version``
2: ``data/generic_evse_can_v2.dbc``, 3: ``data/generic_evse_can_v3.dbc``), or a database given
by path. It is loaded once per (path, version) (:func:`load_codec`) and checked against that
version's typed messages (:mod:`~evse_can_ros.protocol.messages`,
:mod:`~evse_can_ros.protocol.messages_v3`), so that a wrong override file (or a database of the
other version) fails at start-up with a clear message, not at the first frame.

Everything the codec rejects raises a :class:`~evse_can_ros.protocol.errors.ProtocolError`
subclass with a one-line message; cantools exceptions never escape.
"""

from __future__ import annotations

import decimal
import functools
import hashlib
import math
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

import cantools

from evse_can_ros.protocol.errors import (
    DatabaseError,
    ForeignPistolError,
    FrameFormatError,
    FrameLengthError,
    SignalError,
    SignalRangeError,
    UnknownMessageError,
)
from evse_can_ros.protocol.frame import CanFrame
from evse_can_ros.protocol.ids import (
    MODULE_TYPE_GENERIC,
    interface_version_field,
    is_from_controller,
    make_can_id,
    module_type,
    split_can_id,
)
from evse_can_ros.protocol.messages import CanMessage, LabelEnum, field_name
from evse_can_ros.protocol.versions import DEFAULT_PROTOCOL_VERSION, ProtocolVersion
from evse_can_ros.text import one_line

RESERVED_SIGNAL = "Reserved"
DEFAULT_BITRATE = 500_000
"""Controller default bitrate (spec 3)."""


def default_database_path(protocol_version: int = DEFAULT_PROTOCOL_VERSION) -> Path:
    """Path of the database of ``protocol_version`` shipped with the package (package data)."""
    name = ProtocolVersion.of(protocol_version).database_file
    return Path(str(resources.files("evse_can_ros.protocol") / "data" / name))


@dataclass(frozen=True)
class SignalSpec:
    """What the codec needs to know about one signal, precomputed at load time."""

    name: str
    field: str | None  # dataclass field, None for Reserved
    start: int
    length: int
    is_signed: bool
    scale: float
    offset: float
    minimum: float | None  # database physical limits (None = not defined)
    maximum: float | None
    unit: str
    raw_min: int
    raw_max: int
    labels: Mapping[int, str]  # value -> label ({} if none)
    decimals: int  # decimal places of the resolution (0.1 -> 1), for exact decoding

    @property
    def physical_range(self) -> tuple[float, float]:
        """Allowed physical range: the database limits, else what the field width can carry."""
        lo = self.raw_min * self.scale + self.offset
        hi = self.raw_max * self.scale + self.offset
        if self.minimum is not None:
            lo = max(lo, self.minimum)
        if self.maximum is not None:
            hi = min(hi, self.maximum)
        return lo, hi


@dataclass(frozen=True)
class MessageSpec:
    """One database message: identity, layout, typed class and signals."""

    name: str
    base_id: int
    length: int
    cycle_time_ms: int | None
    from_controller: bool  # sent by the Advantics controller (bit 15 of the base id, v2 and v3)
    type: type[CanMessage]
    signals: tuple[SignalSpec, ...]
    db_message: Any  # cantools Message (packing / unpacking)
    converters: tuple[tuple[str, str, Callable[[Any], Any]], ...]  # (signal, field, convert)


class Codec:
    """Encoder/decoder for one database of one interface version (see module docstring).

    ``Codec()`` is the packaged v2 database; ``Codec(protocol_version=3)`` the packaged v3 one.
    """

    def __init__(
        self,
        database_path: str | os.PathLike[str] | None = None,
        protocol_version: int = DEFAULT_PROTOCOL_VERSION,
    ) -> None:
        version = ProtocolVersion.of(protocol_version)
        path = Path(database_path) if database_path is not None else default_database_path(version)
        self.protocol_version = version
        self.database_path = path
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise DatabaseError(
                f"cannot read CAN database {path}: {exc.strerror or exc}"
            ) from None
        self.database_sha256 = hashlib.sha256(raw).hexdigest()
        try:
            db = cantools.database.load_string(
                raw.decode("utf-8"), database_format=_format_of(path), strict=True
            )
        except (cantools.database.errors.Error, UnicodeDecodeError, ValueError, KeyError) as exc:
            raise DatabaseError(f"cannot load CAN database {path}: {one_line(exc)}") from None
        _check_version(db, version, path)
        self._by_name: dict[str, MessageSpec] = {}
        self._by_base: dict[int, MessageSpec] = {}
        for message_type in version.message_types:
            spec = _build_spec(db, message_type, path, version)
            self._by_name[spec.name] = spec
            self._by_base[spec.base_id] = spec
        extra = sorted({m.name for m in getattr(db, "messages", [])} - set(self._by_name))
        if extra:
            raise DatabaseError(
                f"CAN database {path} has messages that interface v{int(version)} "
                f"does not know: {extra}"
            )
        self.message_names: tuple[str, ...] = tuple(self._by_name)

    # --- introspection --------------------------------------------------------------------------

    def spec(self, name: str) -> MessageSpec:
        """Return the :class:`MessageSpec` of message ``name``."""
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownMessageError(f"no message named {name!r} in the CAN database") from None

    def spec_for_id(self, can_id: int) -> MessageSpec | None:
        """Return the spec of a bus identifier's base id (any pistol), or None if unknown."""
        return self._by_base.get(can_id & 0x00FF_FFFF)

    def signal(self, message: str, signal: str) -> SignalSpec:
        """Return the :class:`SignalSpec` of ``message.signal``."""
        for s in self.spec(message).signals:
            if s.name == signal:
                return s
        raise SignalError(f"message {message} has no signal {signal!r}")

    def clamp(self, message: str, signal: str, value: float) -> float:
        """Clamp a physical value into the range the signal can carry (PM-12/14 saturation)."""
        lo, hi = self.signal(message, signal).physical_range
        return min(max(value, lo), hi)

    # --- encode ---------------------------------------------------------------------------------

    def encode(self, message: CanMessage, pistol_index: int, timestamp: float = 0.0) -> CanFrame:
        """Encode a typed message for ``pistol_index`` with strict range checks."""
        spec = self.spec(message.NAME)
        values = {s: getattr(message, f) for s, f, _ in spec.converters}
        return self._encode(spec, values, pistol_index, timestamp)

    def encode_signals(
        self, name: str, signals: Mapping[str, object], pistol_index: int, timestamp: float = 0.0
    ) -> CanFrame:
        """Encode message ``name`` from ``{signal name: physical value or label}``.

        Every signal except ``Reserved`` must be given; ``Reserved`` may be omitted (sent as 0).
        """
        spec = self.spec(name)
        known = {s.name for s in spec.signals}
        unknown = sorted(set(signals) - known)
        if unknown:
            raise SignalError(f"{name} has no signal(s) {unknown}")
        return self._encode(spec, signals, pistol_index, timestamp)

    def _encode(
        self, spec: MessageSpec, values: Mapping[str, object], pistol_index: int, timestamp: float
    ) -> CanFrame:
        can_id = make_can_id(spec.base_id, pistol_index)
        raw: dict[str, int] = {}
        for sig in spec.signals:
            if sig.name not in values:
                if sig.field is None:
                    raw[sig.name] = 0
                    continue
                raise SignalError(f"{spec.name}.{sig.name} is missing")
            raw[sig.name] = _to_raw(spec.name, sig, values[sig.name])
            if sig.labels and not spec.from_controller and raw[sig.name] not in sig.labels:
                # what we send carries only documented values (e.g. System_Enable 0/1, PM-13)
                raise SignalRangeError(
                    f"{spec.name}.{sig.name} = {raw[sig.name]} is not one of its labels "
                    f"{sorted(sig.labels.values())}",
                    sig.name,
                    values[sig.name],
                )
        try:
            data = spec.db_message.encode(raw, scaling=False, padding=False, strict=False)
        except Exception as exc:  # cantools/bitstruct: should be unreachable after _to_raw
            raise SignalError(f"cannot encode {spec.name}: {one_line(exc)}") from None
        return CanFrame(can_id, bytes(data), timestamp)

    # --- decode ---------------------------------------------------------------------------------

    def message_spec_of(
        self, frame: CanFrame, pistol_index: int | None = None, *, padded_ok: bool = False
    ) -> MessageSpec:
        """Validate a frame's format, pistol index, identifier and DLC; return its message spec.

        ``pistol_index`` None accepts any valid index (1..31), e.g. for a bus sniffer.
        ``padded_ok``: a frame longer than the database length passes (the caller truncates).
        """
        if frame.is_error_frame:
            raise FrameFormatError("error frame")
        if frame.is_remote_frame:
            raise FrameFormatError(
                f"remote frame 0x{frame.arbitration_id:X}: the interface has none"
            )
        if not frame.is_extended_id:
            raise FrameFormatError(
                f"11-bit identifier 0x{frame.arbitration_id:03X}: only 29-bit ids are used"
            )
        index, base = split_can_id(frame.arbitration_id)
        if pistol_index is None:
            if index == 0:
                raise ForeignPistolError(
                    f"frame 0x{frame.arbitration_id:08X} has pistol index 0 (invalid)", 0
                )
        elif index != pistol_index:
            raise ForeignPistolError(
                f"frame 0x{frame.arbitration_id:08X} is for pistol {index}, not {pistol_index}",
                index,
            )
        spec = self._by_base.get(base)
        if spec is None:
            raise UnknownMessageError(
                f"unknown identifier 0x{frame.arbitration_id:08X} "
                f"(base 0x{base:05X}) for pistol {index}",
                frame.arbitration_id,
            )
        if len(frame.data) != spec.length and not (padded_ok and len(frame.data) > spec.length):
            raise FrameLengthError(
                f"{spec.name} (0x{frame.arbitration_id:08X}) has DLC {len(frame.data)}, "
                f"expected {spec.length}"
            )
        return spec

    def decode(self, frame: CanFrame, pistol_index: int | None = None) -> CanMessage:
        """Decode a frame into its typed message (see :meth:`message_spec_of` for the checks)."""
        spec = self.message_spec_of(frame, pistol_index)
        values = self._decode_values(spec, frame.data)
        factory: Callable[..., CanMessage] = spec.type
        return factory(**{f: convert(values[s]) for s, f, convert in spec.converters})

    def decode_signals(
        self, frame: CanFrame, pistol_index: int | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Decode a frame into ``(message name, {signal: physical value})``, Reserved included."""
        spec = self.message_spec_of(frame, pistol_index)
        return spec.name, self._decode_values(spec, frame.data)

    @staticmethod
    def _decode_values(spec: MessageSpec, data: bytes) -> dict[str, Any]:
        """Raw values -> physical, rounded to the signal resolution (3652 * 0.1 -> 365.2)."""
        try:
            raw: dict[str, int] = spec.db_message.decode(data, decode_choices=False, scaling=False)
        except Exception as exc:  # cantools: should be unreachable after the DLC check
            raise FrameLengthError(f"cannot decode {spec.name}: {one_line(exc)}") from None
        values: dict[str, Any] = {}
        for sig in spec.signals:
            r = raw[sig.name]
            if sig.scale == 1 and sig.offset == 0:
                values[sig.name] = r
            else:
                values[sig.name] = round(r * sig.scale + sig.offset, sig.decimals)
        return values


@functools.lru_cache(maxsize=8)
def _load_codec_cached(path: str, protocol_version: int) -> Codec:
    return Codec(path, protocol_version)


def load_codec(
    database_path: str | os.PathLike[str] | None = None,
    protocol_version: int = DEFAULT_PROTOCOL_VERSION,
) -> Codec:
    """Return the codec of ``database_path`` for ``protocol_version``, loaded once per pair.

    The default path is the packaged database of that version: ``load_codec()`` is v2,
    ``load_codec(protocol_version=3)`` is v3.
    """
    version = ProtocolVersion.of(protocol_version)
    path = Path(database_path) if database_path else default_database_path(version)
    return _load_codec_cached(str(path.resolve()), int(version))


# --- helpers ---------------------------------------------------------------------------


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    formats = {".dbc": "dbc", ".kcd": "kcd", ".arxml": "arxml", ".sym": "sym"}
    if suffix not in formats:
        raise DatabaseError(f"CAN database {path} must be a .dbc or .kcd file")
    return formats[suffix]


def _raw_limits(length: int, is_signed: bool) -> tuple[int, int]:
    if is_signed:
        return -(1 << (length - 1)), (1 << (length - 1)) - 1
    return 0, (1 << length) - 1


def _check_version(db: Any, version: ProtocolVersion, path: Path) -> None:
    """Name the version mismatch when ``db`` is exactly the other version's message set."""
    names = {m.name for m in getattr(db, "messages", [])}
    for other in ProtocolVersion:
        if other is not version and names == {t.NAME for t in other.message_types}:
            raise DatabaseError(
                f"CAN database {path} is an interface v{int(other)} database, "
                f"but protocol_version is {int(version)}"
            )


def _build_spec(
    db: Any, message_type: type[CanMessage], path: Path, version: ProtocolVersion
) -> MessageSpec:
    """Check one database message against its typed class and precompute its spec.

    Long: every check that makes a wrong database fail at start-up, in one place.
    """
    try:
        m = db.get_message_by_name(message_type.NAME)
    except KeyError:
        raise DatabaseError(f"CAN database {path} has no message {message_type.NAME}") from None
    if not m.is_extended_frame:
        raise DatabaseError(f"{m.name} in {path} is not an extended (29-bit) frame")
    base_id = m.frame_id & 0x00FF_FFFF
    if (
        module_type(base_id) != MODULE_TYPE_GENERIC
        or interface_version_field(base_id) != version.id_version_field
    ):
        # e.g. a v3.0 database, which still used the v2 identifiers (v3 digest 2)
        raise DatabaseError(
            f"{m.name} in {path} has base id 0x{base_id:05X}, not an interface "
            f"v{int(version)} identifier (0x06 in bits 23..16, {version.id_version_field} "
            "in bits 14..12)"
        )
    hints = typing.get_type_hints(message_type)
    field_names = {f.name for f in fields(message_type)}
    signals: list[SignalSpec] = []
    converters: list[tuple[str, str, Callable[[Any], Any]]] = []
    for s in m.signals:
        reserved = s.name == RESERVED_SIGNAL
        fname = None if reserved else field_name(s.name)
        if fname is not None and fname not in field_names:
            raise DatabaseError(
                f"{m.name}.{s.name} in {path} has no field in {message_type.__name__}"
            )
        raw_min, raw_max = _raw_limits(s.length, s.is_signed)
        labels = {int(k): str(v) for k, v in (s.choices or {}).items()}
        spec = SignalSpec(
            s.name,
            fname,
            s.start,
            s.length,
            s.is_signed,
            float(s.scale),
            float(s.offset),
            None if s.minimum is None else float(s.minimum),
            None if s.maximum is None else float(s.maximum),
            s.unit or "",
            raw_min,
            raw_max,
            labels,
            _decimals(float(s.scale)),
        )
        signals.append(spec)
        if fname is not None:
            converters.append(
                (s.name, fname, _converter(hints[fname], m.name, s.name, labels, path))
            )
    missing = field_names - {c[1] for c in converters}
    if missing:
        raise DatabaseError(f"{m.name} in {path} lacks signals for fields {sorted(missing)}")
    return MessageSpec(
        m.name,
        base_id,
        m.length,
        m.cycle_time,
        is_from_controller(base_id),
        message_type,
        tuple(signals),
        m,
        tuple(converters),
    )


def _converter(
    hint: Any, message: str, signal: str, labels: Mapping[int, str], path: Path
) -> Callable[[Any], Any]:
    if isinstance(hint, type) and issubclass(hint, LabelEnum):
        ours = {int(member): member.label for member in hint}
        if ours != dict(labels):
            raise DatabaseError(
                f"{message}.{signal} labels in {path} differ from {hint.__name__}: "
                f"{dict(labels)} != {ours}"
            )
        return hint
    if hint is bool:
        return bool
    if hint is int:
        return int
    if hint is float:
        return float
    raise DatabaseError(f"unsupported field type {hint!r} for {message}.{signal}")


def _to_raw(message: str, sig: SignalSpec, value: object) -> int:
    """Physical value (or label string) -> raw integer, with strict range checks."""
    where = f"{message}.{sig.name}"
    if isinstance(value, str):
        for raw_value, label in sig.labels.items():
            if label == value:
                return raw_value
        raise SignalError(
            f"{where}: {value!r} is not one of its labels {sorted(sig.labels.values())}"
        )
    if isinstance(value, bool):
        number: float = int(value)
    elif isinstance(value, (int, float)):
        number = value
    else:
        raise SignalError(f"{where}: cannot encode a value of type {type(value).__name__}")
    if isinstance(number, float) and not math.isfinite(number):
        raise SignalRangeError(f"{where} = {number} is not a finite number", sig.name, value)
    lo, hi = sig.physical_range
    unit = f" {sig.unit}" if sig.unit else ""
    raw = round((number - sig.offset) / sig.scale)
    # Compare in raw units so that 0.1-scaled values at the edge of the range are not refused
    # because of binary floating point (e.g. 6553.5 V / 0.1).
    raw_lo = math.ceil(round((lo - sig.offset) / sig.scale, 6))
    raw_hi = math.floor(round((hi - sig.offset) / sig.scale, 6))
    if not raw_lo <= raw <= raw_hi:
        raise SignalRangeError(
            f"{where} = {value}{unit} is outside {_fmt(lo)}..{_fmt(hi)}{unit}", sig.name, value
        )
    return int(raw)


def _decimals(scale: float) -> int:
    """Decimal places needed to write multiples of ``scale`` exactly (0.1 -> 1, 2 -> 0)."""
    exponent = decimal.Decimal(repr(scale)).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _fmt(x: float) -> str:
    return f"{x:g}"
