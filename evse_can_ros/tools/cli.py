"""The ``evse-can-ros`` command.

Errors are reported as one line on stderr with a non-zero exit code (2 = bad usage or input,
1 = the operation failed, 130 = interrupted); tracebacks are for bugs only. Subcommands that
need ROS import it lazily (this module must not import rclpy: see test_architecture.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Callable, Sequence

from evse_can_ros import __version__
from evse_can_ros.nodeset import DEFAULT_PISTOL_NAMESPACE as PISTOL_NS
from evse_can_ros.nodeset import ChargerOptions, NodeSetError, parse_pistols
from evse_can_ros.protocol import ProtocolError


class CliError(Exception):
    """A user-facing error: printed as one line, exit code ``code``."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


Command = Callable[[argparse.Namespace], int]


# --- smoke ------------------------------------------------------------------------------------


def _add_smoke(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "smoke",
        help="check that rclpy and the generated interfaces work (local DDS only)",
        description="Create a node, publish a ControllerState message to itself over DDS on "
        "this machine and check it arrives.",
    )
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait (default 10)")
    p.set_defaults(func=_cmd_smoke)


def _cmd_smoke(args: argparse.Namespace) -> int:
    from evse_can_ros.ros.smoke import run_smoke  # rclpy only when needed

    return int(run_smoke(timeout=args.timeout))


# --- charge / status --------------------------------------------------------------------------


def _add_charge(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "charge",
        help="charge the vehicle on a pistol (Charge action) with live progress",
        description="Send one Charge goal and follow it. Ctrl-C cancels the goal "
        "(User_Stop_Button) and waits for the session to end; a second Ctrl-C leaves at once. "
        "Exit code 0 when the charge ended without error.",
    )
    p.add_argument(
        "-n", "--namespace", default=PISTOL_NS, help=f"pistol namespace (default {PISTOL_NS})"
    )
    add_goal_arguments(p)
    p.add_argument(
        "--server-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="wait this long for the charge server (default 10)",
    )
    p.set_defaults(func=_cmd_charge)


def add_goal_arguments(p: argparse.ArgumentParser, target_soc: float = 0.0) -> None:
    """Add the Charge goal options (shared by ``charge`` and ``sim``).

    Long: a declarative list of options, one per goal field.
    """
    p.add_argument(
        "--target-soc",
        type=float,
        default=target_soc,
        metavar="PCT",
        help="end at this SoC [%%] (0 = the vehicle decides)",
    )
    p.add_argument(
        "--max-energy",
        type=float,
        default=0.0,
        metavar="KWH",
        help="end after this energy [kWh] (default: no limit)",
    )
    p.add_argument(
        "--max-duration",
        type=float,
        default=0.0,
        metavar="S",
        help="end after this time charging [s] (default: no limit)",
    )
    p.add_argument(
        "--plug-in-timeout",
        type=float,
        default=300.0,
        metavar="S",
        help="give up if no vehicle session opens in time [s]; 0 = wait forever (default 300)",
    )
    p.add_argument(
        "--max-voltage",
        type=float,
        default=0.0,
        metavar="V",
        help="session voltage limit [V] (default: controller config)",
    )
    p.add_argument(
        "--max-current",
        type=float,
        default=0.0,
        metavar="A",
        help="session current limit [A] (default: controller config)",
    )
    p.add_argument(
        "--max-power",
        type=float,
        default=0.0,
        metavar="KW",
        help="session power limit [kW] (default: none)",
    )
    p.add_argument(
        "--max-discharge-current",
        type=float,
        default=0.0,
        metavar="A",
        help="V2G (--protocol-version 3): take up to this current from the vehicle (default 0)",
    )
    p.add_argument(
        "--min-soc",
        type=float,
        default=0.0,
        metavar="PCT",
        help="V2G: discharge down to this SoC [%%], then charge (default: the vehicle's minimum)",
    )
    p.add_argument(
        "--no-authorise-start", action="store_true", help="do not send Start_Charge_Authorisation"
    )
    p.add_argument(
        "--refuse-ccs-authorisation",
        action="store_true",
        help="answer the CCS authorisation with Invalid",
    )
    p.add_argument(
        "--no-chademo-start", action="store_true", help="do not emulate the CHAdeMO start button"
    )


