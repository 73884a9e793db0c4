"""Message gaps between two plain rclpy processes while ``ros2`` tool calls come and go.

The known DDS stall (README, "Safety behaviour"): in the multi-process layout a ``ros2`` call can
hold the messages between the node processes for ~250-330 ms. This reproduces it without any
code of this package: a probe publisher (100 Hz timer, ``std_msgs/Float64`` stamped with its
monotonic time) and a probe subscriber, in a DDS domain of their own, while ``--calls`` times
``ros2 param list --no-daemon /probe_pub`` (niced, as the tests run their tools) starts, asks
the publisher's node and exits, ``--pause`` s apart. Printed: every gap > 50 ms at the
subscriber with the delivery latency of the message that ended it, and the time the publisher
spent sending each service response. Needs the upstream ros2 CLI (scripts/ros2-cli.sh).

    . .ros2/env.sh && python bench/dds_stall.py [--calls 25] [--pause 1.0]

Measured 2026-12-01 (2 cores): gaps of 326-332 ms, about one per 15-25 calls in some runs and
none in 50 in others; the same with FASTDDS_BUILTIN_TRANSPORTS=UDPv4 (not the shared-memory
transport); none in 30 starts of a plain rclpy node that calls no service. The first message
after a gap is ~90 ms old: the subscriber's 10-deep history at 100 Hz, so it is the subscribing
side that was not served for the whole gap, while the publisher kept its 100 Hz (a watchdog on
its timer saw no late tick) and sent the list_parameters response in 0.1 ms. Not root-caused.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import benchlib

PUBLISHER = """
import time, rclpy, rclpy.service
from std_msgs.msg import Float64
send = rclpy.service.Service.send_response
def timed(self, response, header):
    t = time.monotonic()
    send(self, response, header)
    print(f"response {self.srv_name} sent in {1000 * (time.monotonic() - t):.1f} ms", flush=True)
rclpy.service.Service.send_response = timed
rclpy.init()
node = rclpy.create_node("probe_pub")
pub = node.create_publisher(Float64, "probe", 10)
node.create_timer(0.01, lambda: pub.publish(Float64(data=time.monotonic())))
try:
    rclpy.spin(node)
except BaseException:
    pass
"""

SUBSCRIBER = """
import time, rclpy
from std_msgs.msg import Float64
rclpy.init()
node = rclpy.create_node("probe_sub")
last = [None]
def received(msg):
    now = time.monotonic()
    if last[0] is not None and now - last[0] > 0.05:
        print(f"gap {1000 * (now - last[0]):.0f} ms, latency {1000 * (now - msg.data):.0f} ms",
              flush=True)
    last[0] = now
node.create_subscription(Float64, "probe", received, 10)
print("up", flush=True)
try:
    rclpy.spin(node)
except BaseException:
    pass
"""


def main() -> int:
    parser = benchlib.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=25)
    parser.add_argument("--pause", type=float, default=1.0)
    args = parser.parse_args()
    if shutil.which("ros2") is None:
        print("dds_stall: needs the ros2 CLI (scripts/ros2-cli.sh)", file=sys.stderr)
        return 2
    benchlib.apply_bench_dds_env()
    env = {**os.environ, "ROS_DOMAIN_ID": str(int(os.environ["ROS_DOMAIN_ID"]) + 20)}
    probes = [
        subprocess.Popen([sys.executable, "-u", "-c", code], env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for code in (PUBLISHER, SUBSCRIBER)
    ]  # fmt: skip
    try:
        time.sleep(4.0)  # discovery between the probes
        started = time.monotonic()
        for _ in range(args.calls):
            subprocess.run(
                ["nice", "-n", "10", "ros2", "param", "list", "--no-daemon", "/probe_pub"],
                env=env, capture_output=True, check=False, timeout=60,
            )  # fmt: skip
            time.sleep(args.pause)
        wall = time.monotonic() - started
    finally:
        for p in probes:
            p.terminate()
        outputs = [p.communicate(timeout=10)[0] for p in probes]
    gaps = [line for line in outputs[1].splitlines() if line.startswith("gap")]
    sends = [line for line in outputs[0].splitlines() if line.startswith("response")]
    print(f"== DDS message gaps during ros2 calls ({time.strftime('%Y-%m-%d %H:%M')}, "
          f"{benchlib.load_text()})")  # fmt: skip
    print(f"{args.calls} calls in {wall:.0f} s; {len(sends)} service responses sent; "
          f"{len(gaps)} gaps > 50 ms at the subscriber")  # fmt: skip
    for line in gaps:
        print(f"  {line}")
    slowest = max((float(s.split()[-2]) for s in sends), default=0.0)
    print(f"slowest service response send: {slowest:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
