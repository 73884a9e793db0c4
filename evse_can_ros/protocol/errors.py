"""One error hierarchy for everything the protocol layer rejects.

Every error is a ``ProtocolError`` (a ``ValueError``) with a one-line message that names the
message, signal or identifier at fault, so callers can count and log it without a traceback.
"""

from __future__ import annotations


class ProtocolError(ValueError):
    """Base class: a frame or a value that the Generic EVSE CAN interface does not allow."""


class DatabaseError(ProtocolError):
    """The CAN database file is missing or does not describe the interface."""


class ProtocolVersionError(ProtocolError):
    """A ``protocol_version`` other than 2 or 3 was configured or requested."""


class FrameFormatError(ProtocolError):
    """The frame is not a classic data frame with a 29-bit identifier (error, remote, 11-bit)."""


class UnknownMessageError(ProtocolError):
    """The identifier (or message name) is not part of the database."""

    def __init__(self, message: str, can_id: int | None = None) -> None:
        super().__init__(message)
        self.can_id = can_id


class ForeignPistolError(ProtocolError):
    """The frame is addressed to another pistol index than ours (spec 4, PM-02): not ours."""

    def __init__(self, message: str, pistol_index: int) -> None:
        super().__init__(message)
        self.pistol_index = pistol_index


class PistolIndexError(ProtocolError):
    """A pistol index outside 1..31 was configured or requested."""


class FrameLengthError(ProtocolError):
    """The frame's DLC differs from the database length of its message."""


class SignalError(ProtocolError):
    """A signal is missing, unknown, or of a type that cannot be encoded."""


class SignalRangeError(SignalError):
    """A signal value is outside the range the database (or the field width) allows."""

    def __init__(self, message: str, signal: str, value: object) -> None:
        super().__init__(message)
        self.signal = signal
        self.value = value