def goal_values(args: argparse.Namespace) -> dict[str, float | bool]:
    """Charge goal fields (SI units) from the command-line options, validated."""
    from evse_can_ros.config import ConfigError
    from evse_can_ros.core.charge_session import validate_goal
    from evse_can_ros.protocol import ProtocolVersion

    values: dict[str, float | bool] = {
        "target_soc": args.target_soc,
        "max_energy": args.max_energy * 1000.0,
        "max_duration": args.max_duration,
        "plug_in_timeout": args.plug_in_timeout,
        "max_voltage": args.max_voltage,
        "max_current": args.max_current,
        "max_power": args.max_power * 1000.0,
        "max_discharge_current": args.max_discharge_current,
        "min_soc": args.min_soc,
        "authorise_start": not args.no_authorise_start,
        "accept_ccs_authorisation": not args.refuse_ccs_authorisation,
        "press_chademo_start": not args.no_chademo_start,
    }
    version = ProtocolVersion(getattr(args, "protocol_version", None) or 3)
    try:  # the charge server checks the version; here only what needs none
        validate_goal(version, **values)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    return values


def _cmd_charge(args: argparse.Namespace) -> int:
    values = goal_values(args)
    from evse_can_ros.ros.charge_client import ChargeRequest, run_charge

    code, _ = run_charge(ChargeRequest(args.namespace, values, server_timeout=args.server_timeout))
    return int(code)


def _add_status(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "status", help="show a pistol's state (controller, availability, power stage, vehicle)"
    )
    p.add_argument(
        "-n", "--namespace", default=PISTOL_NS, help=f"pistol namespace (default {PISTOL_NS})"
    )
    p.add_argument("-w", "--watch", action="store_true", help="refresh every second until Ctrl-C")
    p.set_defaults(func=_cmd_status)


def _cmd_status(args: argparse.Namespace) -> int:
    from evse_can_ros.ros.charge_client import run_status

    return int(run_status(args.namespace, args.watch))


# --- decode -----------------------------------------------------------------------------------


def _add_decode(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "decode",
        help="decode candump-style frames (ID#DATA) with the CAN database",
        description="Decode frames given as candump-style ID#DATA, e.g. 01068009#07.",
    )
    p.add_argument("frames", nargs="+", metavar="ID#DATA")
    p.add_argument(
        "--pistol",
        "--pistol-index",  # the former name, still accepted
        dest="pistol",
        type=int,
        default=None,
        help="only accept this pistol index",
    )
    p.add_argument("--database", default=None, help="CAN database (.dbc/.kcd); default: packaged")
    p.set_defaults(func=_cmd_decode)


def _cmd_decode(args: argparse.Namespace) -> int:
    from evse_can_ros.protocol import as_dict, load_codec
    from evse_can_ros.tools.frames import parse_frame

    codec = load_codec(args.database)
    status = 0
    for text in args.frames:
        frame = parse_frame(text)
        try:
            message = codec.decode(frame, args.pistol)
        except ProtocolError as exc:
            print(f"{text}: {exc}")
            status = 1
            continue
        pistol = frame.arbitration_id >> 24
        print(f"{text}: pistol {pistol} {message.NAME} {as_dict(message)}")
    return status


# --- run / sim --------------------------------------------------------------------------------


