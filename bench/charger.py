"""Benchmarks 4-6: safety reaction, end-to-end latency, memory and start-up of the charger.

Everything runs as ``evse-can-ros sim`` runs it: :class:`Charger` (every node of the node set,
one SingleThreadedExecutor) with ``sim=True`` on python-can's ``virtual`` bus, in a fresh
process per trial. The simulated converter is made instantaneous (``simulated.voltage_slope``,
``current_slope``, ``dead_time`` and ``wake_time`` = 0) so that the software path is measured.
A listener on the virtual bus records every frame (CLOCK_MONOTONIC); probes wrap the converter
backend's ``apply``/``stop`` and the driver's command callback; a subscriber node (same executor)
records the driver's ``power_modules_status`` and the bridge's ``controller_state``.

4. Safety reaction (a Charge goal runs; the fault comes while charging):
   * heartbeat loss (``scenario.reset_after``: the controller goes silent), a fresh process per
     trial: from the last ``Advantics_Controller_Status`` frame on the bus to the converter
     output off (backend ``stop``/OFF setpoint), to the driver reporting 0 A
     (``power_modules_status``) and to the first ``Power_Modules_Status`` frame on the bus with
     0 A;
   * emergency stop, ``--estop-trials`` (default 20) in one process, one per charge: the bench
     puts an ``Emergency_Stop`` frame on the bus itself while the vehicle keeps its contactors
     closed (so only our path can bring the current down), and times frame sent -> converter
     output off, -> ``power_modules_status`` <= 1 A, -> first ``Power_Modules_Status`` frame on
     the bus <= 1 A. Worst, p50 and the trial count are printed.
5. End to end, in the charging phase before the emergency stop: ``Charging_Loop`` frame on the
   bus -> driver callback done (setpoint applied to the converter) -> the driver's next
   ``power_modules_status`` -> the bridge's next ``Power_Modules_Status`` frame.
6. Start-up and memory: from ``exec`` of a fresh Python process to all nodes constructed, and to
   the first ``Power_Modules_Status`` frame on the bus (the power side reporting to the
   controller); RSS (VmRSS / VmHWM) after start-up and while charging; 1 and 8 pistols.

    python bench/charger.py [--trials 3] [--json FILE]
"""

from __future__ import annotations

import time

T_PROCESS = time.monotonic()  # as early as possible: start-up is measured from exec

import contextlib  # noqa: E402
import io  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import benchlib  # noqa: E402

ZERO_A = 0.5  # A: "0 A" (Power_Modules_Status resolution is 0.1 A)


