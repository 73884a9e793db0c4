"""Record a pistol to a rosbag2, and decode a recorded session offline into typed topics.

* :class:`SessionRecorder` subscribes to the bridge's raw frames (``can_rx``, ``can_tx``; it turns
  ``publish_raw_frames`` on) and to every decoded and power-side topic of the pistol. It writes
  the serialized messages unchanged with rosbags (mcap by default), together with their
  message definitions and type hashes, so that ``ros2 bag info/play`` can read the bag. Metadata
  (custom_data): protocol version, database hash, pistol index, package version.
* :func:`decode_to_bag` passes a recorded session (``transport.sessionlog``) through the bridge's
  own decoder and writes the typed topics the bridge would have published, stamped
  with the frames' times, without any bus.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rclpy.serialization import deserialize_message, serialize_message

from evse_can_ros import __version__
from evse_can_ros import msg as ros
from evse_can_ros.core.bridge import BridgeConfig, BridgeCore, RxKind
from evse_can_ros.protocol import AdvanticsControllerStatus, load_codec
from evse_can_ros.ros import conversions as conv
from evse_can_ros.ros.interfaces import TOPIC_OF_MESSAGE, TOPICS
from evse_can_ros.transport.sessionlog import Session

log = logging.getLogger(__name__)

PROTOCOL = "Advantics Generic EVSE CAN interface v2 (database v2.7)"

RECORDED: dict[str, tuple[Any, QoSProfile]] = {t.name: (t.ros_type, t.qos) for t in TOPICS}
"""Topics a recording holds (relative to the pistol namespace), with the QoS used to read them."""


def type_name(msg_type: Any) -> str:
    """ROS type name of a message class, e.g. ``evse_can_ros/msg/CanFrame``."""
    module = msg_type.__module__.split(".")
    return f"{module[0]}/{module[1]}/{msg_type.__name__}"


def typestore() -> Any:
    """Return a rosbags typestore with the standard types and this package's messages."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.LATEST)
    msg_dir = _msg_dir()
    types: dict[str, Any] = {}
    for path in sorted(msg_dir.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"evse_can_ros/msg/{path.stem}"))
    store.register(types)
    return store


def _msg_dir() -> Path:
    try:
        from ament_index_python.packages import get_package_share_directory

        share = Path(get_package_share_directory("evse_can_ros", print_warning=False))
        if (share / "msg").is_dir():
            return share / "msg"
    except (ImportError, LookupError, ValueError):
        pass
    return Path(__file__).resolve().parents[2] / "msg"  # source checkout


class BagWriter:
    """Thread-safe wrapper around a rosbags writer with lazily added connections."""

    def __init__(self, path: str | Path, storage: str = "mcap", version: int = 8) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
        if storage not in plugins:
            raise ValueError(f"storage must be mcap or sqlite3, got {storage!r}")
        self.path = Path(path)
        self._writer = Writer(self.path, version=version, storage_plugin=plugins[storage])  # type: ignore[arg-type]
        self._writer.open()
        self._store = typestore()
        self._connections: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.closed = False

    def write(self, topic: str, msgtype: str, timestamp_ns: int, data: bytes) -> None:
        """Write one serialized message."""
        with self._lock:
            if self.closed:
                return
            conn = self._connections.get(topic)
            if conn is None:
                conn = self._writer.add_connection(topic, msgtype, typestore=self._store)
                self._connections[topic] = conn
            self._writer.write(conn, timestamp_ns, data)
            self.counts[topic] = self.counts.get(topic, 0) + 1

    def set_metadata(self, **values: str) -> None:
        """Add custom_data entries (strings) to the bag metadata."""
        for key, value in values.items():
            self._writer.set_custom_data(f"evse_can_ros.{key}", str(value))

    def close(self) -> None:
        """Finish the bag (idempotent)."""
        with self._lock:
            if not self.closed:
                self.closed = True
                self._writer.close()


