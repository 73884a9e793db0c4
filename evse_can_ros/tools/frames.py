"""Frame text formats used by the command line (candump-style ``ID#DATA``)."""

from __future__ import annotations

from evse_can_ros.protocol import CanFrame, ProtocolError


def parse_frame(text: str) -> CanFrame:
    """Parse ``ID#DATA`` (candump ``-L`` style, e.g. ``01068009#07``); 8 hex digits = 29-bit id."""
    ident, sep, data = text.strip().partition("#")
    if not sep or not ident:
        raise ProtocolError(f"{text!r} is not ID#DATA (e.g. 01068009#07)")
    try:
        can_id = int(ident, 16)
        payload = bytes.fromhex(data.replace(".", ""))
    except ValueError:
        raise ProtocolError(f"{text!r}: ID and DATA must be hexadecimal") from None
    if len(payload) > 8:
        raise ProtocolError(f"{text!r}: more than 8 data bytes")
    return CanFrame(can_id, payload, is_extended_id=len(ident) > 3 or can_id > 0x7FF)