def _add_charger_arguments(p: argparse.ArgumentParser, sim: bool) -> None:
    """Options of the charger's node set (the launch file's arguments, same names)."""
    from evse_can_ros.nodeset import DEFAULT_NAMESPACE, LOG_LEVELS

    p.add_argument(
        "--namespace",
        default=DEFAULT_NAMESPACE,
        help="charger namespace; pistol N lives in /<namespace>/pistolN "
        f"(default {DEFAULT_NAMESPACE})",
    )
    p.add_argument(
        "--pistols",
        default="1",
        metavar="LIST",
        help="pistol indices on this bus, e.g. 1 or 1,2 or 1-4 (default 1)",
    )
    default_if = "virtual" if sim else None
    p.add_argument(
        "--can-interface",
        default=default_if,
        help="python-can interface: socketcan, virtual, pcan, kvaser, udp_multicast ... "
        + (
            "(default virtual: in-process bus)"
            if sim
            else "(default: params file, else socketcan)"
        ),
    )
    p.add_argument(
        "--can-channel",
        default=None,
        help="bus channel, e.g. can0, vcan0 "
        + (
            "(default: a fresh in-process channel)" if sim else "(default: params file, else can0)"
        ),
    )
    p.add_argument("--can-bitrate", type=int, default=None, help="bit/s (0 = interface default)")
    p.add_argument(
        "--params-file",
        default="",
        help="ROS 2 parameters YAML for every node; a bare name (sim_v2g.yaml) is looked up "
        "in the package's config folder",
    )
    p.add_argument(
        "--converter-backend", default=None, help="power-module backend (default simulated)"
    )
    p.add_argument(
        "--protocol-version",
        type=int,
        choices=(2, 3),
        default=None,
        help="Generic EVSE CAN interface version of every node (default: params file, else 2)",
    )
    p.add_argument(
        "--auto-activate",
        choices=("true", "false"),
        default=None,
        help="configure+activate the converter driver at start (default true)",
    )
    p.add_argument("--log-level", choices=LOG_LEVELS, default="warn" if sim else "info")


def charger_options(args: argparse.Namespace, sim: bool) -> ChargerOptions:
    """ChargerOptions from the command line (CliError for bad values)."""
    import os

    if args.params_file and not os.path.isfile(args.params_file):
        from evse_can_ros.tools.resources import config_file

        try:  # a packaged configuration by name (e.g. sim_v2g.yaml)
            if os.sep in args.params_file:
                raise FileNotFoundError(args.params_file)
            args.params_file = str(config_file(args.params_file))
        except FileNotFoundError:
            raise CliError(f"params file {args.params_file} not found") from None
    channel = args.can_channel
    if sim and channel is None and args.can_interface == "virtual":
        channel = f"evse-sim-{os.getpid()}"
    try:
        return ChargerOptions(
            namespace=args.namespace,
            pistols=parse_pistols(args.pistols),
            can_interface=args.can_interface,
            can_channel=channel,
            can_bitrate=args.can_bitrate,
            converter_backend=args.converter_backend,
            protocol_version=args.protocol_version,
            sim=sim or bool(getattr(args, "sim", False)),
            auto_activate=None if args.auto_activate is None else args.auto_activate == "true",
            params_file=args.params_file,
            log_level=args.log_level,
        )
    except NodeSetError as exc:
        raise CliError(str(exc)) from None


def _add_run(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "run",
        help="run the charger's nodes in one process (what charger.launch.py starts)",
        description="Start can_bridge, converter_driver and charge_server for each pistol "
        "(and controller_simulator with --sim) in one process, one executor, until Ctrl-C. "
        "Same node set and parameters as `ros2 launch evse_can_ros charger.launch.py`.",
    )
    _add_charger_arguments(p, sim=False)
    p.add_argument(
        "--sim", action="store_true", help="add the controller + vehicle simulator per pistol"
    )
    p.set_defaults(func=_cmd_run)


def _python_log_level(level: str) -> None:
    """Apply the ROS log level to the pure cores' Python logging too."""
    logging.getLogger().setLevel(
        {"warn": "WARNING", "fatal": "CRITICAL"}.get(level, level.upper())
    )


def _cmd_run(args: argparse.Namespace) -> int:
    options = charger_options(args, sim=False)
    _python_log_level(options.log_level)
    from evse_can_ros.ros.charger import ChargerError, run_charger

    try:
        return int(run_charger(options))
    except ChargerError as exc:
        raise CliError(str(exc), code=2) from None


def _add_sim(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "sim",
        help="simulated charger + vehicle in one process: one complete charge, then exit",
        description="Start the charger with the controller + vehicle simulator on an "
        "in-process virtual CAN bus, charge the simulated vehicle through the Charge action "
        "with live progress, print the result. Exit code 0 when the charge succeeded.",
    )
    _add_charger_arguments(p, sim=True)
    add_goal_arguments(p, target_soc=80.0)
    p.set_defaults(func=_cmd_sim)