class SessionRecorder(Node):
    """Records one pistol namespace into a bag (see module docstring)."""

    def __init__(
        self,
        output: str | Path,
        namespace: str = "",
        storage: str = "mcap",
        *,
        bridge_node: str = "can_bridge",
        pistol_index: int | None = None,
        version: int = 8,
        protocol_version: int = 2,
        **kwargs: Any,
    ) -> None:
        super().__init__("evse_can_ros_recorder", **kwargs)
        self.ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
        codec = load_codec(protocol_version=protocol_version)
        self.bag = BagWriter(output, storage, version)
        self.bag.set_metadata(
            protocol=PROTOCOL,
            database=codec.database_path.name,
            database_sha256=codec.database_sha256,
            pistol_index=str(pistol_index or ""),
            package_version=__version__,
            namespace=self.ns or "/",
        )
        for topic, (msg_type, qos) in RECORDED.items():
            full = f"{self.ns}/{topic}"
            self.create_subscription(
                msg_type, full, self._writer_for(full, type_name(msg_type)), qos, raw=True
            )
        self._enable_raw_frames(f"{self.ns}/{bridge_node}/set_parameters")

    def _writer_for(self, topic: str, msgtype: str) -> Any:
        learn_pistol = topic.endswith("/controller_state")

        def write(data: bytes) -> None:
            nonlocal learn_pistol
            self.bag.write(topic, msgtype, self.get_clock().now().nanoseconds, data)
            if learn_pistol:  # the bridge says which pistol it serves
                learn_pistol = False
                state = deserialize_message(data, ros.ControllerState)
                self.bag.set_metadata(pistol_index=str(state.pistol_index))

        return write

    def _enable_raw_frames(self, service: str) -> None:
        client = self.create_client(SetParameters, service)
        value = ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=True)
        request = SetParameters.Request(
            parameters=[ParameterMsg(name="publish_raw_frames", value=value)]
        )
        self._param_request = (client, request)
        self._raw_timer = self.create_timer(0.5, self._try_enable)

    def _try_enable(self) -> None:
        client, request = self._param_request
        if client.service_is_ready():
            client.call_async(request)
            self._raw_timer.cancel()
            self.get_logger().info(f"raw CAN frames enabled on {client.srv_name}")
        else:
            self.get_logger().warning(
                f"waiting for {client.srv_name} (no raw CAN frames yet)",
                throttle_duration_sec=10.0,
            )

    def close(self) -> None:
        """Finish the bag."""
        self.bag.close()

    def destroy_node(self) -> None:
        """Close the bag, then destroy the node."""
        self.close()
        super().destroy_node()


@dataclass
class DecodeStats:
    """Counters of an offline decode."""

    frames: int = 0
    messages: int = 0
    foreign: int = 0
    malformed: int = 0
    topics: dict[str, int] = field(default_factory=dict)


def decode_to_bag(
    session: Session,
    output: str | Path,
    pistol: int | None = None,
    namespace: str = "",
    storage: str = "mcap",
) -> DecodeStats:
    """Decode ``session`` through the bridge's decoder into a new bag of typed topics.

    Long: one pass over the frames writing raw, state and typed topics side by side.
    """
    pistol = pistol or session.main_pistol()
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    codec = session.codec()
    core = BridgeCore(codec, BridgeConfig(pistol_index=pistol))
    bag = BagWriter(output, storage)
    bag.set_metadata(
        protocol=PROTOCOL,
        database=codec.database_path.name,
        database_sha256=codec.database_sha256,
        pistol_index=str(pistol),
        source=str(session.path),
        package_version=__version__,
        decoded_offline="true",
    )
    stats = DecodeStats()
    last_state = None
    try:
        for tf in session.frames:
            stats.frames += 1
            t_ns = int(tf.t * 1e9)
            stamp = conv.stamp_from_seconds(tf.t)
            raw_topic = "can_tx" if tf.sent_by_us else "can_rx"
            bag.write(
                f"{ns}/{raw_topic}",
                "evse_can_ros/msg/CanFrame",
                t_ns,
                serialize_message(conv.frame_to_ros(tf.frame, "replay")),
            )
            result = core.on_frame(time.monotonic(), tf.frame)
            if result.kind is RxKind.FOREIGN:
                stats.foreign += 1
            elif result.kind in (RxKind.MALFORMED, RxKind.ERROR_FRAME):
                stats.malformed += 1
            if result.kind is not RxKind.MESSAGE or result.message is None:
                continue
            message = result.message
            if isinstance(message, AdvanticsControllerStatus) and message.state != last_state:
                last_state = message.state
                cs = ros.ControllerState(
                    pistol_index=pistol,
                    state=int(message.state),
                    state_name=message.state.label,
                    heartbeat_seen=True,
                    alive=True,
                    heartbeat_age=0.0,
                )
                cs.header.stamp = stamp
                _write(bag, stats, f"{ns}/controller_state", cs, t_ns)
            topic = TOPIC_OF_MESSAGE.get(type(message))
            if topic is not None:
                _write(bag, stats, f"{ns}/{topic.name}", conv.to_ros(message, stamp, codec), t_ns)
    finally:
        bag.close()
    return stats


def _write(bag: BagWriter, stats: DecodeStats, topic: str, message: Any, t_ns: int) -> None:
    bag.write(topic, type_name(type(message)), t_ns, serialize_message(message))
    stats.messages += 1
    stats.topics[topic] = stats.topics.get(topic, 0) + 1
