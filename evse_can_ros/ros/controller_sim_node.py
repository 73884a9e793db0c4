"""``controller_simulator``: the emulated Advantics controller + vehicle on a CAN bus.

Runs :class:`evse_can_ros.core.controller_sim.ControllerSimulator` every 10 ms on its own thread
(frames received by the CAN link's receive thread are queued for the next step); the executor
(single-threaded) only serves the diagnostics timer and the services. Start it with
``ros2 run evse_can_ros controller_simulator --ros-args -p can_channel:=vcan0`` or from the CLI
(:func:`run_simulator`).

Parameters: ``pistol_index`` and the controller options of
:class:`~evse_can_ros.core.controller_sim.ControllerSimConfig`; ``can_*`` (interface default
``virtual``); ``vehicle.*`` (:class:`~evse_can_ros.core.vehicle.VehicleParams`); ``scenario.*``
(:class:`~evse_can_ros.core.controller_sim.Scenario`); ``protocol_version`` (2 or 3: the
interface the emulated controller speaks); ``database_path``.

Topics: ``simulator/state`` (``evse_can_ros/ControllerState``, latched: on change and every 1 s),
``simulator/status`` (``std_msgs/String``, latched JSON: vehicle phase, SoC, energy, session
result, every 1 s and on state change), ``/diagnostics``. Services (``std_srvs/Trigger``):
``simulator/plug_in``, ``simulator/unplug``, ``simulator/stop_charge`` (the vehicle stops),
``simulator/ev_emergency_stop``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_msgs.msg import String
from std_srvs.srv import Trigger

from evse_can_ros import msg as ros
from evse_can_ros.config import ConfigError, param
from evse_can_ros.core.battery import Battery, VehicleInlet
from evse_can_ros.core.controller_sim import ControllerSimConfig, ControllerSimulator, Scenario
from evse_can_ros.core.vehicle import Vehicle, VehicleParams
from evse_can_ros.protocol import (
    CanFrame,
    ControllerState,
    ProtocolError,
    pistol_filter,
)
from evse_can_ros.ros.common import NodeConfigError, start_link
from evse_can_ros.ros.interfaces import LATCHED
from evse_can_ros.ros.params import declare_codec, declare_config
from evse_can_ros.transport import CanLink, LinkConfig

STEP_PERIOD = 0.01
"""s: emulator step (the controller's cyclic messages are 100 ms)."""
PUBLISH_PERIOD = 1.0
NODE_NAME = "controller_simulator"


@dataclass(frozen=True)
class SimLinkConfig(LinkConfig):
    """The link of the simulator: python-can's in-process ``virtual`` bus by default."""

    interface: str = param(
        "virtual", "python-can interface (virtual, socketcan, pcan, kvaser, remote, ...)"
    )


class ControllerSimulatorNode(Node):
    """See module docstring. Raises NodeConfigError for bad parameters.

    ``inlet``: share the vehicle's battery with a simulated converter in the same process.
    """

    def __init__(
        self, node_name: str = NODE_NAME, *, inlet: VehicleInlet | None = None, **kwargs: Any
    ) -> None:
        super().__init__(node_name, **kwargs)
        try:
            self.config = declare_config(self, ControllerSimConfig)
            self.link_config = declare_config(self, SimLinkConfig, prefix="can_")
            vehicle_params = declare_config(self, VehicleParams, prefix="vehicle.")
            self.scenario = declare_config(self, Scenario, prefix="scenario.")
            codec = declare_codec(self)
            if inlet is not None:  # one process: this node's vehicle parameters make the battery
                inlet.battery = Battery(vehicle_params.battery_params())
            self.vehicle = Vehicle(vehicle_params, inlet)
            self.sim = ControllerSimulator(codec, self.config, self.vehicle, self.scenario)
        except (ConfigError, ProtocolError) as exc:
            raise NodeConfigError(str(exc)) from None
        self._lock = threading.Lock()
        self._rx: deque[CanFrame] = deque(maxlen=10_000)
        self._stop = threading.Event()
        self._published_state: ControllerState | None = None
        self._next_publish = 0.0
        self._events_seen = 0

        self.pub_state = self.create_publisher(ros.ControllerState, "simulator/state", LATCHED)
        self.pub_status = self.create_publisher(String, "simulator/status", LATCHED)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_service(Trigger, "simulator/plug_in", self._srv_plug_in)
        self.create_service(Trigger, "simulator/unplug", self._srv_unplug)
        self.create_service(Trigger, "simulator/stop_charge", self._srv_stop_charge)
        self.create_service(Trigger, "simulator/ev_emergency_stop", self._srv_ev_emergency)
        self.create_timer(1.0, self._publish_diagnostics)

        self.link = CanLink(
            self.link_config,
            self._on_frame,
            self._on_link,
            filters=[pistol_filter(self.config.pistol_index)],
        )
        start_link(self, self.link)
        self._thread = threading.Thread(target=self._loop, name="controller-sim", daemon=True)
        self._thread.start()
        p = vehicle_params
        self.get_logger().info(
            f"simulating the controller (interface v{int(self.sim.protocol_version)}) of pistol "
            f"{self.config.pistol_index} on "
            f"{self.link.describe()}: {p.protocol} vehicle, {p.capacity_kwh:g} kWh, "
            f"SoC {self.vehicle.soc:.0f} % -> {p.target_soc:g} %, "
            f"sequence flags {'on' if self.config.use_sequence_flags else 'off'}"
        )

    # --- CAN link -----------------------------------------------------------------------------

    def _on_frame(self, frame: CanFrame, now: float) -> None:
        self._rx.append(frame)

    def _on_link(self, up: bool, reason: str) -> None:
        if up:
            self.get_logger().info(f"CAN link up: {reason}")
        else:
            self.get_logger().error(f"CAN link down: {reason}")

    # --- emulator thread ----------------------------------------------------------------------

    def _loop(self) -> None:
        next_step = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            frames = [self._rx.popleft() for _ in range(len(self._rx))]
            with self._lock:
                out = self.sim.step(now, frames)
                state = self.sim.state
                events = self.sim.events[self._events_seen :]
                self._events_seen = len(self.sim.events)
            for frame in out:
                self.link.send(frame)
            for _, text in events:
                self.get_logger().info(text)
            if state is not self._published_state or now >= self._next_publish:
                self._publish_state(now)
                self._published_state = state
                self._next_publish = now + PUBLISH_PERIOD
            next_step += STEP_PERIOD
            delay = next_step - time.monotonic()
            if delay < -0.1:  # fell far behind (suspended): do not catch up in a burst
                next_step = time.monotonic()
            self._stop.wait(max(0.0, delay))

    def snapshot(self) -> dict[str, Any]:
        """Return what the simulator shows (JSON-able): states, vehicle, energy, result."""
        with self._lock:
            sim, v = self.sim, self.vehicle
            voltage, current = sim.present()
            return {
                "pistol_index": self.config.pistol_index,
                "state": sim.state.label,
                "silent": sim.silent,
                "sessions": sim.sessions,
                "session_result": sim.session_result.label if sim.session_result else "",
                "end_reason": sim.end_reason,
                "emergency": sim.emergency.label if sim.emergency else "",
                "vehicle_phase": v.phase.value,
                "plugged_in": v.plugged_in,
                "contactors_closed": v.contactors_closed,
                "soc": round(v.soc, 2),
                "energy_wh": round(sim.energy_wh, 1),
                "energy_charged_wh": round(v.session_charged_wh, 1),
                "energy_discharged_wh": round(v.session_discharged_wh, 1),
                "protocol_version": int(sim.protocol_version),
                "present_voltage": voltage,
                "present_current": current,
                "rx_errors": sim.rx_errors,
            }

    def _publish_state(self, now: float) -> None:
        snap = self.snapshot()
        msg = ros.ControllerState(
            pistol_index=self.config.pistol_index,
            heartbeat_seen=True,
            alive=not snap["silent"],
            heartbeat_age=0.0,
        )
        msg.header.stamp = self.get_clock().now().to_msg()
        with self._lock:
            state = self.sim.state
        msg.state, msg.state_name = int(state), state.label
        self.pub_state.publish(msg)
        self.pub_status.publish(String(data=json.dumps(snap)))

    # --- services -----------------------------------------------------------------------------

    def _act(self, action: str, resp: Any) -> Any:
        now = time.monotonic()
        with self._lock:
            v = self.vehicle
            if action == "plug_in":
                ok, text = not v.plugged_in, "vehicle plugged in"
                if ok:
                    self.sim.plug_in(now)
            elif action == "unplug":
                ok, text = v.plugged_in, "vehicle unplugged"
                if ok:
                    v.unplug(now)
            elif action == "stop":
                ok, text = v.in_session, "the vehicle stops the charge"
                if ok:
                    v.request_stop(now, "stop requested (service)")
            else:
                ok, text = v.in_session, "EV emergency stop"
                if ok:
                    v.emergency_stop(now, "EV emergency (service)")
        resp.success = ok
        resp.message = text if ok else f"not possible now (vehicle {v.phase.value})"
        return resp

    def _srv_plug_in(self, req: Trigger.Request, resp: Trigger.Response) -> Any:
        return self._act("plug_in", resp)

    def _srv_unplug(self, req: Trigger.Request, resp: Trigger.Response) -> Any:
        return self._act("unplug", resp)

    def _srv_stop_charge(self, req: Trigger.Request, resp: Trigger.Response) -> Any:
        return self._act("stop", resp)

    def _srv_ev_emergency(self, req: Trigger.Request, resp: Trigger.Response) -> Any:
        return self._act("emergency", resp)

    # --- diagnostics --------------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        snap = self.snapshot()
        if snap["emergency"]:
            level, text = DiagnosticStatus.WARN, f"emergency stop ({snap['emergency']})"
        elif not self.link.up:
            level, text = DiagnosticStatus.ERROR, f"CAN link down: {self.link.last_error}"
        else:
            level, text = DiagnosticStatus.OK, f"{snap['state']}, vehicle {snap['vehicle_phase']}"
        status = DiagnosticStatus(
            level=level,
            name=f"{self.get_fully_qualified_name()}: controller simulator",
            hardware_id=f"{self.link_config.interface}:{self.link_config.channel} "
            f"pistol {self.config.pistol_index}",
            message=text,
            values=[KeyValue(key=k, value=str(v)) for k, v in snap.items()],
        )
        arr = DiagnosticArray(status=[status])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(arr)

    # --- shutdown -----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the emulator and release the bus (idempotent; also called by destroy_node)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        self.link.close()

    def destroy_node(self) -> None:
        """Stop the threads before the node goes away."""
        if hasattr(self, "_thread"):
            self.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Run the controller_simulator node; exit code 2 with a one-line error for bad parameters."""
    return _run(args, [], None)


def _run(args: list[str] | None, overrides: list[Parameter], duration: float | None) -> int:
    from evse_can_ros.ros.node_main import run_node

    return run_node(
        ControllerSimulatorNode,
        NODE_NAME,
        args,
        duration=duration,
        on_exit=None if duration is None else lambda node: print(json.dumps(node.snapshot())),
        parameter_overrides=overrides,
    )


def run_simulator(argv: list[str] | None = None) -> int:
    """CLI entry (``evse-can-ros simulate``): run the simulator with friendly options.

    ``--set NAME=VALUE`` sets any node parameter (``vehicle.protocol=CHADEMO_V2_0``,
    ``scenario.unplug_after=5.0``); values are parsed as YAML scalars. Arguments after
    ``--ros-args`` go to rclpy unchanged. Returns the exit code (2 for bad parameters).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    ros_args: list[str] = []
    if "--ros-args" in argv:
        i = argv.index("--ros-args")
        argv, ros_args = argv[:i], argv[i:]
    opts = _simulate_parser().parse_args(argv)
    values: dict[str, Any] = {}
    version = opts.protocol_version
    if version not in (None, "2", "3"):
        print(
            f"{NODE_NAME}: error: --protocol-version must be 2 or 3, got {version!r}",
            file=sys.stderr,
        )
        return 2
    for name, option in (
        ("protocol_version", None if version is None else int(version)),
        ("can_interface", opts.interface),
        ("can_channel", opts.channel),
        ("can_bitrate", opts.bitrate),
        ("pistol_index", opts.pistol),
        ("vehicle.protocol", opts.protocol),
        ("vehicle.initial_soc", opts.soc),
        ("vehicle.target_soc", opts.target_soc),
        ("vehicle.soc_time_scale", opts.time_scale),
    ):
        if option is not None:
            values[name] = option
    if opts.sessions:
        values["scenario.replug_delay"] = 5.0
    for item in opts.set:
        name, sep, text = item.partition("=")
        if not sep or not name:
            print(f"{NODE_NAME}: error: --set needs NAME=VALUE, got {item!r}", file=sys.stderr)
            return 2
        values[name.strip()] = _scalar(text.strip())
    overrides = [Parameter(k, value=v) for k, v in values.items()]
    return _run([sys.argv[0], *ros_args], overrides, opts.duration)


def _simulate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evse-can-ros simulate",
        description="Emulate the Advantics charge controller and a vehicle on a CAN bus.",
    )
    parser.add_argument("--interface", help="python-can interface (default: virtual)")
    parser.add_argument("--channel", help="python-can channel (e.g. vcan0)")
    parser.add_argument("--bitrate", type=int, help="bit/s; 0 = leave the interface setting")
    parser.add_argument("--pistol", type=int, help="pistol index 1..31")
    parser.add_argument("--protocol-version", help="interface version: 2 (default) or 3")
    parser.add_argument("--protocol", help="vehicle protocol, e.g. CCS_ISO_15118_2013_V2")
    parser.add_argument("--soc", type=float, help="initial SoC [%%]")
    parser.add_argument("--target-soc", type=float, help="SoC at which the vehicle stops [%%]")
    parser.add_argument("--time-scale", type=float, help="vehicle.soc_time_scale")
    parser.add_argument("--sessions", action="store_true", help="re-plug after each session")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="any node parameter"
    )
    return parser


def _scalar(text: str) -> Any:
    """Parse a parameter value like ``ros2 param set`` (YAML scalar; strings stay strings)."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (bool, int, float, str)) else text
