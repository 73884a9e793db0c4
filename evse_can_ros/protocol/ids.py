"""Identifier layout of the Generic EVSE CAN interface (spec 4, v3 digest 2).

On the bus, bits 28..24 of the 29-bit identifier carry the pistol index (1..31) and bits 23..0
the base identifier listed in the database::

    can_id = (pistol_index << 24) | base_id

The same holds in v2 and v3. Inside the base identifier, bits 23..16 are the module type (0x06),
bit 15 the direction (1 = sent by the controller) and bits 14..12 the interface version field:
3 for every v3 identifier (0x6Bgnn from the controller, 0x63gnn to it), 0 for every v2 one
(0x68xxx, 0x60xxx). Bits 11..8 are the v3 message group, bits 7..0 the number in the group.
"""

from __future__ import annotations

from evse_can_ros.protocol.errors import PistolIndexError, ProtocolError

PISTOL_INDEX_MIN = 1
PISTOL_INDEX_MAX = 31
PISTOL_SHIFT = 24
BASE_ID_MASK = 0x00FF_FFFF
PISTOL_MASK = 0x1F00_0000
EXTENDED_ID_MAX = 0x1FFF_FFFF
MODULE_TYPE_GENERIC = 0x06
"""Bits 23..16 of every base identifier: Advantics module type of the generic interfaces."""
DIRECTION_BIT = 1 << 15
"""Set in the base identifier of every message sent by the Advantics controller."""


def is_from_controller(base_id: int) -> bool:
    """Return True if ``base_id`` is a message sent by the Advantics controller (bit 15)."""
    return bool(base_id & DIRECTION_BIT)


def module_type(base_id: int) -> int:
    """Bits 23..16 of a base identifier (0x06 for the generic interfaces)."""
    return (base_id >> 16) & 0xFF


def interface_version_field(base_id: int) -> int:
    """Bits 14..12 of a base identifier: 3 in v3 (0x6B003 -> 3), 0 in v2 (0x68005 -> 0)."""
    return (base_id >> 12) & 0x7


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
