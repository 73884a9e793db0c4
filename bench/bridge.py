"""Benchmarks 2 and 3: the can_bridge receive path and its transmit timing.

Per scenario, two processes (the orchestrator, this script without ``--role``, starts them):

* **bridge process**: one :class:`CanBridgeNode` per pistol (8 bridges for the 8-pistol cases, in
  one process with one SingleThreadedExecutor, as in the one-process charger) on python-can's
  ``virtual`` bus, plus an *injector thread* that sends controller frames at a fixed rate.
  ``virtual`` is in-process only, so the injector has to live here; its own CPU
  (``time.thread_time()`` in the injector thread) is subtracted from the process CPU.
  Every ``Charging_Loop`` frame carries a sequence number in its signal values
  (``Target_Voltage`` raw = seq & 0xFFFF, ``Target_Current`` raw = seq >> 16) and its send time
  (CLOCK_MONOTONIC) is recorded. Each pistol also gets ``Advantics_Controller_Status`` at 10 Hz
  (counted in the frame rate). Two probes wrap the bridge's link: the receive callback (time of
  entry/exit -> bus-queue latency and per-frame processing time) and ``link.send`` (time of every
  ``Power_Modules_Status`` -> transmit period).
* **subscriber process**: subscribes ``charging_loop`` of every bridge (EventsExecutor in the main
  thread, the fastest rclpy executor, so that the receiver is not the bottleneck) and records the
  callback time (CLOCK_MONOTONIC, comparable across processes). It also plays the converter
  driver: publishes ``power_modules_status`` at 10 Hz per pistol, so the bridges transmit.

Figures: sustained rate at the subscriber, dropped frames (sent - received), latency from frame
send to topic callback (p50/p99/max), bridge-process CPU in % of one core (minus the injector),
Power_Modules_Status period deviation from 100 ms (p50/p99/max), per-thread CPU.

    python bench/bridge.py                    # all scenarios, ~8 s window each (< 2 minutes)
    python bench/bridge.py --scenarios limit --seconds 20 --profile /tmp/rx.prof
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import benchlib
import targets

HEARTBEAT_PERIOD = 0.1
STATUS_PERIOD = 0.1
BUS_LIMIT = 3800  # frames/s: 500 kbit/s, DLC 8, typical stuffing (3,817 without)


@dataclass(frozen=True)
class Scenario:
    """One load case."""

    name: str
    rate: int  # total injected controller frames/s (heartbeats included)
    pistols: int
    split_channels: bool = False  # a link and a virtual channel per pistol (the old layout)
    description: str = ""
    system: str = "product"  # or "reference": bench/reference.py instead of the bridges


SCENARIOS = {
    s.name: s
    for s in [
        Scenario("idle", 10, 1, description="heartbeat only (10 frames/s), 1 pistol"),
        Scenario("ref-protocol", 100, 1, False, "reference pipeline, 100 frames/s", "reference"),
        Scenario("ref-limit", BUS_LIMIT, 1, False, "reference pipeline, bus limit", "reference"),
        Scenario("protocol", 100, 1, description="protocol load, 1 pistol"),
        Scenario("protocol-x8", 800, 8, description="protocol load, 8 pistols, one shared link"),
        Scenario("1k", 1000, 1, description="1,000 frames/s, 1 pistol"),
        Scenario("limit", BUS_LIMIT, 1, description="bus limit, 1 pistol"),
        Scenario(
            "limit-x8", BUS_LIMIT, 8, description="bus limit over 8 pistols, one shared link"
        ),
        Scenario(
            "limit-x8-split",
            BUS_LIMIT,
            8,
            True,
            "bus limit over 8 pistols, a link (2 threads) and a channel per pistol",
        ),
    ]
}
DEFAULT_SCENARIOS = ["ref-protocol", "ref-limit", "idle", "protocol", "protocol-x8", "limit",
                     "limit-x8"]  # fmt: skip


# --- bridge process ------------------------------------------------------------------------------


def seq_signals(seq: int) -> dict[str, Any]:
    """Charging_Loop signal values carrying ``seq``."""
    return {
        "Target_Voltage": (seq & 0xFFFF) / 10.0,
        "Target_Current": (seq >> 16) / 10.0,
        "State_of_Charge": 50,
    }


def seq_of_values(target_voltage: float, target_current: float) -> int:
    """Inverse of :func:`seq_signals` on decoded physical values."""
    return round(target_voltage * 10.0) + (round(target_current * 10.0) << 16)


def seq_of_data(data: bytes) -> int:
    """Inverse of :func:`seq_signals` on the raw frame bytes (little endian)."""
    return int.from_bytes(data[0:2], "little") + (
        int.from_bytes(data[2:4], "little", signed=True) << 16
    )


class BridgeProcess:
    """One rclpy context, the bridges' shared links and the executor the product uses.

    ``spin()`` runs in the main thread, as ``evse-can-ros run`` and the node executables spin
    (the EventsExecutor only works there); the benchmark itself runs on another thread.
    """

    def __init__(self, executor: str) -> None:
        import rclpy
        from rclpy.context import Context

        from evse_can_ros.ros.runtime import create_executor
        from evse_can_ros.transport import LinkPool

        benchlib.apply_bench_dds_env()
        self.context = Context()
        rclpy.init(context=self.context)
        self.executor = create_executor(self.context, executor)
        self.links = LinkPool()
        self.nodes: list[Any] = []
        self.closers: list[Any] = []  # called first by close()
        self.done = threading.Event()

    def add(self, node_type: Any, *args: Any, **kwargs: Any) -> Any:
        """Create a node in this context and add it to the executor."""
        node = node_type(*args, context=self.context, **kwargs)
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def spin(self, executor: bool) -> None:
        """Spin (or only wait, for the reference pipeline) until ``done``."""
        while not self.done.is_set():
            if executor:
                self.executor.spin_once(timeout_sec=0.1)
            else:
                self.done.wait(0.1)

    def close(self) -> None:
        """Destroy the nodes, release the buses, shut the context down."""
        import rclpy

        for closer in self.closers:
            closer()
        for node in reversed(self.nodes):
            self.executor.remove_node(node)
            node.destroy_node()
        self.links.close()
        self.executor.shutdown(timeout_sec=1.0)
        rclpy.try_shutdown(context=self.context)


class Probe:
    """Receive and transmit probes around one pistol's link, in GC-untracked arrays.

    (Tuples appended during the window would be tracked objects that survive: the benchmark's
    own garbage would then lengthen the full collections it measures.)
    """

    def __init__(self, link: Any, loop_base: int, status_id: int, rx: bool,
                 profiler: dict[str, Any]) -> None:  # fmt: skip
        self.rx_in, self.rx_out, self.rx_seq = array("d"), array("d"), array("q")
        self.tx = array("d")
        orig_rx, orig_send = link.on_frame, link.send
        mono = time.monotonic
        rx_in, rx_out, rx_seq, tx = (
            self.rx_in.append,
            self.rx_out.append,
            self.rx_seq.append,
            (self.tx.append),
        )

        def rx_probe(frame: Any, now: float) -> None:
            if profiler["want"] and profiler["prof"] is None:
                import cProfile

                profiler["prof"] = cProfile.Profile()
                profiler["prof"].enable()
            t_in = mono()
            orig_rx(frame, now)
            if frame.arbitration_id & 0xFFFFFF == loop_base:
                rx_in(t_in)
                rx_out(mono())
                rx_seq(seq_of_data(frame.data))
            if profiler["stop"] and profiler["prof"] is not None:
                profiler["prof"].disable()
                profiler["stop"] = False

        def tx_probe(frame: Any) -> bool:
            t = mono()
            ok = bool(orig_send(frame))
            if frame.arbitration_id == status_id:
                tx(t)
            return ok

        if rx:
            link.on_frame = rx_probe
        link.send = tx_probe


def run_bridge(args: Any) -> int:
    """Bridge process: bridges + injector + probes; writes the raw figures to ``args.out``."""
    from evse_can_ros.protocol import load_codec

    sc = SCENARIOS[args.scenario]
    codec = load_codec()
    pistols = list(range(1, sc.pistols + 1))
    channel_of = {
        p: f"bench-{args.tag}-{p}" if sc.split_channels else f"bench-{args.tag}" for p in pistols
    }
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    proc = BridgeProcess(args.bridge_executor)
    buses: dict[str, Any] = {}
    result: dict[str, int] = {}

    def bench() -> None:
        try:
            result["code"] = _run_bridge(args, proc, buses, sc, codec, pistols, channel_of)
        except BaseException:
            result["code"] = 1
            raise
        finally:
            proc.done.set()

    try:
        if sc.system == "reference":
            from reference import ReferencePipeline

            ref = ReferencePipeline(proc.context, channel_of, args.ns, str(codec.database_path))
            proc.closers.append(ref.close)
            proc.reference = ref  # type: ignore[attr-defined]
        else:
            from rclpy.parameter import Parameter

            from evse_can_ros.ros.can_bridge_node import CanBridgeNode

            for p in pistols:
                params = {"can_interface": "virtual", "can_channel": channel_of[p],
                          "can_bitrate": 0, "pistol_index": p}  # fmt: skip
                proc.add(
                    CanBridgeNode,
                    namespace=f"/{args.ns}/pistol{p}",
                    parameter_overrides=[Parameter(k, value=v) for k, v in params.items()],
                    links=None if sc.split_channels else proc.links,
                )
        worker = threading.Thread(target=bench, name="bench", daemon=True)
        worker.start()
        proc.spin(executor=sc.system != "reference")
        worker.join()
        return result.get("code", 1)
    finally:
        proc.close()
        for bus in buses.values():
            bus.shutdown()


def _run_bridge(  # noqa: PLR0917  (bench plumbing)
    args: Any,
    proc: BridgeProcess,
    buses: dict[str, Any],
    sc: Scenario,
    codec: Any,
    pistols: list[int],
    channel_of: dict[int, str],
) -> int:
    import can

    from evse_can_ros.protocol import make_can_id
    from evse_can_ros.ros.runtime import settle_gc

    nodes = {p: n for p, n in zip(pistols, proc.nodes, strict=False)}
    reference = getattr(proc, "reference", None)
    profiler: dict[str, Any] = {"want": False, "prof": None, "stop": False}
    loop_base = codec.spec("Charging_Loop").base_id
    status_base = codec.spec("Power_Modules_Status").base_id
    probes = {
        p: Probe(n.link, loop_base, make_can_id(status_base, p), args.probe, profiler)
        for p, n in nodes.items()
    }
    if reference is not None:

        def ready() -> bool:
            return bool(reference.subscription_count() > 0)

    else:

        def ready() -> bool:
            matched = all(n.pub["charging_loop"].get_subscription_count() > 0
                          for n in nodes.values())  # fmt: skip
            return matched and all(n.core.power_status is not None for n in nodes.values())

    for ch in set(channel_of.values()):
        buses[ch] = can.Bus(interface="virtual", channel=ch)

    # wait for the subscriber (matched) and for its power status (the bridges then transmit)
    deadline = time.monotonic() + 30.0
    while not ready():
        if time.monotonic() > deadline:
            print("bridge: subscriber not matched / no power status", file=sys.stderr)
            return 3
        time.sleep(0.05)

    # pre-build the frames: slot k at t0 + k / rate
    warmup, window = args.warmup, args.seconds
    total = int(sc.rate * (warmup + window))
    first_window_slot = int(sc.rate * warmup)
    hb_frames = {
        p: can.Message(
            arbitration_id=make_can_id(codec.spec("Advantics_Controller_Status").base_id, p),
            data=codec.encode_signals("Advantics_Controller_Status", {"State": 7}, p).data,
            is_extended_id=True,
        )
        for p in pistols
    }
    # recipients: the queues of the other buses on the channel (the bridges' buses)
    recipients = {ch: [q for q in bus.channel if q is not bus.queue] for ch, bus in buses.items()}
    for msg in hb_frames.values():
        msg.is_rx = True
    next_hb = {p: 0.0 for p in pistols}
    next_seq = {p: 0 for p in pistols}
    plan: list[tuple[Any, Any]] = []
    meta: list[tuple[int, int]] = []  # (pistol, seq or -1)
    for k in range(total):
        t = k / sc.rate
        p = pistols[k % len(pistols)]
        bus = buses[channel_of[p]]
        if t >= next_hb[p]:
            next_hb[p] += HEARTBEAT_PERIOD
            plan.append((bus, hb_frames[p]))
            meta.append((p, -1))
            continue
        seq = next_seq[p]
        next_seq[p] += 1
        frame = codec.encode_signals("Charging_Loop", seq_signals(seq), p)
        plan.append(
            (bus, can.Message(arbitration_id=frame.arbitration_id, data=frame.data, is_rx=True))
        )
        meta.append((p, seq))
    t_send = array("d", bytes(8 * total))
    inj: dict[str, float] = {}
    marks = {k: threading.Event() for k in ("window_start", "window_end", "snapshot_done")}
    settle_gc()  # as the product does after start-up (the pre-built frames are frozen too)
    if args.gc_young:
        gc.set_threshold(args.gc_young, *gc.get_threshold()[1:])

    def inject() -> None:
        period = 1.0 / sc.rate
        t0 = time.monotonic() + 0.05
        max_lag = 0.0
        sleep, mono, wall = time.sleep, time.monotonic, time.time
        direct = args.injector == "queue"
        queues = {id(bus): recipients[bus.channel_id] for bus in buses.values()}
        for k, (bus, msg) in enumerate(plan):
            if k == first_window_slot:
                inj["cpu0"], inj["wall0"] = time.thread_time(), mono()
                marks["window_start"].set()
            due = t0 + k * period
            now = mono()
            if now < due:
                sleep(due - now)
                now = mono()
            elif now - due > max_lag:
                max_lag = now - due
            t_send[k] = now
            if direct:  # what VirtualBus.send does, minus a deepcopy per recipient
                msg.timestamp = wall()
                for q in queues[id(bus)]:
                    q.put(msg)
            else:
                bus.send(msg)
        inj["cpu1"], inj["wall1"] = time.thread_time(), time.monotonic()
        inj["max_lag"] = max_lag
        marks["window_end"].set()
        marks["snapshot_done"].wait(10.0)  # stay alive for the per-thread CPU snapshot

    gc_start, gc_t, gc_d, gc_g = array("d", [0.0]), array("d"), array("d"), array("b")

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_start[0] = time.monotonic()
        else:
            gc_t.append(gc_start[0])
            gc_d.append(time.monotonic() - gc_start[0])
            gc_g.append(info["generation"])

    gc.callbacks.append(on_gc)
    injector = threading.Thread(target=inject, name="injector", daemon=True)
    injector.start()
    marks["window_start"].wait()
    cpu0, threads0 = benchlib.process_cpu(), benchlib.thread_cpu_by_tid()
    names0 = benchlib.thread_names()
    if args.profile:
        profiler["want"] = True
    marks["window_end"].wait()
    cpu1, threads1 = benchlib.process_cpu(), benchlib.thread_cpu_by_tid()
    per_thread = benchlib.cpu_by_thread_name(threads0, threads1, names0)
    marks["snapshot_done"].set()
    if args.profile:
        profiler["stop"] = True
    injector.join()
    gc.callbacks.remove(on_gc)
    time.sleep(args.drain)  # let the last messages reach the subscriber
    counters: dict[Any, Any] = {
        p: {
            "rx_messages": n.core.counters.rx_messages,
            "rx_foreign": n.core.counters.rx_foreign,
            "link_rx_frames": n.link.stats.rx_frames,
            "tx_frames": n.link.stats.tx_frames,
        }
        for p, n in nodes.items()
    }
    if reference is not None:
        counters["reference"] = {"link_rx_frames": reference.frames}
    if args.profile and profiler["prof"] is not None:
        time.sleep(0.2)
        profiler["prof"].dump_stats(args.profile)

    sent = [
        (p, seq, t_send[k], k >= first_window_slot) for k, (p, seq) in enumerate(meta) if seq >= 0
    ]
    w0, w1 = inj["wall0"], inj["wall1"]
    out = {
        "scenario": sc.name,
        "rate": sc.rate,
        "pistols": pistols,
        "window_s": w1 - w0,
        "frames_in_window": total - first_window_slot,
        "process_cpu_s": cpu1 - cpu0,
        "injector_cpu_s": inj["cpu1"] - inj["cpu0"],
        "injector_max_lag_ms": inj["max_lag"] * 1e3,
        "per_thread_cpu_s": per_thread,
        "counters": counters,
        "sent": sent,
        "rx_probe": {
            p: list(zip(pr.rx_in, pr.rx_out, pr.rx_seq, strict=True)) for p, pr in probes.items()
        },
        "tx": {p: list(pr.tx) for p, pr in probes.items()}
        if reference is None
        else {1: list(reference.tx_times)},
        "window": [w0, w1],
        "gc": [(t, d, g) for t, d, g in zip(gc_t, gc_d, gc_g, strict=True) if w0 <= t <= w1],
        "gc_threshold": gc.get_threshold(),
    }
    Path(args.out).write_text(json.dumps(out))
    return 0


# --- subscriber process --------------------------------------------------------------------------


def run_subscriber(args: Any) -> int:
    """Subscriber process: charging_loop callbacks timed; power status published at 10 Hz."""
    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    from evse_can_ros import msg as ros

    benchlib.apply_bench_dds_env()
    rclpy.init()
    node = rclpy.create_node("bench_subscriber")
    qos = QoSProfile(
        depth=1000, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE
    )
    received: dict[int, list[tuple[int, float]]] = {}
    pubs = []
    mono = time.monotonic
    for p in range(1, args.pistols + 1):
        log: list[tuple[int, float]] = []
        received[p] = log
        if args.system == "reference":
            from sensor_msgs.msg import BatteryState

            def battery(msg: Any, log: Any = log.append) -> None:
                if msg.present:
                    log((seq_of_values(msg.voltage, msg.current), mono()))

            node.create_subscription(BatteryState, f"/{args.ns}/pistol{p}/battery", battery, qos)
            continue

        def cb(msg: Any, log: Any = log.append) -> None:
            log((seq_of_values(msg.target_voltage, msg.target_current), mono()))

        node.create_subscription(ros.ChargingLoop, f"/{args.ns}/pistol{p}/charging_loop", cb, qos)
        pubs.append(
            node.create_publisher(
                ros.PowerModulesStatus, f"/{args.ns}/pistol{p}/power_modules_status", 20
            )
        )
    status = ros.PowerModulesStatus(
        present_voltage=400.0,
        present_current=100.0,
        power_modules_temperature=35.0,
        enclosure_temperature=30.0,
        system_enable=True,
        insulation_resistance=500e3,
    )

    def publish_status() -> None:
        status.header.stamp = node.get_clock().now().to_msg()
        for pub in pubs:
            pub.publish(status)

    node.create_timer(STATUS_PERIOD, publish_status)
    stop = threading.Event()

    def wait_stdin() -> None:
        sys.stdin.readline()
        stop.set()

    threading.Thread(target=wait_stdin, daemon=True).start()
    if args.executor == "events":
        from rclpy.experimental import EventsExecutor

        executor: Any = EventsExecutor()
    else:
        from rclpy.executors import SingleThreadedExecutor

        executor = SingleThreadedExecutor()
    executor.add_node(node)
    print("ready", flush=True)
    cpu0 = benchlib.process_cpu()
    while not stop.is_set():
        executor.spin_once(timeout_sec=0.1)
    out = {"received": received, "cpu_s": benchlib.process_cpu() - cpu0}
    Path(args.out).write_text(json.dumps(out))
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


# --- orchestrator --------------------------------------------------------------------------------


def run_scenario(sc: Scenario, args: Any, tmp: Path) -> dict[str, Any]:
    """Run one scenario in two fresh processes and return its figures."""
    ns = f"bench_{uuid.uuid4().hex[:8]}"
    sub_out, br_out = tmp / f"{sc.name}-sub.json", tmp / f"{sc.name}-bridge.json"
    me = [sys.executable, str(Path(__file__).resolve())]
    env = dict(os.environ)
    sub = subprocess.Popen(
        [*me, "--role", "subscriber", "--pistols", str(sc.pistols), "--ns", ns,
         "--out", str(sub_out), "--executor", args.executor, "--system", sc.system],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip
    try:
        assert sub.stdout is not None and sub.stdin is not None
        if sub.stdout.readline().strip() != "ready":
            raise RuntimeError("subscriber did not start")
        cmd = [*me, "--role", "bridge", "--scenario", sc.name, "--ns", ns, "--tag", ns,
               "--out", str(br_out), "--seconds", str(args.seconds),
               "--warmup", str(args.warmup), "--drain", str(args.drain)]  # fmt: skip
        cmd += ["--injector", args.injector, "--switch-interval", str(args.switch_interval)]
        cmd += ["--bridge-executor", args.bridge_executor, "--gc-young", str(args.gc_young)]
        cmd += ["--system", sc.system]
        if not args.probe:
            cmd.append("--no-probe")
        if args.profile:
            cmd += ["--profile", args.profile]
        subprocess.run(cmd, check=True, env=env, timeout=120)
        sub.stdin.write("stop\n")
        sub.stdin.flush()
        sub.wait(timeout=30)
    finally:
        if sub.poll() is None:
            sub.kill()
    br = json.loads(br_out.read_text())
    su = json.loads(sub_out.read_text())
    return analyse(sc, br, su)


def analyse(sc: Scenario, br: dict[str, Any], su: dict[str, Any]) -> dict[str, Any]:
    """Turn the raw records of both processes into figures."""
    recv: dict[tuple[int, int], float] = {}
    duplicates = 0
    for p, log in su["received"].items():
        for seq, t in log:
            key = (int(p), seq)
            if key in recv:
                duplicates += 1
            else:
                recv[key] = t
    sent = br["sent"]
    w0, w1 = br["window"]
    latencies, dropped = [], 0
    window_recv = []
    for p, seq, t_send, in_window in sent:
        t = recv.get((p, seq))
        if t is None:
            dropped += 1
            continue
        if in_window:
            latencies.append(t - t_send)
            window_recv.append(t)
    rx_in, rx_proc = [], []
    send_time = {(p, seq): t for p, seq, t, w in sent if w}
    for p, log in br["rx_probe"].items():
        for t_in, t_out, seq in log:
            ts = send_time.get((int(p), seq))
            if ts is not None:
                rx_in.append(t_in - ts)
                rx_proc.append(t_out - t_in)
    periods = []
    for times in br["tx"].values():
        in_w = [t for t in times if w0 <= t <= w1]
        periods += [abs((b - a) - STATUS_PERIOD) for a, b in itertools.pairwise(in_w)]
    worst_tx = []
    for p, times in br["tx"].items():
        in_w = [t for t in times if w0 <= t <= w1]
        worst_tx += [
            (abs(b - a - STATUS_PERIOD) * 1e3, a - w0, p) for a, b in itertools.pairwise(in_w)
        ]
    worst_tx = sorted(worst_tx, reverse=True)[:3]
    tx_p99_by_pistol = {}
    for p, times in br["tx"].items():
        in_w = [t for t in times if w0 <= t <= w1]
        devs = [abs((b - a) - STATUS_PERIOD) for a, b in itertools.pairwise(in_w)]
        tx_p99_by_pistol[p] = benchlib.percentile(devs, 99) * 1e3
    gcs = br.get("gc", [])
    window = br["window_s"]
    sustained = (
        (len(window_recv) - 1) / (max(window_recv) - min(window_recv))
        if len(window_recv) > 1
        else float("nan")
    )
    bridge_cpu = br["process_cpu_s"] - br["injector_cpu_s"]
    return {
        "scenario": sc.name,
        "description": sc.description,
        "rate": sc.rate,
        "pistols": sc.pistols,
        "split_channels": sc.split_channels,
        "system": sc.system,
        "injected_rate": br["frames_in_window"] / window,
        "charging_loop_sent": len(sent),
        "charging_loop_received": len(recv),
        "sustained_rate": sustained,
        "dropped": dropped,
        "duplicates": duplicates,
        "latency": benchlib.summary_ms(latencies),
        "bus_to_bridge": benchlib.summary_ms(rx_in),
        "bridge_processing": benchlib.summary_ms(rx_proc),
        "tx_period_deviation": benchlib.summary_ms(periods),
        "tx_p99_worst_pistol_ms": max(tx_p99_by_pistol.values(), default=float("nan")),
        "bridge_cpu_pct": 100.0 * bridge_cpu / window,
        "process_cpu_pct": 100.0 * br["process_cpu_s"] / window,
        "injector_cpu_pct": 100.0 * br["injector_cpu_s"] / window,
        "injector_max_lag_ms": br["injector_max_lag_ms"],
        "subscriber_cpu_s": su["cpu_s"],
        "per_thread_cpu_pct": {
            k: round(100.0 * v / window, 1) for k, v in br["per_thread_cpu_s"].items()
        },
        "counters": br["counters"],
        "gc_collections": len(gcs),
        "gc_max_pause_ms": max((g[1] for g in gcs), default=0.0) * 1e3,
        "gc_gen2": [(round(t - w0, 3), round(d * 1e3, 2)) for t, d, g in gcs if g == 2],
        "worst_tx_periods": [(round(d, 2), round(t, 3), p) for d, t, p in worst_tx],
        "window_s": window,
    }


def to_report(results: list[dict[str, Any]], args: Any) -> benchlib.Report:
    """The raw figures of every scenario (targets: ``targets.py``, judged by ``run_all.py``)."""
    rep = benchlib.Report(
        f"bridge receive path and transmit timing ({args.seconds:g} s window per scenario)"
    )
    for r in results:
        n = r["scenario"]
        lat, tx = r["latency"], r["tx_period_deviation"]
        if n != "idle":
            rep.add(f"{n}: injected", r["injected_rate"], "frames/s", note=r["description"])
            rep.add(f"{n}: sustained at subscriber", r["sustained_rate"], "msgs/s",
                    note="Charging_Loop only (heartbeats have no per-frame topic)")  # fmt: skip
            rep.add(f"{n}: dropped", r["dropped"], "frames",
                    note=f"of {r['charging_loop_sent']} Charging_Loop")  # fmt: skip
            rep.add(f"{n}: latency p50", lat["p50_ms"], "ms")
            rep.add(f"{n}: latency p99", lat["p99_ms"], "ms")
            rep.add(f"{n}: latency max", lat["max_ms"], "ms")
            if r["system"] == "product":
                bb, bp = r["bus_to_bridge"], r["bridge_processing"]
                rep.add(f"{n}: send -> bridge rx p99", bb["p99_ms"], "ms",
                        note=f"p50 {bb['p50_ms']:.3f} ms (virtual-bus queue + GIL)")  # fmt: skip
                rep.add(f"{n}: bridge per-frame p99", bp["p99_ms"], "ms",
                        note=f"p50 {bp['p50_ms']:.3f} ms (decode + publish)")  # fmt: skip
        rep.add(f"{n}: bridge CPU", r["bridge_cpu_pct"], "% core",
                note=f"process {r['process_cpu_pct']:.1f} % - injector "
                f"{r['injector_cpu_pct']:.1f} %; {r['pistols']} pistol(s)")  # fmt: skip
        if tx["n"]:
            rep.add(f"{n}: TX period dev p50", tx["p50_ms"], "ms")
            rep.add(f"{n}: TX period dev p99", tx["p99_ms"], "ms",
                    note=f"{tx['n']} periods of Power_Modules_Status; worst pistol "
                    f"{r['tx_p99_worst_pistol_ms']:.2f} ms")  # fmt: skip
            rep.add(f"{n}: TX period dev max", tx["max_ms"], "ms")
        rep.add(f"{n}: GC longest pause", r["gc_max_pause_ms"], "ms",
                note=f"{r['gc_collections']} collections in the window")  # fmt: skip
    rep.details["scenarios"] = results
    return rep


def main() -> int:
    p = benchlib.base_parser(__doc__.splitlines()[0])
    p.add_argument("--role", choices=["orchestrator", "bridge", "subscriber"],
                   default="orchestrator", help=argparse_hidden())  # fmt: skip
    p.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS),
                   help=f"comma-separated, from {', '.join(SCENARIOS)}")  # fmt: skip
    p.add_argument("--seconds", type=float, default=8.0, help="measurement window per scenario")
    p.add_argument("--warmup", type=float, default=1.0, help="injection before the window")
    p.add_argument("--drain", type=float, default=1.0, help="wait after the last frame")
    p.add_argument("--executor", choices=["events", "single"], default="events",
                   help="subscriber process executor")  # fmt: skip
    p.add_argument("--injector", choices=["queue", "send"], default="queue",
                   help="queue: put frames straight into the bridges' virtual-bus queues "
                   "(cheap); send: VirtualBus.send (deepcopy per recipient)")  # fmt: skip
    p.add_argument("--switch-interval", type=float, default=0.0,
                   help="sys.setswitchinterval() in the bridge process (experiment; "
                   "0 = Python default 5 ms)")  # fmt: skip
    p.add_argument("--bridge-executor", choices=["events", "single"], default="events",
                   help="bridge process executor, spun in the main thread as `run` does "
                   "(default events, the product's choice)")  # fmt: skip
    p.add_argument("--gc-young", type=int, default=0,
                   help="young-generation GC threshold in the bridge process after start-up "
                   "(experiment; 0 = the product's setting, ros/runtime.py)")  # fmt: skip
    p.add_argument("--no-probe", dest="probe", action="store_false",
                   help="no timing probe in the bridge's receive callback")  # fmt: skip
    p.add_argument("--profile", metavar="FILE",
                   help="cProfile the receive thread(s) during the window into FILE")  # fmt: skip
    # internal (worker processes)
    p.add_argument("--scenario", help=argparse_hidden())
    p.add_argument("--system", default="product", help=argparse_hidden())
    p.add_argument("--pistols", type=int, default=1, help=argparse_hidden())
    p.add_argument("--ns", default="bench", help=argparse_hidden())
    p.add_argument("--tag", default="bench", help=argparse_hidden())
    p.add_argument("--out", help=argparse_hidden())
    args = p.parse_args()
    if args.role == "bridge":
        return run_bridge(args)
    if args.role == "subscriber":
        return run_subscriber(args)
    names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in names if s not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s) {unknown}")
    results = []
    with tempfile.TemporaryDirectory(prefix="evse-bench-") as tmp:
        for name in names:
            print(f"-- {name}: {SCENARIOS[name].description} ...", file=sys.stderr, flush=True)
            results.append(run_scenario(SCENARIOS[name], args, Path(tmp)))
    report = to_report(results, args)
    for r in results:
        report.details.setdefault("per_thread_cpu_pct", {})[r["scenario"]] = r[
            "per_thread_cpu_pct"
        ]
    status = report.finish(args)
    print("\nper-thread CPU in the bridge process (% of one core):")
    for r in results:
        print(f"  {r['scenario']:16s} {r['per_thread_cpu_pct']}")
    print("\nGC in the bridge process / worst TX period deviations (ms, at s into the window):")
    for r in results:
        print(f"  {r['scenario']:16s} {r['gc_collections']} collections, max pause "
              f"{r['gc_max_pause_ms']:.2f} ms, gen2 {r['gc_gen2']}; worst TX "
              f"{r['worst_tx_periods']}")  # fmt: skip
    figures = targets.extract(report.as_json())
    if figures:
        print("\nissue-16 targets, this run only (run_all.py: medians of 3 runs):")
        print(targets.table([figures]))
    return status


def argparse_hidden() -> str:
    """Help text of internal options."""
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    raise SystemExit(main())
