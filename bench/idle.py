"""Benchmark 7: what an idle charger costs (controller heartbeat only, no session).

The controller is played by this script: every pistol gets ``Advantics_Controller_Status``
(Not_Available) at 10 Hz over the ``loopback`` CAN interface (TCP on 127.0.0.1; the hub, the
heartbeat sender and a reader that drains what the charger sends all live in this process, so
none of their CPU is counted). The charger's processes are measured from ``/proc/<pid>/stat``
(user + system, every thread, DDS included) over a window after a warm-up:

* ``one-process-N``: ``evse-can-ros run`` with N pistols (bridge, converter driver and charge
  server per pistol, one process, as ``run`` spins them); figure: CPU per pistol;
* ``processes``: one pistol as the launch file runs it, one process per node (``can_bridge``,
  ``converter_driver``, ``charge_server``); figure: CPU of each process;
* ``sim`` (informative): ``evse-can-ros run --sim`` with ``config/sim.yaml`` and no goal, the
  simulator's own thread included (the issue's 22.6 % figure).

    python bench/idle.py [--window 8] [--json FILE]
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import benchlib
import targets

HEARTBEAT_PERIOD = 0.1
NODES = ("can_bridge", "converter_driver", "charge_server")


@dataclass(frozen=True)
class Scenario:
    """One idle case."""

    name: str
    pistols: int
    layout: str  # "one-process", "processes" or "sim"
    description: str


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("one-process-1", 1, "one-process", "evse-can-ros run, 1 pistol"),
        Scenario("one-process-8", 8, "one-process", "evse-can-ros run, 8 pistols on one bus"),
        Scenario("processes", 1, "processes", "one process per node (launch layout), 1 pistol"),
        Scenario("sim", 1, "sim", "evse-can-ros run --sim, no goal (informative)"),
    )
}
DEFAULT_SCENARIOS = ["one-process-1", "one-process-8", "processes"]


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far, all its threads."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    rest = stat[stat.rindex(")") + 2 :].split()
    return (int(rest[11]) + int(rest[12])) / benchlib.CLK_TCK


class Controller:
    """Heartbeats of every pistol at 10 Hz on a loopback bus; drains what the charger sends."""

    def __init__(self, port: int, pistols: list[int]) -> None:
        from evse_can_ros.protocol import ControllerState, load_codec
        from evse_can_ros.transport.loopback import LoopbackBus, LoopbackHub

        codec = load_codec()
        self.hub = LoopbackHub(port)
        self.bus = LoopbackBus(channel=port)
        self.frames = [
            codec.encode_signals(
                "Advantics_Controller_Status", {"State": int(ControllerState.NOT_AVAILABLE)}, p
            )
            for p in pistols
        ]
        self.received = 0
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._send, daemon=True),
            threading.Thread(target=self._drain, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _send(self) -> None:
        import can

        messages = [
            can.Message(arbitration_id=f.arbitration_id, data=f.data, is_extended_id=True)
            for f in self.frames
        ]
        due = time.monotonic()
        while not self._stop.is_set():
            for m in messages:
                self.bus.send(m)
            due += HEARTBEAT_PERIOD
            self._stop.wait(max(0.0, due - time.monotonic()))

    def _drain(self) -> None:
        while not self._stop.is_set():
            if self.bus.recv(timeout=0.1) is not None:
                self.received += 1

    def close(self) -> None:
        """Stop sending and release the bus and the hub."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2.0)
        self.bus.shutdown()
        self.hub.close()


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def commands(sc: Scenario, port: int, ns: str) -> dict[str, list[str]]:
    """The processes of a scenario: name -> command line."""
    py = sys.executable
    channel = f"localhost:{port}"
    if sc.layout in ("one-process", "sim"):
        code = "import sys; from evse_can_ros.tools.cli import main; sys.exit(main(sys.argv[1:]))"
        cmd = [py, "-c", code, "run", "--namespace", ns,
               "--pistols", f"1-{sc.pistols}", "--can-interface", "loopback",
               "--can-channel", channel, "--can-bitrate", "0", "--log-level", "error"]  # fmt: skip
        if sc.layout == "sim":
            from evse_can_ros.tools.resources import config_file

            cmd += ["--sim", "--params-file", str(config_file("sim.yaml"))]
        return {"charger": cmd}
    out = {}
    for node in NODES:
        module = (
            f"evse_can_ros.ros.{node}_node"
            if node != "can_bridge"
            else ("evse_can_ros.ros.can_bridge_node")
        )
        args = ["--ros-args", "--log-level", "error", "-r", f"__ns:=/{ns}/pistol1"]
        if node in ("can_bridge", "charge_server"):
            args += ["-p", "pistol_index:=1"]
        if node == "can_bridge":
            args += ["-p", "can_interface:=loopback", "-p", f"can_channel:={channel}",
                     "-p", "can_bitrate:=0"]  # fmt: skip
        code = f"import sys; from {module} import main; sys.exit(main(sys.argv))"
        out[node] = [py, "-c", code, *args]
    return out


