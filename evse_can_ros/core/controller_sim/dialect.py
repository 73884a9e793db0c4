"""What the emulated controller sends at each step of the sequence, per interface version.

The states and transitions (spec 8, :mod:`.transitions`) are the same in v2 and v3. What differs
is which frames each step of the sequence puts on the bus (spec 9 and 11.1 for v2, v3 digest 5-6
for v3): the transitions name the step (:class:`Step`), the dialect of the codec's interface
version turns it into frames. This module holds the steps, the dialect interface and the v2
table; :mod:`.dialect_v3` holds v3 (DC_Power_Control, EV_Information_*, OCPP_Control).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING

from evse_can_ros.protocol import (
    CanMessage,
    ChargingLoop,
    InsulationTest,
    Precharge,
    ProtocolVersion,
)

if TYPE_CHECKING:
    from evse_can_ros.core.controller_sim.state import SimState


class Step(Enum):
    """A point of the sequence where the controller sends power commands (value: spec)."""

    SESSION_INFO = "9.4 step 10: New_Charge_Session, repeated until System_Enable = Allowed"
    POWER_READY = "9.5 step 14: System_Enable = Allowed, standby before the insulation test"
    INSULATION_TEST = "9.5 step 15: one iteration at the test voltage (every 100 ms)"
    RAMP_DOWN = "9.5 step 18: test passed, output to <= 20 V (every 100 ms)"
    INSULATION_FAILED = "9.5 step 17: test failed or timed out (the abort follows)"
    PRECHARGE = "9.6 step 20: the vehicle's precharge request (every 100 ms)"
    PRECHARGE_END = "9.6 step 23: the vehicle asks for something else"
    START_OF_CHARGE = "9.7 step 25: Waiting_For_Charge, after Charge_Started"
    CHARGE = "9.8 step 27: the vehicle's current demand (every charging_loop_period)"
    END_OF_CHARGE = "9.9 step 31: Ending_Charge, after Charge_Stopped"
    ABORT = "abort with a power function possibly active (spec 8: undocumented)"
    CLOSING = "9.10 step 35: entering Closing_Communication, after Charge_Session_Finished"


Frames = Callable[["SimState"], list[CanMessage]]


class Dialect:
    """The frames of one interface version (the v2 table below; :class:`DialectV3` for v3).

    ``frames(now, step)`` is called by the shared transitions and cyclic messages;
    :meth:`cyclic` adds what only this version sends periodically; :meth:`clear` forgets the
    session.
    """

    version = ProtocolVersion.V2

    def __init__(self, sim: SimState) -> None:
        self.sim = sim

    def frames(self, now: float, step: Step) -> list[CanMessage]:
        """Return the messages of ``step`` now (in order), [] if the version sends none."""
        return V2_FRAMES[step](self.sim)

    def cyclic(self, now: float) -> None:
        """Send this version's own periodic messages (none in v2)."""

    def clear(self) -> None:
        """Forget the session (called whenever the emulator clears its session)."""


def _standby(sim: SimState) -> list[CanMessage]:
    return [ChargingLoop(0.0, 0.0, sim._soc())]


def _optional(message: CanMessage | None) -> list[CanMessage]:
    return [] if message is None else [message]


V2_FRAMES: dict[Step, Frames] = {
    Step.SESSION_INFO: lambda s: [s.vehicle.session_info()],  # 6.6
    Step.POWER_READY: _standby,  # 9.5 step 14: Charging_Loop (0, 0)
    Step.INSULATION_TEST: lambda s: [InsulationTest(s.test_voltage)],  # 9.5 step 15
    Step.RAMP_DOWN: lambda s: [InsulationTest(0.0), *_standby(s)],  # 9.5 step 18
    Step.INSULATION_FAILED: lambda s: [InsulationTest(0.0)],  # 9.5 step 17
    Step.PRECHARGE: lambda s: _optional(s.vehicle.precharge_request()),  # 9.6 step 20
    Step.PRECHARGE_END: lambda s: [Precharge(s._precharge_target(), 0.0), *_standby(s)],  # 23
    Step.START_OF_CHARGE: _standby,  # 9.7 step 25
    Step.CHARGE: lambda s: _optional(s.vehicle.charge_request()),  # 9.8 step 27
    Step.END_OF_CHARGE: _standby,  # 9.9 step 31
    Step.ABORT: _standby,  # spec 8: undocumented; standby, as at every other end
    Step.CLOSING: lambda s: [],  # v2 has no command to lower the output here (A20)
}
"""Interface v2 (spec 9, 11.1): one row per step."""
