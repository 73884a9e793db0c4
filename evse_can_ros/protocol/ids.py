"""Identifier layout of the Generic EVSE CAN interface (spec 4).

On the bus, bits 28..24 of the 29-bit identifier carry the pistol index (1..31) and bits 23..0
the base identifier listed in the database::

    can_id = (pistol_index << 24) | base_id
"""

from __future__ import annotations

from evse_can_ros.protocol.errors import PistolIndexError, ProtocolError

PISTOL_INDEX_MIN = 1
PISTOL_INDEX_MAX = 31
PISTOL_SHIFT = 24
BASE_ID_MASK = 0x00FF_FFFF
PISTOL_MASK = 0x1F00_0000
EXTENDED_ID_MAX = 0x1FFF_FFFF


def check_pistol_index(pistol_index: int) -> int:
    """Return ``pistol_index`` if it is a valid index (1..31), else raise PistolIndexError."""
    if isinstance(pistol_index, bool) or not isinstance(pistol_index, int):
        raise PistolIndexError(f"pistol index must be an integer 1..31, got {pistol_index!r}")
    if not PISTOL_INDEX_MIN <= pistol_index <= PISTOL_INDEX_MAX:
        raise PistolIndexError(f"pistol index must be 1..31, got {pistol_index}")
    return pistol_index


def make_can_id(base_id: int, pistol_index: int) -> int:
    """Return the bus identifier of ``base_id`` for ``pistol_index`` (0x68001, 1 -> 0x01068001)."""
    check_pistol_index(pistol_index)
    if not 0 <= base_id <= BASE_ID_MASK:
        raise ProtocolError(f"base id 0x{base_id:X} does not fit in 24 bits")
    return (pistol_index << PISTOL_SHIFT) | base_id


def split_can_id(can_id: int) -> tuple[int, int]:
    """Split a 29-bit bus identifier into ``(pistol_index, base_id)`` (no validity check)."""
    if not 0 <= can_id <= EXTENDED_ID_MAX:
        raise ProtocolError(f"CAN id 0x{can_id:X} is not a 29-bit identifier")
    return can_id >> PISTOL_SHIFT, can_id & BASE_ID_MASK


def pistol_filter(pistol_index: int) -> dict[str, int | bool]:
    """python-can filter for the extended frames of ``pistol_index`` (kernel side on SocketCAN)."""
    check_pistol_index(pistol_index)
    return {"can_id": pistol_index << PISTOL_SHIFT, "can_mask": PISTOL_MASK, "extended": True}