def rss_kib() -> dict[str, int]:
    """VmRSS and VmHWM of this process in KiB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


class BusListener:
    """Records every frame on a virtual channel: (monotonic time, id, data)."""

    def __init__(self, channel: str) -> None:
        import can

        self.bus = can.Bus(interface="virtual", channel=channel)
        self.frames: list[tuple[float, int, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bus-listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self.bus.recv(0.05)
            if msg is not None:
                self.frames.append((time.monotonic(), msg.arbitration_id, bytes(msg.data)))

    def close(self) -> None:
        """Stop and release the bus."""
        self._stop.set()
        self._thread.join(timeout=2.0)
        self.bus.shutdown()


def write_params(path: Path, simulator: dict[str, Any]) -> str:
    """sim.yaml + instantaneous converter + ``simulator`` overrides, written to ``path``."""
    import yaml

    from evse_can_ros.tools.resources import config_file

    data = yaml.safe_load(config_file("sim.yaml").read_text())
    data["/**/controller_simulator"]["ros__parameters"].update(simulator)
    driver = data.setdefault("/**/converter_driver", {}).setdefault("ros__parameters", {})
    driver.update(
        {
            "simulated.voltage_slope": 0.0,
            "simulated.current_slope": 0.0,
            "simulated.dead_time": 0.0,
            "simulated.wake_time": 0.0,
        }
    )
    path.write_text(yaml.safe_dump(data))
    return str(path)


class Rig:
    """A Charger with sim=True on its own virtual channel, plus listener and probes."""

    def __init__(self, pistols: int, simulator: dict[str, Any], tmp: Path) -> None:
        from evse_can_ros.nodeset import ChargerOptions
        from evse_can_ros.ros.charger import Charger, init_context

        self.channel = f"bench-{uuid.uuid4().hex[:8]}"
        self.listener = BusListener(self.channel)
        options = ChargerOptions(
            pistols=tuple(range(1, pistols + 1)),
            can_interface="virtual",
            can_channel=self.channel,
            sim=True,
            params_file=write_params(tmp / f"params-{self.channel}.yaml", simulator),
            log_level="error",
        )
        self.t_init0 = time.monotonic()
        self.context = init_context(options)
        self.charger = Charger(options, self.context)
        self.t_constructed = time.monotonic()
        self.charger.spin_in_thread()
        self.t_spinning = time.monotonic()
        from evse_can_ros.protocol import load_codec

        self.codec = load_codec()

    def node(self, name: str, pistol: int = 1) -> Any:
        """The node ``name`` of ``pistol``."""
        ns = f"/evse/pistol{pistol}"
        return next(
            n for n in self.charger.nodes if n.get_name() == name and n.get_namespace() == ns
        )

    def frames(self, name: str, pistol: int = 1) -> list[tuple[float, Any]]:
        """Decoded frames ``name`` of ``pistol`` seen on the bus so far: (time, message)."""
        from evse_can_ros.protocol import CanFrame, make_can_id

        can_id = make_can_id(self.codec.spec(name).base_id, pistol)
        return [
            (t, self.codec.decode(CanFrame(i, d), pistol))
            for t, i, d in list(self.listener.frames)
            if i == can_id
        ]

    def close(self) -> None:
        """Destroy the charger and the listener."""
        import rclpy

        self.charger.destroy()
        rclpy.try_shutdown(context=self.context)
        self.listener.close()


def first_after(events: list[tuple[float, Any]], t: float, pred: Any = None) -> float | None:
    """Time of the first event after ``t`` (matching ``pred``), or None."""
    for te, v in events:
        if te > t and (pred is None or pred(v)):
            return te
    return None


# --- worker: start-up and memory -----------------------------------------------------------------


def run_startup(args: Any) -> dict[str, Any]:
    """Worker: start the charger, wait for the first Power_Modules_Status of every pistol."""
    t_imports0 = time.monotonic()
    import rclpy  # noqa: F401

    import evse_can_ros.ros.charger  # noqa: F401

    t_imports1 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        rig = Rig(args.pistols, {"scenario.plug_in_delay": -1.0}, Path(tmp))
        try:
            deadline = time.monotonic() + 20.0
            firsts: dict[int, float] = {}
            while time.monotonic() < deadline and len(firsts) < args.pistols:
                for p in range(1, args.pistols + 1):
                    if p not in firsts:
                        f = rig.frames("Power_Modules_Status", p)
                        if f:
                            firsts[p] = f[0][0]
                time.sleep(0.01)
            time.sleep(1.0)
            mem = rss_kib()
        finally:
            rig.close()
    return {
        "pistols": args.pistols,
        "nodes": 4 * args.pistols,
        "t_spawn": args.t_spawn,
        "t_process": T_PROCESS,
        "python_start_s": T_PROCESS - args.t_spawn,
        "imports_s": t_imports1 - t_imports0,
        "construct_s": rig.t_constructed - rig.t_init0,
        "spawn_to_constructed_s": rig.t_spinning - args.t_spawn,
        "spawn_to_first_status_s": (max(firsts.values()) - args.t_spawn)
        if len(firsts) == args.pistols
        else None,
        "rss_kib": mem,
    }


# --- worker: safety reaction + end to end --------------------------------------------------------


def run_safety(args: Any) -> dict[str, Any]:
    """Worker: charge, inject heartbeat loss or emergency stop, time the reaction."""
    from rclpy.node import Node

    from evse_can_ros import msg as ros
    from evse_can_ros.converter.base import Mode
    from evse_can_ros.ros.charge_client import ChargeRequest, run_charge
    from evse_can_ros.ros.interfaces import EVENTS, LATCHED

    after = args.fault_after
    simulator: dict[str, Any] = {"scenario.replug_delay": -1.0}
    if args.kind == "heartbeat":
        simulator |= {"scenario.reset_after": after, "scenario.reset_duration": 5.0}
    else:
        simulator |= {"scenario.ev_emergency_after": after}
    with tempfile.TemporaryDirectory() as tmp:
        rig = Rig(1, simulator, Path(tmp))
        try:
            return _safety(args, rig, Node, ros, Mode, EVENTS, LATCHED, ChargeRequest, run_charge)
        finally:
            rig.close()


def _safety(  # noqa: PLR0917  (bench plumbing)
    args: Any,
    rig: Rig,
    node_cls: Any,
    ros: Any,
    mode_enum: Any,
    events_qos: Any,
    latched_qos: Any,
    charge_request: Any,
    run_charge: Any,
) -> dict[str, Any]:
    driver = rig.node("converter_driver")
    backend = driver.backend
    off_log: list[tuple[float, str]] = []  # backend output off: (t, how)
    apply_log: list[tuple[float, float]] = []  # (t, current limit)
    orig_apply, orig_stop = backend.apply, backend.stop

    def apply_probe(setpoint: Any, now: float) -> Any:
        result = orig_apply(setpoint, now)
        t = time.monotonic()
        apply_log.append((t, setpoint.current_limit))
        if setpoint.mode == mode_enum.OFF:
            off_log.append((t, "apply(OFF)"))
        return result

    def stop_probe() -> Any:
        result = orig_stop()
        off_log.append((time.monotonic(), "stop()"))
        return result

    backend.apply, backend.stop = apply_probe, stop_probe
    cmd_log: list[tuple[float, float, str]] = []  # driver command callbacks (t_in, t_out, name)
    orig_cmd = driver._on_command

    def cmd_probe(m: Any, cls: Any) -> None:
        t_in = time.monotonic()
        orig_cmd(m, cls)
        cmd_log.append((t_in, time.monotonic(), cls.NAME))

    driver._on_command = cmd_probe

    bridge = rig.node("can_bridge")
    lost_published: list[float] = []  # bridge publishes controller_state alive=false
    orig_publish = bridge.pub_state.publish

    def state_probe(msg: Any) -> None:
        if not msg.alive and msg.heartbeat_seen:
            lost_published.append(time.monotonic())
        orig_publish(msg)

    detected: list[tuple[float, float]] = []  # (t, bridge's last_heartbeat) at detection
    core = bridge.core
    orig_lose = core._lose_controller

    def lose_probe(*a: Any, **k: Any) -> Any:
        detected.append((time.monotonic(), core.last_heartbeat or 0.0))
        return orig_lose(*a, **k)

    core._lose_controller = lose_probe
    with contextlib.suppress(AttributeError):  # no instance attributes: figure not available
        bridge.pub_state.publish = state_probe
    watch = node_cls("bench_watch", context=rig.context)
    power: list[tuple[float, Any]] = []  # driver's power_modules_status: (t, present_current)
    state: list[tuple[float, Any]] = []  # bridge's controller_state: (t, alive)
    watch.create_subscription(
        ros.PowerModulesStatus,
        "/evse/pistol1/power_modules_status",
        lambda m: power.append((time.monotonic(), m.present_current)),
        events_qos,
    )
    watch.create_subscription(
        ros.ControllerState,
        "/evse/pistol1/controller_state",
        lambda m: state.append((time.monotonic(), m.alive)),
        latched_qos,
    )
    rig.charger.executor.add_node(watch)

    result: dict[str, Any] = {}

    def charge() -> None:
        try:
            result["charge"] = run_charge(
                charge_request("/evse/pistol1", {"target_soc": 95.0}),
                out=io.StringIO(),
                context=rig.context,
            )
        except Exception as exc:  # the context goes away under the goal at the end of the trial
            result["charge_error"] = type(exc).__name__

    threading.Thread(target=charge, name="charge-goal", daemon=True).start()

    # wait for charging current, then for the fault and the reaction
    deadline = time.monotonic() + args.timeout
    t_charging = t_event = None
    rss_charging = None
    while time.monotonic() < deadline:
        time.sleep(0.05)
        if t_charging is None:
            t_charging = first_after(power, 0.0, lambda i: i > 10.0)
            if t_charging is not None:
                rss_charging = rss_kib()
            continue
        if args.kind == "heartbeat":
            hbs = [t for t, _ in rig.frames("Advantics_Controller_Status")]
            gaps = [(a, b) for a, b in itertools.pairwise(hbs) if b - a > 0.3]
            if gaps:
                t_event = gaps[0][0]
            elif hbs and time.monotonic() - hbs[-1] > 0.6:
                t_event = hbs[-1]
        else:
            es = rig.frames("Emergency_Stop")
            if es:
                t_event = es[0][0]
        if t_event is not None and time.monotonic() > t_event + 0.6:
            break
    statuses = rig.frames("Power_Modules_Status")
    loops = rig.frames("Charging_Loop")
    out: dict[str, Any] = {
        "kind": args.kind,
        "charging_seen": t_charging is not None,
        "event_seen": t_event is not None,
        "rss_charging_kib": rss_charging,
    }
    if t_event is None or t_charging is None:
        return out
    current_before = [i for t, i in power if t <= t_event]
    t_off = next((t for t, _ in off_log if t > t_event), None)
    t_lost = first_after(state, t_event, lambda alive: not alive)
    t_zero_topic = first_after(power, t_event, lambda i: i <= ZERO_A)
    t_zero_bus = first_after(statuses, t_event, lambda m: m.present_current <= ZERO_A)

    def ms(t: float | None) -> float | None:
        return None if t is None else (t - t_event) * 1e3

    out |= {
        "current_before_a": current_before[-1] if current_before else None,
        "to_bridge_publishes_lost_ms": ms(next((t for t in lost_published if t > t_event), None))
        if args.kind == "heartbeat"
        else None,
        "to_bridge_lost_ms": ms(t_lost) if args.kind == "heartbeat" else None,
        "to_bridge_detects_ms": ms(next((t for t, _ in detected if t > t_event), None)),
        "bridge_last_heartbeat_ms": ms(next((h for t, h in detected if t > t_event), None)),
        "to_converter_off_ms": ms(t_off),
        "to_zero_reported_ms": ms(t_zero_topic),
        "to_zero_on_bus_ms": ms(t_zero_bus),
        "off_how": next((h for t, h in off_log if t > t_event), None),
        # the driver's reports after the event until 0 A: (ms after the event, A)
        "reports_after_event": [
            (round((t - t_event) * 1e3, 1), i)
            for t, i in power
            if t > t_event and (t_zero_topic is None or t <= t_zero_topic)
        ],
    }
    # end to end: Charging_Loop frames while charging, before the fault
    e2e_apply, e2e_status = [], []
    loop_cbs = [(a, b) for a, b, n in cmd_log if n == "Charging_Loop"]
    for t_f, _m in loops:
        if not (t_charging <= t_f < t_event - 0.2):
            continue
        cb = next(((a, b) for a, b in loop_cbs if a >= t_f), None)
        if cb is None or cb[0] - t_f > 0.09:
            continue
        t_applied = cb[1]
        t_pub = first_after(power, t_applied)
        t_bus = first_after(statuses, t_pub) if t_pub is not None else None
        e2e_apply.append(t_applied - t_f)
        if t_bus is not None:
            e2e_status.append(t_bus - t_f)
    out["e2e_frame_to_setpoint_s"] = e2e_apply
    out["e2e_frame_to_status_frame_s"] = e2e_status
    return out


# --- worker: emergency stops, many trials in one process -----------------------------------------


def run_estops(args: Any) -> dict[str, Any]:
    """Worker: ``args.estop_trials`` charges, each stopped by an Emergency_Stop frame we send."""
    import can
    from rclpy.node import Node

    from evse_can_ros import msg as ros
    from evse_can_ros.converter.base import Mode
    from evse_can_ros.protocol import EmergencyStop, EmergencyStopOrigin
    from evse_can_ros.ros.charge_client import ChargeRequest, run_charge
    from evse_can_ros.ros.interfaces import EVENTS

    simulator = {"scenario.replug_delay": 1.0, "vehicle.soc_time_scale": 20.0}
    trials: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        rig = Rig(1, simulator, Path(tmp))
        injector = can.Bus(interface="virtual", channel=rig.channel)
        try:
            backend = rig.node("converter_driver").backend
            off_log: list[float] = []
            orig_apply, orig_stop = backend.apply, backend.stop

            def apply_probe(setpoint: Any, now: float) -> Any:
                result = orig_apply(setpoint, now)
                if setpoint.mode == Mode.OFF:
                    off_log.append(time.monotonic())
                return result

            def stop_probe() -> Any:
                orig_stop()
                off_log.append(time.monotonic())

            backend.apply, backend.stop = apply_probe, stop_probe
            published: list[tuple[float, float]] = []  # the driver publishes (t, current)
            driver = rig.node("converter_driver")
            orig_publish = driver.pub_power.publish

            publishers: dict[float, str] = {}  # publish time -> the publishing thread

            def publish_probe(msg: Any) -> None:
                orig_publish(msg)
                now = time.monotonic()
                published.append((now, msg.present_current))
                publishers[now] = threading.current_thread().name

            with contextlib.suppress(AttributeError):
                driver.pub_power.publish = publish_probe
            watch = Node("bench_estop_watch", context=rig.context)
            power: list[tuple[float, float]] = []
            watch.create_subscription(
                ros.PowerModulesStatus,
                "/evse/pistol1/power_modules_status",
                lambda m: power.append((time.monotonic(), m.present_current)),
                EVENTS,
            )
            rig.charger.executor.add_node(watch)
            frame = rig.codec.encode(EmergencyStop(EmergencyStopOrigin.EVSE), 1)
            message = can.Message(
                arbitration_id=frame.arbitration_id, data=frame.data, is_extended_id=True
            )
            for n in range(args.estop_trials):
                print(f"-- estop trial {n + 1}/{args.estop_trials}", file=sys.stderr, flush=True)
                done = threading.Event()

                def charge(done: threading.Event = done) -> None:
                    with contextlib.suppress(Exception):
                        run_charge(
                            ChargeRequest("/evse/pistol1", {"target_soc": 95.0}),
                            out=io.StringIO(),
                            context=rig.context,
                        )
                    done.set()

                threading.Thread(target=charge, daemon=True).start()
                t_start = time.monotonic()
                deadline = t_start + args.timeout
                while (
                    time.monotonic() < deadline
                    and first_after(power, t_start, lambda i: i > 10.0) is None
                ):
                    time.sleep(0.02)
                time.sleep(0.5)  # charging steadily
                t0 = time.monotonic()
                injector.send(message)
                time.sleep(0.3)
                t_off = next((t for t in off_log if t > t0), None)
                t_zero = first_after(published, t0, lambda i: i <= 1.0)
                t_seen = first_after(power, t0, lambda i: i <= 1.0)
                t_bus = first_after(
                    rig.frames("Power_Modules_Status"), t0, lambda m: m.present_current <= 1.0
                )
                trials.append(
                    {
                        "to_converter_off_ms": None if t_off is None else (t_off - t0) * 1e3,
                        "to_report_1a_ms": None if t_zero is None else (t_zero - t0) * 1e3,
                        "report_1a_thread": publishers.get(t_zero, "") if t_zero else "",
                        "to_subscriber_1a_ms": None if t_seen is None else (t_seen - t0) * 1e3,
                        "to_bus_1a_ms": None if t_bus is None else (t_bus - t0) * 1e3,
                    }
                )
                done.wait(args.timeout)  # the session ends; the vehicle replugs after 1 s
        finally:
            injector.shutdown()
            rig.close()
    return {"trials": trials}


# --- orchestrator --------------------------------------------------------------------------------


def worker(role: str, extra: list[str], timeout: float = 120.0) -> dict[str, Any]:
    """Run this script as a worker process; return its JSON."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    try:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--role", role, "--out", str(out)]
        cmd += [*extra, "--t-spawn", repr(time.monotonic())]
        subprocess.run(cmd, check=True, timeout=timeout, env=dict(os.environ))
        data: dict[str, Any] = json.loads(out.read_text())
        return data
    finally:
        out.unlink(missing_ok=True)


