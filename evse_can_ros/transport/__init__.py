"""The CAN link (python-can): receive thread in, thread-safe send out."""

from evse_can_ros.transport.can_link import CanLink, LinkConfig, LinkConfigError, LinkStats

__all__ = ["CanLink", "LinkConfig", "LinkConfigError", "LinkStats"]
