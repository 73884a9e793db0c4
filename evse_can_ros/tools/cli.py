"""The ``evse-can-ros`` command.

Errors are reported as one line on stderr with a non-zero exit code (2 = bad usage or input,
1 = the operation failed, 130 = interrupted); tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from evse_can_ros import __version__
from evse_can_ros.protocol import ProtocolError


class CliError(Exception):
    """A user-facing error: printed as one line, exit code ``code``."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


Command = Callable[[argparse.Namespace], int]


def _cmd_smoke(args: argparse.Namespace) -> int:
    from evse_can_ros.ros.smoke import run_smoke  # rclpy only when needed

    return int(run_smoke(timeout=args.timeout))


def _cmd_decode(args: argparse.Namespace) -> int:
    from evse_can_ros.protocol import as_dict, load_codec
    from evse_can_ros.tools.frames import parse_frame

    codec = load_codec(args.database)
    status = 0
    for text in args.frames:
        frame = parse_frame(text)
        try:
            message = codec.decode(frame, args.pistol_index)
        except ProtocolError as exc:
            print(f"{text}: {exc}")
            status = 1
            continue
        pistol = frame.arbitration_id >> 24
        print(f"{text}: pistol {pistol} {message.NAME} {as_dict(message)}")
    return status


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="evse-can-ros",
        description="ROS 2 customer side of the Advantics Generic EVSE CAN interface v2.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "smoke",
        help="check that rclpy and the generated interfaces work (local DDS only)",
        description="Create a node, publish a ControllerState message to itself over "
        "DDS on this machine and check it arrives.",
    )
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait (default 10)")
    p.set_defaults(func=_cmd_smoke)

    p = sub.add_parser(
        "decode",
        help="decode candump-style frames (ID#DATA) with the CAN database",
        description="Decode frames given as candump-style ID#DATA, e.g. 01068009#07.",
    )
    p.add_argument("frames", nargs="+", metavar="ID#DATA")
    p.add_argument("--pistol-index", type=int, default=None, help="only accept this pistol index")
    p.add_argument("--database", default=None, help="CAN database (.dbc/.kcd); default: packaged")
    p.set_defaults(func=_cmd_decode)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``evse-can-ros`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    func: Command = args.func
    try:
        return func(args)
    except CliError as exc:
        print(f"evse-can-ros {args.command}: error: {exc}", file=sys.stderr)
        return exc.code
    except ProtocolError as exc:
        print(f"evse-can-ros {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"evse-can-ros {args.command}: interrupted", file=sys.stderr)
        return 130