def main() -> int:
    p = benchlib.base_parser(__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=3, help="fresh processes per heartbeat figure")
    p.add_argument("--estop-trials", type=int, default=20, help="emergency stops (one process)")
    p.add_argument("--startup-runs", type=int, default=3, help="fresh processes per start-up")
    p.add_argument("--parts", choices=["all", "safety", "startup"], default="all",
                   help="safety (4-5), startup (6) or both")  # fmt: skip
    p.add_argument("--fault-after", type=float, default=4.0,
                   help="s of charging before the fault (end-to-end samples)")  # fmt: skip
    p.add_argument("--timeout", type=float, default=40.0, help="per trial")
    p.add_argument("--role", default="orchestrator", help=argparse_hidden())
    p.add_argument("--kind", default="heartbeat", help=argparse_hidden())
    p.add_argument("--pistols", type=int, default=1, help=argparse_hidden())
    p.add_argument("--out", help=argparse_hidden())
    p.add_argument("--t-spawn", type=float, default=0.0, help=argparse_hidden())
    args = p.parse_args()
    if args.role == "startup":
        Path(args.out).write_text(json.dumps(run_startup(args)))
        return 0
    if args.role == "safety":
        Path(args.out).write_text(json.dumps(run_safety(args)))
        return 0
    if args.role == "estops":
        Path(args.out).write_text(json.dumps(run_estops(args)))
        return 0

    rep = benchlib.Report("charger (one process, sim=True, virtual bus, instantaneous converter)")
    details: dict[str, Any] = {"heartbeat": [], "estop": [], "estop_trials": []}
    common = ["--fault-after", str(args.fault_after), "--timeout", str(args.timeout)]
    if args.parts == "startup":
        return _startup_report(args, rep, details)
    for kind in ("heartbeat", "estop"):
        runs = []
        for n in range(args.trials):
            print(f"-- {kind} trial {n + 1}/{args.trials}", file=sys.stderr, flush=True)
            runs.append(worker("safety", ["--kind", kind, *common]))
        details[kind] = runs
    estops = worker(
        "estops",
        ["--estop-trials", str(args.estop_trials), "--timeout", str(args.timeout)],
        timeout=60.0 + args.estop_trials * args.timeout,
    )["trials"]
    details["estop_trials"] = estops

    def values(kind: str, key: str) -> list[float]:
        return [r[key] for r in details[kind] if r.get(key) is not None]

    def add_worst(kind: str, key: str, label: str, target: str = "", note_extra: str = "") -> None:
        v = values(kind, key)
        note = f"{len(v)}/{args.trials} trials: " + ", ".join(f"{x:.1f}" for x in v)
        note += f"; {note_extra}" if note_extra else ""
        rep.add(label, max(v) if v else float("nan"), "ms (worst)", target, note)

    add_worst("heartbeat", "to_bridge_publishes_lost_ms",
              "heartbeat loss: last heartbeat -> bridge publishes 'lost'")  # fmt: skip
    add_worst("heartbeat", "to_bridge_lost_ms", "heartbeat loss: -> 'lost' received (executor)")
    add_worst("heartbeat", "to_converter_off_ms", "heartbeat loss: -> converter output off (0 A)",
              "<= 250")  # fmt: skip
    add_worst(
        "heartbeat",
        "to_zero_reported_ms",
        "heartbeat loss: -> driver reports <= 0.5 A",
        note_extra="the simulated vehicle opens its contactors in the reset: not ours",
    )
    add_worst("heartbeat", "to_zero_on_bus_ms", "heartbeat loss: -> 0 A frame on the bus")
    for key, label, target in (
        ("to_converter_off_ms", "emergency stop: frame -> converter output off", "<= 20"),
        ("to_report_1a_ms", "emergency stop: frame -> power_modules_status <= 1 A", "<= 20"),
        ("to_subscriber_1a_ms", "emergency stop: frame -> a subscriber sees <= 1 A", ""),
        ("to_bus_1a_ms", "emergency stop: frame -> Power_Modules_Status frame <= 1 A", ""),
    ):
        v = [t[key] for t in estops if t.get(key) is not None]
        note = f"{len(v)}/{len(estops)} trials, p50 {benchlib.percentile(v, 50):.1f} ms"
        if key == "to_report_1a_ms" and v:  # which thread published the first <= 1 A, worst 3
            worst = sorted((t for t in estops if t.get(key) is not None), key=lambda t: -t[key])
            note += "; worst by " + ", ".join(
                f"{t[key]:.0f} ms {t.get('report_1a_thread') or '?'}" for t in worst[:3]
            )
        rep.add(label, max(v) if v else float("nan"), "ms (worst)", target, note)
    e2e_a = [x for r in details["estop"] for x in r.get("e2e_frame_to_setpoint_s", [])]
    e2e_s = [x for r in details["estop"] for x in r.get("e2e_frame_to_status_frame_s", [])]
    for label, data in (("Charging_Loop frame -> setpoint applied", e2e_a),
                        ("Charging_Loop frame -> next Power_Modules_Status", e2e_s)):  # fmt: skip
        s = benchlib.summary_ms(data)
        rep.add(f"end to end: {label} p50", s["p50_ms"], "ms", note=f"n={s['n']}")
        rep.add(f"end to end: {label} p99", s["p99_ms"], "ms", note=f"max {s['max_ms']:.1f} ms")
    charging = [
        r["rss_charging_kib"]["VmRSS"] for r in details["estop"] if r.get("rss_charging_kib")
    ]
    if charging:
        rep.add("RSS 1 pistol while charging", max(charging) / 1024, "MiB")
    if args.parts == "safety":
        rep.details = details
        return rep.finish(args)
    return _startup_report(args, rep, details)


