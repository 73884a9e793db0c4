"""Interface versions: which database and which message set a ``protocol_version`` selects.

``protocol_version`` 2 is the Generic EVSE CAN interface v2 (database v2.7, the default
everywhere) and 3 is interface v3 (database v3.6, bidirectional power transfer). The two are not
wire compatible: every identifier moved (v3 digest 2), so a node speaks exactly one of them.
"""

from __future__ import annotations

from enum import IntEnum

from evse_can_ros.protocol.errors import ProtocolVersionError
from evse_can_ros.protocol.messages import MESSAGE_TYPES, CanMessage
from evse_can_ros.protocol.messages_v3 import MESSAGE_TYPES_V3


class ProtocolVersion(IntEnum):
    """The ``protocol_version`` parameter: 2 or 3."""

    V2 = 2
    V3 = 3

    @classmethod
    def of(cls, value: object) -> ProtocolVersion:
        """Return the version for 2, 3 or a ProtocolVersion; raise ProtocolVersionError else."""
        if isinstance(value, int) and not isinstance(value, bool) and value in (2, 3):
            return cls(value)
        raise ProtocolVersionError(f"protocol_version must be 2 or 3, got {value!r}")

    @property
    def database_file(self) -> str:
        """File name of the project's database in ``evse_can_ros/protocol/data``."""
        return f"generic_evse_can_v{int(self)}.dbc"

    @property
    def database_revision(self) -> str:
        """Vendor database revision that our database implements ("2.7", "3.6")."""
        return _REVISION[self]

    @property
    def message_types(self) -> tuple[type[CanMessage], ...]:
        """The typed message classes of this version, in database order."""
        return _MESSAGE_TYPES[self]

    @property
    def id_version_field(self) -> int:
        """Bits 14..12 of every base identifier of this version (v3 digest 2)."""
        return 3 if self is ProtocolVersion.V3 else 0


DEFAULT_PROTOCOL_VERSION = ProtocolVersion.V2

_REVISION = {ProtocolVersion.V2: "2.7", ProtocolVersion.V3: "3.6"}
_MESSAGE_TYPES = {ProtocolVersion.V2: MESSAGE_TYPES, ProtocolVersion.V3: MESSAGE_TYPES_V3}
