"""A CAN frame as the protocol layer sees it: no python-can, no ROS, immutable."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CanFrame:
    """One classic CAN frame.

    ``timestamp`` is in seconds on whatever clock the caller uses (bus time for received frames,
    ``now`` of the state machine for frames it produced).
    """

    arbitration_id: int
    data: bytes
    timestamp: float = 0.0
    is_extended_id: bool = True
    is_remote_frame: bool = False
    is_error_frame: bool = False

    @property
    def dlc(self) -> int:
        """Data length code (number of data bytes, 0..8)."""
        return len(self.data)

    def __str__(self) -> str:
        ident = (
            f"{self.arbitration_id:08X}" if self.is_extended_id else f"{self.arbitration_id:03X}"
        )
        return f"{ident} [{self.dlc}] {self.data.hex(' ').upper()}"
