"""CPU of an executor loop while a Charge goal is running (a coroutine awaiting its result).

The charge server's execute callback awaits the goal's result for the whole charge. This
measures one process with one node, one 10 Hz timer and such a pending coroutine, spun for
``--seconds`` by a loop of ``spin_once(0.1)`` (as node_main and ``run`` did) and by a loop of
``evse_can_ros.ros.runtime.spin_slice(0.1)`` (what they do now), for both executors. Each case
is a fresh process; the figure is its CPU in % of one core.

    . .ros2/env.sh && python bench/spin.py [--seconds 3]
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import benchlib

CASES = [(k, m) for k in ("events", "single") for m in ("spin_once", "spin_slice")]

CHILD = """
import sys, time, rclpy
from evse_can_ros.ros.runtime import create_executor, spin_slice
kind, mode, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
rclpy.init()
node = rclpy.create_node("spin_bench")
ticks = []
node.create_timer(0.1, lambda: ticks.append(time.monotonic()))
class Pending:
    def __await__(self):
        while True:
            yield
async def goal():
    await Pending()
executor = create_executor(kind=kind)
executor.add_node(node)
executor.create_task(goal)
cpu0, t0 = time.process_time(), time.monotonic()
while time.monotonic() - t0 < seconds:
    if mode == "spin_once":
        executor.spin_once(timeout_sec=0.1)
    else:
        spin_slice(executor, 0.1)
wall = time.monotonic() - t0
print(100 * (time.process_time() - cpu0) / wall, len(ticks) / wall)
"""


def main() -> int:
    parser = benchlib.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    rows = []
    for kind, mode in CASES:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, kind, mode, str(args.seconds)],
            capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        try:
            cpu, rate = (float(v) for v in out.stdout.split()[-2:])
        except ValueError:
            print(f"{kind} {mode} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
            return 1
        rows.append({"executor": kind, "loop": mode, "cpu_pct": cpu, "timer_hz": rate})
    print(f"== executor loop with a pending goal ({time.strftime('%Y-%m-%d %H:%M')}, "
          f"{benchlib.load_text()})")  # fmt: skip
    print(f"{'executor':<8} {'loop':<11} {'CPU % core':>10} {'10 Hz timer':>11}")
    for r in rows:
        print(f"{r['executor']:<8} {r['loop']:<11} {r['cpu_pct']:>10.1f} {r['timer_hz']:>9.1f}Hz")
    if args.json:
        data = {"machine": benchlib.machine_info(), "rows": rows}
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
