"""Read the CAN frames of a recorded session, whatever recorded it (no rclpy).

Inputs:

* rosbag2 directories or files (mcap, sqlite3) written by ``evse-can-ros record``: topics of
  type ``evse_can_ros/msg/CanFrame`` (``.../can_rx``, ``.../can_tx``);
* rosbag2 of ``can_msgs/msg/Frame`` as recorded from ros2_socketcan (``/from_can_bus``,
  ``/to_can_bus``);
* CAN logs that python-can reads: candump ``-l`` (.log), Vector ASC (.asc), BLF (.blf),
  PCAN TRC (.trc), python-can CSV (.csv).

Bag messages are deserialised with the definitions stored in the bag itself, so no ROS
installation is needed. Bad input (a truncated bag, an unreadable log, no CAN frames) never raises
out of :func:`read_session`: the frames read so far are returned with a list of problems.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import can

from evse_can_ros.protocol import CanFrame, Codec, load_codec
from evse_can_ros.protocol.ids import (
    BASE_ID_MASK,
    MODULE_TYPE_GENERIC,
    interface_version_field,
    module_type,
)
from evse_can_ros.text import one_line

log = logging.getLogger(__name__)
T = TypeVar("T")

FRAME_TYPES = ("evse_can_ros/msg/CanFrame", "can_msgs/msg/Frame")
LOG_SUFFIXES = (".log", ".asc", ".blf", ".trc", ".csv")
TX_TOPIC_HINTS = ("can_tx", "to_can_bus")


@dataclass(frozen=True)
class TimedFrame:
    """A frame with its time (seconds; bus or log time) and where it came from."""

    t: float
    frame: CanFrame
    source: str  # topic name or "log"

    @property
    def sent_by_us(self) -> bool:
        """True if the recording marks the frame as sent by the customer side."""
        return self.source.endswith(TX_TOPIC_HINTS)


@dataclass
class Session:
    """Frames of a recording (time-ordered) and what went wrong while reading it."""

    path: Path
    frames: list[TimedFrame] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    topics: dict[str, str] = field(default_factory=dict)  # topic -> type (bags)
    metadata: dict[str, str] = field(default_factory=dict)  # bag custom_data

    @property
    def ok(self) -> bool:
        """True if frames were read and nothing went wrong."""
        return bool(self.frames) and not self.problems

    def main_pistol(self) -> int:
        """Return the pistol index (id bits 28..24) of most 29-bit frames (1 if none)."""
        counts: dict[int, int] = {}
        for tf in self.frames:
            if tf.frame.is_extended_id and not tf.frame.is_error_frame:
                idx = tf.frame.arbitration_id >> 24
                counts[idx] = counts.get(idx, 0) + 1
        return max(counts, key=lambda k: counts[k]) if counts else 1

    def protocol_version(self) -> int:
        """Return the interface version of the recording (2 without any generic frame).

        3 if its generic-interface frames carry the v3 identifier field (bits 14..12).
        """
        for tf in self.frames:
            f = tf.frame
            if f.is_extended_id and not f.is_error_frame:
                base = f.arbitration_id & BASE_ID_MASK
                if module_type(base) == MODULE_TYPE_GENERIC:
                    return 3 if interface_version_field(base) == 3 else 2
        return 2

    def codec(self) -> Codec:
        """Return the packaged codec of :meth:`protocol_version` (to decode the frames)."""
        return load_codec(protocol_version=self.protocol_version())


def is_bag(path: Path) -> bool:
    """Return True if ``path`` looks like a rosbag2 (directory with metadata.yaml, .mcap, .db3)."""
    return (path.is_dir() and (path / "metadata.yaml").exists()) or path.suffix in (
        ".mcap",
        ".db3",
    )


def read_session(path: str | Path) -> Session:
    """Read every CAN frame of a bag or a CAN log (see module docstring)."""
    p = Path(path)
    session = Session(p)
    if not p.exists():
        session.problems.append(f"{p}: no such file or directory")
        return session
    try:
        if is_bag(p):
            _read_bag(p, session)
        elif p.suffix.lower() in LOG_SUFFIXES:
            _read_log(p, session)
        else:
            session.problems.append(f"{p}: not a rosbag2 or a CAN log ({', '.join(LOG_SUFFIXES)})")
    except Exception as exc:  # any reader failure: keep what was read, report one line
        session.problems.append(
            f"{p}: {one_line(exc)} (read {len(session.frames)} frames before that)"
        )
    session.frames.sort(key=lambda f: f.t)
    if not session.frames and not session.problems:
        what = (
            f" (topics: {', '.join(sorted(session.topics)) or 'none'})" if session.topics else ""
        )
        session.problems.append(f"{p}: no CAN frames{what}")
    return session


def _read_bag(path: Path, session: Session) -> None:
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.LATEST)
    with AnyReader([path], default_typestore=store) as reader:
        session.topics = {c.topic: c.msgtype for c in reader.connections}
        for key, value in _custom_data(reader).items():
            session.metadata[key] = value
        conns = [c for c in reader.connections if c.msgtype in FRAME_TYPES]
        if not conns:
            return
        for conn, timestamp, raw in _guarded(reader.messages(connections=conns), session):
            msg: Any = reader.deserialize(raw, conn.msgtype)
            stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            t = stamp if stamp > 0 else timestamp * 1e-9
            dlc = min(int(msg.dlc), 8)
            frame = CanFrame(
                int(msg.id),
                bytes(msg.data[:dlc]),
                t,
                bool(msg.is_extended),
                bool(msg.is_rtr),
                bool(msg.is_error),
            )
            session.frames.append(TimedFrame(t, frame, conn.topic))


def _guarded(iterator: Iterator[T], session: Session) -> Iterator[T]:
    """Yield from a reader; a truncated or corrupt file ends the iteration with a problem."""
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except Exception as exc:
            session.problems.append(
                f"{session.path}: bag ends early: {one_line(exc)} "
                f"(read {len(session.frames)} frames before that)"
            )
            return
        yield item


def _custom_data(reader: object) -> dict[str, str]:
    out: dict[str, str] = {}
    for r in getattr(reader, "readers", []):
        # rosbags keeps the metadata on the reader or (newer releases) on its storage
        meta = getattr(r, "metadata", None) or getattr(
            getattr(r, "storage", None), "metadata", None
        )
        data = getattr(meta, "custom", None)
        if isinstance(data, dict):
            out.update({str(k): str(v) for k, v in data.items()})
    return out


def _read_log(path: Path, session: Session) -> None:
    reader = can.LogReader(str(path))
    try:
        for m in _guarded(iter(reader), session):
            frame = CanFrame(
                m.arbitration_id,
                bytes(m.data),
                float(m.timestamp),
                bool(m.is_extended_id),
                bool(m.is_remote_frame),
                bool(m.is_error_frame),
            )
            session.frames.append(TimedFrame(float(m.timestamp), frame, "log"))
    finally:
        stop = getattr(reader, "stop", None)
        if callable(stop):
            stop()
