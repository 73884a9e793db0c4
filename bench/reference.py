"""The reference pipeline: the minimal way to put this CAN interface on ROS 2 from Python.

python-can ``Notifier`` thread -> cantools decode -> a new ``sensor_msgs/BatteryState`` published
from that thread (no executor in the publishing process). It has none of the product's work
(typed messages, supervision, transmit, diagnostics, safety paths); it is the yardstick the
product's receive path is measured against, in the same benchmark run, on the same machine, with
the same injector and the same subscriber process (``bench/bridge.py --system reference``).

One ``BatteryState`` per received frame on ``/<ns>/pistol<N>/battery``: ``Charging_Loop`` carries
``Target_Voltage`` / ``Target_Current`` in ``voltage`` / ``current`` (``present`` = True, the
benchmark's sequence number is encoded there); other frames are published with
``present`` = False.

Transmit yardstick: a thread sends one frame per pistol every 100 ms at absolute deadlines
(``time.sleep`` to the next one), the minimal periodic sender; its send times give the
machine's own period jitter, to read the product's ``Power_Modules_Status`` jitter against.
"""

from __future__ import annotations

import math
import threading
import time
from array import array
from typing import Any

PISTOL_SHIFT = 24
BASE_ID_MASK = 0xFFFFFF


class ReferencePipeline:
    """Notifier -> cantools -> BatteryState, one publisher per pistol (see module docstring)."""

    def __init__(
        self, context: Any, channels: dict[int, str], namespace: str, database_path: str
    ) -> None:
        import can
        import cantools
        from rclpy.node import Node
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import BatteryState

        self._battery_state = BatteryState
        self.db = cantools.database.load_file(database_path)
        self.node = Node("reference_pipeline", context=context)
        qos = QoSProfile(
            depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE
        )
        self.publishers = {
            p: self.node.create_publisher(BatteryState, f"/{namespace}/pistol{p}/battery", qos)
            for p in channels
        }
        self.buses = [can.Bus(interface="virtual", channel=ch) for ch in set(channels.values())]
        self.frames = 0
        self.notifier = can.Notifier(self.buses, [self.on_message], timeout=0.05)
        self.tx_times = array("d")  # send times of pistol 1's periodic frame
        self._stop = threading.Event()
        status = {p: can.Message(arbitration_id=(p << PISTOL_SHIFT) | 0x60010, data=bytes(8))
                  for p in channels}  # fmt: skip
        bus_of = {ch: bus for ch, bus in zip(set(channels.values()), self.buses, strict=True)}
        sends = [(bus_of[channels[p]], msg) for p, msg in sorted(status.items())]
        self._tx = threading.Thread(target=self._transmit, args=(sends,), name="ref-tx")
        self._tx.daemon = True
        self._tx.start()

    def _transmit(self, sends: list[tuple[Any, Any]]) -> None:
        """Send every pistol's frame every 100 ms at absolute deadlines."""
        due = time.monotonic()
        while not self._stop.is_set():
            due += 0.1
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.tx_times.append(time.monotonic())
            for bus, msg in sends:
                bus.send(msg)

    def on_message(self, msg: Any) -> None:
        """Decode one frame and publish it (on the Notifier thread)."""
        self.frames += 1
        publisher = self.publishers.get(msg.arbitration_id >> PISTOL_SHIFT)
        if publisher is None:
            return
        message = self.db.get_message_by_frame_id(msg.arbitration_id & BASE_ID_MASK)
        values = message.decode(msg.data)
        out = self._battery_state()
        out.header.stamp = self.node.get_clock().now().to_msg()
        if "Target_Voltage" in values:
            out.present = True
            out.voltage = float(values["Target_Voltage"])
            out.current = float(values["Target_Current"])
            out.percentage = float(values["State_of_Charge"]) / 100.0
        else:
            out.present = False
            out.voltage = out.current = out.percentage = math.nan
        publisher.publish(out)

    def subscription_count(self) -> int:
        """Smallest number of subscribers over the pistols' topics."""
        return min(p.get_subscription_count() for p in self.publishers.values())

    def close(self) -> None:
        """Stop the Notifier and the sender, release the buses and the node."""
        self._stop.set()
        self._tx.join(timeout=1.0)
        self.notifier.stop()
        for bus in self.buses:
            bus.shutdown()
        self.node.destroy_node()