def run_scenario(sc: Scenario, args: Any) -> dict[str, Any]:
    """Start the charger's processes, measure them over the window, stop them (SIGINT)."""
    port = free_port()
    ns = f"bench_{uuid.uuid4().hex[:8]}"
    controller = Controller(port, list(range(1, sc.pistols + 1)))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, cmd in commands(sc, port, ns).items():
            procs[name] = subprocess.Popen(
                cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ)
            )
        time.sleep(args.warmup + (1.0 if sc.pistols > 1 else 0.0))
        dead = [n for n, p in procs.items() if p.poll() is not None]
        if dead:
            errors = {n: procs[n].stderr.read().decode()[-800:] for n in dead}  # type: ignore[union-attr]
            raise RuntimeError(f"{sc.name}: process(es) ended early: {errors}")
        rx0 = controller.received
        cpu0 = {n: proc_cpu(p.pid) for n, p in procs.items()}
        t0 = time.monotonic()
        time.sleep(args.window)
        cpu1 = {n: proc_cpu(p.pid) for n, p in procs.items()}
        window = time.monotonic() - t0
        rx = controller.received - rx0
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs.values():
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        controller.close()
    cpu = {n: 100.0 * (cpu1[n] - cpu0[n]) / window for n in procs}
    return {
        "scenario": sc.name,
        "pistols": sc.pistols,
        "layout": sc.layout,
        "cpu_pct": cpu,
        "total_pct": sum(cpu.values()),
        "per_pistol_pct": sum(cpu.values()) / sc.pistols,
        "frames_from_charger_per_s": rx / window,
        "window_s": window,
    }


def to_report(results: list[dict[str, Any]], args: Any) -> benchlib.Report:
    """The raw figures (targets: ``targets.py``, judged by ``run_all.py``)."""
    rep = benchlib.Report(f"idle charger: heartbeat only, no session ({args.window:g} s window)")
    for r in results:
        n = r["scenario"]
        for name, pct in r["cpu_pct"].items():
            rep.add(f"idle {n}: {name} process", pct, "% core",
                    note=f"{r['pistols']} pistol(s); {r['frames_from_charger_per_s']:.0f} "
                    "frames/s from the charger")  # fmt: skip
        if r["pistols"] > 1:
            rep.add(f"idle {n}: per pistol", r["per_pistol_pct"], "% core")
    rep.details["scenarios"] = results
    return rep


def main() -> int:
    p = benchlib.base_parser(__doc__.splitlines()[0])
    p.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS),
                   help=f"comma-separated, from {', '.join(SCENARIOS)}")  # fmt: skip
    p.add_argument("--window", type=float, default=8.0, help="measurement window per scenario")
    p.add_argument("--warmup", type=float, default=4.0, help="after start, before the window")
    args = p.parse_args()
    names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in names if s not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s) {unknown}")
    results = []
    for name in names:
        print(f"-- idle {name}: {SCENARIOS[name].description} ...", file=sys.stderr, flush=True)
        results.append(run_scenario(SCENARIOS[name], args))
    report = to_report(results, args)
    status = report.finish(args)
    figures = targets.extract(None, report.as_json())
    if figures:
        print("\nissue-16 targets, this run only (run_all.py: medians of 3 runs):")
        print(targets.table([figures]))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
