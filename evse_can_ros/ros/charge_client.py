"""``evse-can-ros charge`` and ``evse-can-ros status``: the operator's view of a pistol.

``charge`` sends one Charge goal, shows live progress (stage, V, I, P, energy, SoC and a progress
bar towards the goal's limit), treats Ctrl-C as cancel (the result still arrives once the session
has ended; a second Ctrl-C exits at once) and prints the result.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import rclpy
from rclpy.action import ActionClient
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from evse_can_ros.action import Charge
from evse_can_ros.ros.dds import new_context
from evse_can_ros.ros.interfaces import TOPIC

STATUS_TOPICS = (
    "controller_state",
    "charger_availability",
    "safe_to_unplug",
    "battery_state",
    "converter_status",
)

ERROR_NAMES = {
    v: k
    for k, v in vars(Charge.Result).items()
    if k.isupper() and isinstance(v, int) and not k.startswith(("OUTCOME_", "SESSION_END_"))
}
SESSION_END_NAMES = {0: "Clean_Stop", 1: "Rushed_Stop"}
OUTCOME_NAMES = {
    v: k[len("OUTCOME_") :].lower()
    for k, v in vars(Charge.Result).items()
    if k.startswith("OUTCOME_")
}


@dataclass
class ChargeRequest:
    """A goal to send: Charge.Goal fields (SI units, validated) and where to send it."""

    namespace: str
    values: dict[str, Any]
    server_timeout: float = 10.0

    @property
    def goal(self) -> Charge.Goal:
        """The Charge.Goal message."""
        return Charge.Goal(**self.values)


def progress_bar(fraction: float, width: int = 20) -> str:
    """Return a text progress bar, e.g. ``[#######-------------]``."""
    if not math.isfinite(fraction):
        return "[" + "?" * width + "]"
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def progress_of(goal: Charge.Goal, fb: Any, start_soc: float) -> tuple[float, str]:
    """Return (fraction, label) of the goal's most specific limit."""
    if goal.max_discharge_current and math.isfinite(fb.soc):  # V2G: down, then up
        low = f"{goal.min_soc:.0f} %" if goal.min_soc else "the vehicle's minimum"
        high = f"{goal.target_soc:.0f} %" if goal.target_soc else "the vehicle's target"
        return fb.soc / 100.0, f"SoC {fb.soc:.0f} % (V2G: to {low}, then {high})"
    if goal.target_soc and math.isfinite(fb.soc) and math.isfinite(start_soc):
        span = max(goal.target_soc - start_soc, 1e-9)
        return (fb.soc - start_soc) / span, f"SoC {fb.soc:.0f}/{goal.target_soc:.0f} %"
    if goal.max_energy:
        return (
            fb.energy_delivered / goal.max_energy,
            f"{fb.energy_delivered / 1000:.2f}/{goal.max_energy / 1000:.2f} kWh",
        )
    if math.isfinite(fb.soc):
        return fb.soc / 100.0, f"SoC {fb.soc:.0f} %"
    return math.nan, "SoC ?"


def format_feedback(goal: Charge.Goal, fb: Any, start_soc: float) -> str:
    """One status line for a feedback message."""
    fraction, label = progress_of(goal, fb, start_soc)
    elapsed = int(fb.elapsed)
    return (
        f"{fb.stage_name:<19} {fb.present_voltage:6.1f} V {fb.present_current:6.1f} A "
        f"{fb.present_power / 1000:6.1f} kW {fb.energy_delivered / 1000:7.3f} kWh "
        + (f"{fb.energy_exported / 1000:7.3f} kWh exported " if fb.energy_exported else "")
        + f"{progress_bar(fraction)} {label}  {elapsed // 3600:02d}:{elapsed // 60 % 60:02d}:"
        f"{elapsed % 60:02d}"
    )


def format_result(result: Any) -> str:
    """Multi-line summary of a Charge result."""
    code = ERROR_NAMES.get(result.error_code, str(result.error_code))
    lines = [
        f"result:        {'OK' if result.error_code == 0 else code}"
        + (f" ({result.error_msg})" if result.error_msg else ""),
        f"outcome:       {OUTCOME_NAMES.get(result.outcome, result.outcome)}",
        f"energy:        {result.energy_delivered / 1000:.3f} kWh",
        *(
            [f"exported:      {result.energy_exported / 1000:.3f} kWh (from the vehicle)"]
            if result.energy_exported
            else []
        ),
        f"duration:      {result.duration:.1f} s",
        f"SoC:           {_pct(result.initial_soc)} -> {_pct(result.final_soc)}",
        f"session end:   {SESSION_END_NAMES.get(result.session_end_state, 'none')}",
        f"safe to unplug: {'yes' if result.safe_to_unplug else 'NO'}",
    ]
    return "\n".join(lines)


def _pct(x: float) -> str:
    return f"{x:.0f} %" if math.isfinite(x) else "?"


def run_charge(
    req: ChargeRequest,
    out: TextIO = sys.stdout,
    on_feedback: Callable[[Any], None] | None = None,
    context: Any = None,
) -> tuple[int, Any]:
    """Send the goal and follow it; return (exit code, result or None).

    Long: one client session (feedback printing, Ctrl-C = cancel, clean-up) reads best as one
    piece with its small closures.
    """
    own_context = context is None
    if own_context:
        context = new_context()
    node = Node("evse_can_ros_charge", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    tty = out.isatty()
    state: dict[str, Any] = {"start_soc": math.nan, "stage": None, "last_print": 0.0}
    interrupts = [0]

    def on_fb(msg: Any) -> None:
        fb = msg.feedback
        if on_feedback is not None:
            on_feedback(fb)
        if not math.isfinite(state["start_soc"]) and math.isfinite(fb.soc):
            state["start_soc"] = fb.soc
        line = format_feedback(req.goal, fb, state["start_soc"])
        now = time.monotonic()
        if tty:
            out.write("\r" + line + "\x1b[K")
            out.flush()
        elif fb.stage != state["stage"] or now - state["last_print"] >= 5.0:
            out.write(line + "\n")
            state["last_print"] = now
        state["stage"] = fb.stage

    def spin_until(predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not predicate():
            if deadline is not None and time.monotonic() > deadline:
                return False
            if interrupts[0] > 1:
                raise KeyboardInterrupt
            executor.spin_once(timeout_sec=0.1)
        return True

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if main_thread else None

    def on_sigint(signum: int, frame: Any) -> None:
        interrupts[0] += 1

    client = ActionClient(node, Charge, _join(req.namespace, "charge"))
    try:
        if not client.wait_for_server(timeout_sec=req.server_timeout):
            out.write(
                f"error: no charge server at {_join(req.namespace, 'charge')} "
                f"(is the charger running? `evse-can-ros run` / `sim`)\n"
            )
            return 1, None
        if main_thread:  # Ctrl-C = cancel (only the main thread can handle signals)
            signal.signal(signal.SIGINT, on_sigint)
        send = client.send_goal_async(req.goal, feedback_callback=on_fb)
        spin_until(send.done)
        handle = send.result()
        if handle is None or not handle.accepted:
            out.write("error: the goal was rejected\n")
            return 1, None
        result_future = handle.get_result_async()
        cancel_sent = False
        while not result_future.done():
            if interrupts[0] == 1 and not cancel_sent:
                cancel_sent = True
                out.write(
                    "\ncancelling: the charge stops (User_Stop_Button); waiting for the "
                    "session to end (Ctrl-C again to leave now)\n"
                )
                handle.cancel_goal_async()
            spin_until(result_future.done, timeout=0.5)
        result = result_future.result().result
        if tty:
            out.write("\n")
        out.write(format_result(result) + "\n")
        return (0 if result.error_code == 0 else 1), result
    except KeyboardInterrupt:
        out.write("\ninterrupted: the goal may still be running on the server\n")
        return 130, None
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, previous)
        client.destroy()
        node.destroy_node()
        executor.shutdown()
        if own_context:
            rclpy.try_shutdown(context=context)


def run_status(namespace: str, watch: bool, wait: float = 2.0, out: TextIO = sys.stdout) -> int:
    """Print the pistol's state once (after ``wait`` s) or live until Ctrl-C."""
    context = new_context()
    node = Node("evse_can_ros_status", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    seen: dict[str, Any] = {}

    def keep(key: str) -> Callable[[Any], None]:
        return lambda m: seen.__setitem__(key, m)

    for key in STATUS_TOPICS:
        topic = TOPIC[key]
        node.create_subscription(topic.ros_type, _join(namespace, key), keep(key), topic.qos)
    try:
        deadline = time.monotonic() + wait
        while watch or time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
            if watch and time.monotonic() >= deadline:
                deadline = time.monotonic() + 1.0
                out.write("\x1b[2J\x1b[H" if out.isatty() else "")
                out.write(format_status(namespace, seen) + "\n")
                out.flush()
        if not watch:
            out.write(format_status(namespace, seen) + "\n")
        return 0 if "controller_state" in seen else 1
    except KeyboardInterrupt:
        return 0
    finally:
        node.destroy_node()
        executor.shutdown()
        rclpy.try_shutdown(context=context)


def format_status(namespace: str, seen: dict[str, Any]) -> str:
    """Operator summary of the latest messages."""
    lines = [f"pistol {namespace or '/'}"]
    cs = seen.get("controller_state")
    if cs is None:
        lines.append("  controller:     no controller_state (is the bridge running?)")
    else:
        health = "alive" if cs.alive else f"LOST: {cs.reason}" if cs.reason else "LOST"
        lines.append(
            f"  controller:     {cs.state_name or 'no heartbeat yet'} ({health}, "
            f"heartbeat {cs.heartbeat_age * 1000:.0f} ms ago)"
        )
    av = seen.get("charger_availability")
    if av is not None:
        lines.append(
            f"  availability:   {av.availability_name}"
            + (" (goal running)" if av.goal_active else "")
        )
    su = seen.get("safe_to_unplug")
    if su is not None:
        lines.append(f"  safe to unplug: {'yes' if su.safe else 'no'} ({su.reason})")
    cv = seen.get("converter_status")
    if cv is not None:
        lines.append(
            f"  power stage:    {cv.phase}, {cv.voltage:.1f} V {cv.current:.1f} A "
            f"{cv.power / 1000:.1f} kW, modules {cv.module_temperature:.0f} °C"
            + (f", FAULT {cv.fault}" if cv.fault else "")
        )
    bs = seen.get("battery_state")
    if bs is not None and bs.present:
        soc = f"{bs.percentage * 100:.0f} %" if math.isfinite(bs.percentage) else "?"
        lines.append(f"  vehicle:        SoC {soc}, {bs.location}")
    return "\n".join(lines)


def _join(namespace: str, name: str) -> str:
    ns = namespace.rstrip("/")
    if ns and not ns.startswith("/"):
        ns = "/" + ns
    return f"{ns}/{name}"
