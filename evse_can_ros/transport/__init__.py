"""The CAN link (python-can): receive thread in, thread-safe send out; one link per bus."""

from evse_can_ros.transport.can_link import CanLink, LinkConfig, LinkConfigError, LinkStats
from evse_can_ros.transport.scheduler import Scheduled, TxScheduler
from evse_can_ros.transport.shared_link import LinkPool, PistolLink, SharedLink

__all__ = [
    "CanLink",
    "LinkConfig",
    "LinkConfigError",
    "LinkPool",
    "LinkStats",
    "PistolLink",
    "Scheduled",
    "SharedLink",
    "TxScheduler",
]
