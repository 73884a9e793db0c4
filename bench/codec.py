"""Benchmark 1: codec encode and decode rate (frames/s) for the main messages.

Single thread, no ROS. For every message: ``Codec.encode(dataclass, pistol)`` (strict range
checks), ``Codec.decode(frame, pistol)`` (format, pistol, id and DLC checks + typed dataclass)
and, for comparison, the bare cantools decode that the codec builds on. Each figure is the best of
``--repeat`` timed runs of ``--seconds`` each (best = least disturbed by other load).

    python bench/codec.py [--json FILE]
"""

from __future__ import annotations

import time
from collections.abc import Callable

import benchlib

from evse_can_ros.protocol import (
    AdmCsSeccInputs,
    AdvanticsControllerStatus,
    CanMessage,
    CcsExtraInformation,
    ChargingLoop,
    CommunicationProtocol,
    ControllerState,
    CpState,
    EmergencyStop,
    EmergencyStopOrigin,
    NewChargeSession,
    Permission,
    PlugAndPins,
    PowerModulesLimits,
    PowerModulesStatus,
    SequenceControl,
    load_codec,
)

PISTOL = 3
MESSAGES: list[CanMessage] = [
    # sent by us
    PowerModulesStatus(400.0, 125.5, 35.0, 30.0, Permission.ALLOWED, 500.0),
    PowerModulesLimits(920.0, 500.0),
    SequenceControl(),
    # sent by the controller
    AdvanticsControllerStatus(ControllerState.CHARGING),
    ChargingLoop(400.0, 125.0, 55),
    NewChargeSession(
        CommunicationProtocol.CCS_ISO_15118_2013_V2,
        PlugAndPins.CCS_DC_CORE,
        500.0,
        200.0,
        77.0,
        20,
    ),
    EmergencyStop(EmergencyStopOrigin.EVSE),
    CcsExtraInformation(CpState.C, 5.0),
    AdmCsSeccInputs(True, False, True, False, 45.0, 30.0, 31.0),
]


def timed_rate(fn: Callable[[], object], seconds: float, repeat: int) -> float:
    """Best calls/s of ``repeat`` runs of about ``seconds`` each."""
    batch = 200
    best = 0.0
    for _ in range(repeat):
        n = 0
        t0 = time.perf_counter()
        deadline = t0 + seconds
        while True:
            for _ in range(batch):
                fn()
            n += batch
            t = time.perf_counter()
            if t >= deadline:
                break
        best = max(best, n / (t - t0))
    return best


def main() -> int:
    p = benchlib.base_parser(__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=0.4, help="length of one timed run")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per figure (best is kept)")
    args = p.parse_args()
    codec = load_codec()
    report = benchlib.Report("codec (frames/s, one thread, best of runs)")
    for message in MESSAGES:
        frame = codec.encode(message, PISTOL)
        assert codec.decode(frame, PISTOL) is not None
        spec = codec.spec(message.NAME)
        db_message = spec.db_message
        data = frame.data
        enc = timed_rate(lambda m=message: codec.encode(m, PISTOL), args.seconds, args.repeat)
        dec = timed_rate(lambda f=frame: codec.decode(f, PISTOL), args.seconds, args.repeat)
        raw = timed_rate(
            lambda d=data, m=db_message: m.decode(d, decode_choices=False, scaling=False),
            args.seconds,
            args.repeat,
        )
        report.add(f"{message.NAME} encode", enc, "frames/s", note=f"{1e6 / enc:.1f} us/frame")
        report.add(f"{message.NAME} decode", dec, "frames/s", note=f"{1e6 / dec:.1f} us/frame")
        report.add(
            f"{message.NAME} cantools raw decode",
            raw,
            "frames/s",
            note=f"{1e6 / raw:.1f} us/frame (codec overhead {1e6 / dec - 1e6 / raw:.1f} us)",
        )
    return report.finish(args)


if __name__ == "__main__":
    raise SystemExit(main())