def _cmd_sim(args: argparse.Namespace) -> int:
    options = charger_options(args, sim=True)
    values = goal_values(args)
    _python_log_level(options.log_level)
    if not args.params_file:
        from evse_can_ros.tools.resources import config_file

        options = dataclasses.replace(options, params_file=str(config_file("sim.yaml")))
    from evse_can_ros.ros.charger import ChargerError, run_sim

    try:
        return int(run_sim(options, values))
    except ChargerError as exc:
        raise CliError(str(exc), code=2) from None


def _add_simulate(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "simulate",
        help="run only the controller + vehicle simulator on a CAN bus",
        description="Play the Advantics controller and a vehicle on any python-can bus (e.g. "
        "vcan0 or loopback) against a charger started elsewhere. Options: `evse-can-ros "
        "simulate --help`.",
    )
    p.set_defaults(func=lambda _args: _run_simulate([]))


def _run_simulate(argv: list[str]) -> int:
    from evse_can_ros.ros.controller_sim_node import run_simulator

    try:
        return int(run_simulator(argv))
    except KeyboardInterrupt:
        return 130


def _add_simulate_modules(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from evse_can_ros.config import describe
    from evse_can_ros.converter.infypower.emulator import EmulatorParams

    p = sub.add_parser(
        "simulate-modules",
        help="play N InfyPower power modules on a CAN bus (for converter_backend infypower)",
        description="Emulate InfyPower REG/CEG modules on a python-can bus: replies per the "
        "protocol, the modules' 10 s cut-off, status bits, an output with a cable or a battery, "
        "and a scheduled fault (e.g. --fault drop_out --fault-module 3 --fault-delay 20). Run a "
        "charger with converter_backend infypower on the same bus.",
    )
    p.add_argument("--interface", default="socketcan", help="python-can interface")
    p.add_argument("--channel", default="can1", help="the modules' bus (default can1)")
    p.add_argument("--bitrate", type=int, default=0, help="bit/s (0 = interface setting)")
    p.add_argument(
        "--duration", type=float, default=0.0, metavar="S", help="stop after S s (0 = Ctrl-C)"
    )
    p.add_argument(
        "--status-period",
        type=float,
        default=1.0,
        metavar="S",
        help="print the output every S s (0 = quiet)",
    )
    for e in describe(EmulatorParams):
        flag = "--" + e["name"].replace("_", "-")
        unit = f" [{e['unit']}]" if e.get("unit") else ""
        text = f"{e['description']}{unit}"
        default = e["default"]
        if isinstance(default, bool):
            if default:
                p.add_argument(
                    "--no-" + flag[2:], dest=e["name"], action="store_false", help=f"not: {text}"
                )
            else:
                p.add_argument(flag, dest=e["name"], action="store_true", help=text)
            continue
        p.add_argument(
            flag,
            dest=e["name"],
            type=type(default),
            default=default,
            choices=e.get("choices"),
            help=f"{text} (default {default})",
        )
    p.set_defaults(func=_cmd_simulate_modules)


def _cmd_simulate_modules(args: argparse.Namespace) -> int:
    import time

    from evse_can_ros.config import ConfigError, describe, from_mapping
    from evse_can_ros.converter.infypower.emulator import EmulatorParams, ModuleEmulator
    from evse_can_ros.converter.infypower.sim import ModuleEmulatorRunner

    values = {e["name"]: getattr(args, e["name"]) for e in describe(EmulatorParams)}
    try:
        params = from_mapping(EmulatorParams, values)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    emulator = ModuleEmulator(params)
    runner = ModuleEmulatorRunner(emulator, args.interface, args.channel, args.bitrate)
    try:
        runner.start()
    except ConfigError as exc:
        raise CliError(str(exc), code=1) from None
    a = params.addresses
    print(
        f"{params.modules} InfyPower module(s), addresses {a[0]}..{a[-1]}, group {params.group}, "
        f"{params.min_voltage:g}-{params.max_voltage:g} V {params.max_current:g} A "
        f"{params.rated_power / 1000:g} kW each, on {args.interface}:{args.channel}"
        + ("" if args.duration else "; Ctrl-C to stop"),
        flush=True,
    )
    started = time.monotonic()
    next_status = started + args.status_period if args.status_period > 0 else None
    try:
        while not args.duration or time.monotonic() - started < args.duration:
            time.sleep(0.05)
            if next_status is not None and time.monotonic() >= next_status:
                next_status += args.status_period
                with runner.lock:
                    on = [m.address for m in emulator.modules.values() if m.on]
                    faults = [
                        f"{m.address}:{'+'.join(sorted(m.faults))}"
                        for m in emulator.modules.values()
                        if m.faults
                    ]
                    line = (
                        f"{time.monotonic() - started:7.1f} s  {emulator.voltage:6.1f} V "
                        f"{emulator.current:6.1f} A  on: {','.join(map(str, on)) or '-'}"
                        f"  faults: {' '.join(faults) or '-'}"
                    )
                print(line, flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        runner.close()
    return 0


def _add_bus_hub(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "bus-hub",
        help="run the CAN loopback hub (can_interface loopback: nodes in separate processes)",
        description="Forward CAN frames between every `loopback` bus on this TCP port "
        "(127.0.0.1 only) until Ctrl-C. Optional: the first loopback bus starts a hub itself.",
    )
    p.add_argument(
        "--port", type=int, default=29536, help="TCP port = can_channel (default 29536)"
    )
    p.set_defaults(func=_cmd_bus_hub)


def _cmd_bus_hub(args: argparse.Namespace) -> int:
    from evse_can_ros.transport.loopback import HOST, LoopbackHub, port_of

    try:
        hub = LoopbackHub(port_of(args.port))
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot start the hub on port {args.port}: {exc}", code=1) from None
    print(f"CAN loopback hub on {HOST}:{hub.port}; Ctrl-C to stop", flush=True)
    hub.serve_forever()
    return 0


# --- record / replay / plot -------------------------------------------------------------------


def _add_record(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "record",
        help="record a pistol (raw CAN frames + decoded topics) to a rosbag2",
        description="Subscribe to the pistol's raw CAN frames (turning publish_raw_frames on in "
        "the bridge) and to every decoded and power-side topic, and write them to a rosbag2 "
        "(mcap by default) until Ctrl-C or --duration.",
    )
    p.add_argument("output", help="bag to create (a directory; must not exist)")
    p.add_argument(
        "-n", "--namespace", default=PISTOL_NS, help=f"pistol namespace (default {PISTOL_NS})"
    )
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    p.add_argument(
        "--duration",
        type=float,
        default=0.0,
        metavar="S",
        help="stop after this time (default: until Ctrl-C)",
    )
    p.add_argument("--bridge-node", default="can_bridge", help="bridge node name in the namespace")
    p.set_defaults(func=_cmd_record)


def _cmd_record(args: argparse.Namespace) -> int:
    from pathlib import Path

    if Path(args.output).exists():
        raise CliError(f"{args.output} exists already; choose a new name")
    from evse_can_ros.ros.recording_cli import run_record

    return int(
        run_record(args.output, args.namespace, args.storage, args.duration, args.bridge_node)
    )


def _add_replay(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "replay",
        help="replay a session (bag or CAN log) onto a CAN bus, or decode it offline",
        description="Replay the controller's frames of a recorded session (our bags, "
        "ros2_socketcan bags of can_msgs/Frame, candump -l, ASC, BLF, TRC logs) onto a CAN bus at "
        "the original timing (--speed), or decode the session offline into a new bag of typed "
        "topics (--to-bag) or onto stdout (--print), without any bus.",
    )
    p.add_argument("input", help="bag directory/file or CAN log")
    p.add_argument("--can-interface", default="socketcan", help="python-can interface (bus mode)")
    p.add_argument("--can-channel", default="vcan0", help="python-can channel (bus mode)")
    p.add_argument("--speed", type=float, default=1.0, help="time factor, 2 = twice as fast")
    p.add_argument(
        "--direction",
        choices=("controller", "all"),
        default="controller",
        help="replay only the controller's frames (default) or everything",
    )
    p.add_argument("--pistol", type=int, default=None, help="only this pistol index")
    p.add_argument(
        "--to-bag",
        default=None,
        metavar="BAG",
        help="decode offline into this new bag instead of using a bus",
    )
    p.add_argument("-n", "--namespace", default="", help="topic namespace in --to-bag output")
    p.add_argument("--print", action="store_true", help="decode offline and print the messages")
    p.set_defaults(func=_cmd_replay)


def _report_problems(session: object) -> int:
    problems = getattr(session, "problems", [])
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from evse_can_ros.transport.sessionlog import read_session

    session = read_session(args.input)
    status = _report_problems(session)
    if not session.frames:
        raise CliError(f"nothing to replay in {args.input}", code=1)
    if args.print:
        from evse_can_ros.protocol import as_dict, load_codec

        codec = load_codec()
        t0 = session.frames[0].t
        for tf in session.frames:
            try:
                msg = codec.decode(tf.frame, args.pistol)
                text = f"{msg.NAME} {as_dict(msg)}"
            except ProtocolError as exc:
                text = f"({exc})"
            print(f"{tf.t - t0:10.3f} {tf.frame}  {text}")
        return status
    if args.to_bag:
        from pathlib import Path

        if Path(args.to_bag).exists():
            raise CliError(f"{args.to_bag} exists already; choose a new name")
        from evse_can_ros.ros.recording import decode_to_bag

        decoded = decode_to_bag(session, args.to_bag, args.pistol, args.namespace)
        print(
            f"decoded {decoded.frames} frames into {decoded.messages} messages "
            f"({decoded.foreign} foreign, {decoded.malformed} malformed) -> {args.to_bag}"
        )
        return status
    import can

    from evse_can_ros.tools.replay import replay_to_bus, select_frames

    frames = select_frames(session, args.direction, args.pistol)
    try:
        bus = can.Bus(interface=args.can_interface, channel=args.can_channel)
    except (can.CanError, OSError, ValueError, ImportError) as exc:
        raise CliError(
            f"cannot open {args.can_interface}:{args.can_channel}: {exc}", code=1
        ) from None
    try:
        span = frames[-1].t - frames[0].t if frames else 0.0
        print(
            f"replaying {len(frames)} frames ({span:.1f} s recorded) at x{args.speed:g} on "
            f"{args.can_interface}:{args.can_channel}"
        )
        stats = replay_to_bus(frames, bus, args.speed)
    finally:
        bus.shutdown()
    print(f"sent {stats.sent} frames in {stats.duration:.1f} s ({stats.failed} failed)")
    return 1 if stats.failed else status


def _add_plot(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "plot",
        help="plot a session (bag or CAN log) to a PNG",
        description="Voltage, current, power and SoC over time with the controller state as "
        "coloured bands and fault markers.",
    )
    p.add_argument("input", help="bag directory/file or CAN log")
    p.add_argument("-o", "--output", default=None, help="PNG file (default: <input>.png)")
    p.add_argument("--pistol", type=int, default=None, help="pistol index (default: busiest)")
    p.add_argument("--title", default=None, help="plot title")
    p.set_defaults(func=_cmd_plot)


def _cmd_plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from evse_can_ros.tools.plot import plot_session
    from evse_can_ros.transport.sessionlog import read_session

    session = read_session(args.input)
    status = _report_problems(session)
    if not session.frames:
        raise CliError(f"nothing to plot in {args.input}", code=1)
    output = args.output or str(Path(args.input).with_suffix("")) + ".png"
    series = plot_session(session, output, args.pistol, args.title)
    print(
        f"{output}: pistol {series.pistol}, {series.duration:.0f} s, "
        f"{series.energy_kwh:.2f} kWh, {len(series.faults)} fault marker(s)"
    )
    return status


SUBCOMMANDS = (
    _add_sim,
    _add_run,
    _add_charge,
    _add_status,
    _add_record,
    _add_replay,
    _add_plot,
    _add_decode,
    _add_simulate,
    _add_simulate_modules,
    _add_bus_hub,
    _add_smoke,
)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="evse-can-ros",
        description="ROS 2 customer side of the Advantics Generic EVSE CAN interface v2.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``evse-can-ros`` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["simulate"]:  # its own parser (all of its options pass through)
        return _run_simulate(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    func: Command = args.func
    try:
        return int(func(args))
    except (CliError, ProtocolError) as exc:
        print(f"evse-can-ros {args.command}: error: {exc}", file=sys.stderr)
        return exc.code if isinstance(exc, CliError) else 2
    except KeyboardInterrupt:
        print(f"evse-can-ros {args.command}: interrupted", file=sys.stderr)
        return 130
