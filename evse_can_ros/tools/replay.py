"""Replay a recorded session onto a CAN bus at its original timing (no rclpy).

Only the controller's frames are replayed by default (``direction="controller"``): the bridge and
converter under test produce the power side's frames themselves, live. ``direction="all"``
replays everything (e.g. to feed a bus monitor).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import can

from evse_can_ros.protocol import Codec
from evse_can_ros.transport.sessionlog import Session, TimedFrame


@dataclass
class ReplayStats:
    """What a replay did."""

    sent: int = 0
    skipped: int = 0
    failed: int = 0
    duration: float = 0.0


def select_frames(
    session: Session,
    direction: str = "controller",
    pistol: int | None = None,
    codec: Codec | None = None,
) -> list[TimedFrame]:
    """Frames to replay: controller-sent (or all), of one pistol (or all), data frames only."""
    codec = codec or session.codec()
    if direction not in ("controller", "all"):
        raise ValueError(f"direction must be 'controller' or 'all', got {direction!r}")
    out = []
    for tf in session.frames:
        f = tf.frame
        if f.is_error_frame or f.is_remote_frame:
            continue
        if pistol is not None and f.arbitration_id >> 24 != pistol:
            continue
        if direction == "controller":
            spec = codec.spec_for_id(f.arbitration_id) if f.is_extended_id else None
            if spec is None or not spec.from_controller:
                continue
        out.append(tf)
    return out


def replay_to_bus(
    frames: list[TimedFrame],
    bus: can.BusABC,
    speed: float = 1.0,
    stop: threading.Event | None = None,
    on_frame: Callable[[TimedFrame], None] | None = None,
) -> ReplayStats:
    """Send ``frames`` on ``bus`` keeping their relative timing divided by ``speed``."""
    if not speed > 0:
        raise ValueError(f"speed must be > 0, got {speed}")
    stats = ReplayStats()
    if not frames:
        return stats
    stop = stop or threading.Event()
    t0_rec = frames[0].t
    t0 = time.monotonic()
    for tf in frames:
        due = t0 + (tf.t - t0_rec) / speed
        delay = due - time.monotonic()
        if delay > 0 and stop.wait(delay):
            break
        f = tf.frame
        try:
            bus.send(
                can.Message(
                    arbitration_id=f.arbitration_id, data=f.data, is_extended_id=f.is_extended_id
                )
            )
            stats.sent += 1
        except (can.CanError, OSError) as exc:
            stats.failed += 1
            if stats.failed == 1:
                import logging

                logging.getLogger(__name__).warning("replay send failed: %s", exc)
        if on_frame is not None:
            on_frame(tf)
    stats.duration = time.monotonic() - t0
    return stats