def _startup_report(args: Any, rep: benchlib.Report, details: dict[str, Any]) -> int:
    """Start-up and RSS of 1 and 8 pistols (fresh processes), added to ``rep``."""
    details["startup"] = {}
    for pistols in (1, 8):
        runs = []
        for n in range(args.startup_runs):
            print(f"-- start-up {pistols} pistol(s) {n + 1}/{args.startup_runs}", file=sys.stderr)
            runs.append(worker("startup", ["--pistols", str(pistols)]))
        details["startup"][pistols] = runs
    for pistols, runs in details["startup"].items():
        ok = [r for r in runs if r.get("spawn_to_first_status_s") is not None]
        if not ok:
            rep.add(f"start-up {pistols} pistol(s)", float("nan"), "s", note="no status frame")
            continue
        worst = max(ok, key=lambda r: r["spawn_to_first_status_s"])
        rep.add(f"start-up {pistols} pistol(s): exec -> nodes constructed",
                max(r["spawn_to_constructed_s"] for r in ok), "s (worst)",
                note=f"python {worst['python_start_s']:.2f} s, imports {worst['imports_s']:.2f} s,"
                f" construct {worst['construct_s']:.2f} s")  # fmt: skip
        firsts = [r["spawn_to_first_status_s"] for r in ok]
        rep.add(f"start-up {pistols} pistol(s): exec -> first Power_Modules_Status",
                benchlib.percentile(firsts, 50), "s (median)",
                "<= 1" if pistols == 1 else "<= 2",
                note=f"{4 * pistols} nodes; {len(ok)} runs: "
                + ", ".join(f"{x:.2f}" for x in firsts))  # fmt: skip
        rep.add(f"RSS {pistols} pistol(s) after start-up",
                max(r["rss_kib"]["VmRSS"] for r in ok) / 1024, "MiB",
                note=f"peak {max(r['rss_kib']['VmHWM'] for r in ok) / 1024:.0f} MiB")  # fmt: skip
    rss = {
        p: benchlib.percentile([r["rss_kib"]["VmRSS"] / 1024 for r in runs], 50)
        for p, runs in details["startup"].items()
        if runs
    }
    if 1 in rss and 8 in rss:
        rep.add("RSS per extra pistol", (rss[8] - rss[1]) / 7, "MiB",
                note="(median RSS 8 pistols - 1 pistol) / 7, sim: 4 nodes/pistol")  # fmt: skip
    rep.details = details
    return rep.finish(args)


def argparse_hidden() -> str:
    """Help text of internal options."""
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    raise SystemExit(main())
