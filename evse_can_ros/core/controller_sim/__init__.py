"""Emulator of the Advantics charge controller (controller side of the interface, spec 8-11).

Pure: ``now`` (seconds, any monotonic clock) and the frames received from the power side go in,
the frames the controller puts on the bus come out (:meth:`ControllerSimulator.step`). It encodes
and decodes with the same codec as the bridge and never re-describes the database. The vehicle
(:class:`~evse_can_ros.core.vehicle.Vehicle`) is the master of the session (spec 2): the emulator
plays the charger side of the vehicle protocol and turns the vehicle's decisions into CAN
requests, and the power side's ``Power_Modules_Status`` into what the vehicle sees.

What it sends (spec 11.1): ``Advantics_Controller_Status`` every 100 ms (always, except during a
simulated reset); ``New_Charge_Session`` every 100 ms from Connected_With_Full_Info until
``System_Enable`` = Allowed; ``Insulation_Test`` every 100 ms during the test and with 0 V during
the ramp-down; ``Precharge`` every 100 ms during precharge and one final frame with 0 A;
``Charging_Loop`` every ``charging_loop_period`` in Charging and single (0 V, 0 A) standby frames
(after System_Enable, after precharge, at Waiting_For_Charge, at Ending_Charge, on an abort) and
repeated standby during the ramp-down; ``Charge_Status_Change`` once at start and end of charge;
``Emergency_Stop`` every 100 ms while active; ``Charge_Session_Finished`` once per session;
optionally ``EV_ID_CCS_Part2_DIN`` (1 s, CCS DIN / ISO 15118-2) and ``CCS_Extra_Information``
(100 ms, CCS vehicles).

Interface v2 or v3: the codec's ``protocol_version`` selects it (a codec from
``load_codec(protocol_version=3)`` makes a v3 controller). The states and transitions are
shared; what each step of the sequence sends is the version's dialect (:mod:`.dialect`,
:mod:`.dialect_v3`). In v3 (v3 digest 5-6) ``DC_Power_Control`` replaces Insulation_Test,
Precharge and Charging_Loop (every 100 ms in the powered phases), ``New_Charge_Session`` is
protocol and plug only, the vehicle data go in ``EV_Information_*`` (on change), ``OCPP_Control``
carries a CSMS setpoint (scenario ``csms_setpoint``), and the power side is read from
``Power_Modules_Status`` (signed current), ``DC_Power_Parameters`` and ``Sequence_Control``. A
bidirectional vehicle (``VehicleParams.bpt_mode``) needs v3.

The controller's own checks of the power side (spec 6.1, 9.12): ``Power_Modules_Status``
reception timeout between the first ``New_Charge_Session`` and ``Charge_Session_Finished`` ->
emergency stop (origin EVSE); ``System_Enable`` 1 -> 0 in Charging -> emergency stop (EVSE);
``System_Enable`` 1 -> 0 before Charging -> session refused (Rushed_Stop); insulation below
``insulation_limit`` (Ohm/V of the test voltage) while a power function is active after the test
-> emergency stop (EVSE). ``Sequence_Control`` is only evaluated with ``use_sequence_flags``.

Decisions where the vendor is silent (spec 8 "abnormal terminations ... not documented"):

* Every abort (emergency, refusal, timeout, unplug, vehicle abort) sends one standby
  ``Charging_Loop`` (if power functions may be active), ``Charge_Status_Change`` =
  Charge_Stopped (if the charge had started), goes to Closing_Communication and sends
  ``Charge_Session_Finished`` = Rushed_Stop, also for a refusal before the session was opened.
* ``Emergency_Stop`` repeats until the controller leaves Closing_Communication (where it
  re-evaluates its emergency conditions, spec 6.11).
* Insulation pass: ``Present_Voltage`` >= 90 % of the test voltage, then resistance >=
  ``insulation_limit`` x test voltage for ``insulation_pass_iterations`` consecutive
  ``Insulation_Test`` frames (10 per the text, D1); failing that within ``insulation_timeout``
  (30 s) fails the test.
* A reset (scenario) silences the controller for ``reset_duration``; the vehicle sees the
  communication drop and aborts; the controller restarts at Initialising without sending
  ``Charge_Session_Finished``.
"""

from __future__ import annotations

from collections.abc import Sequence

from evse_can_ros.core.controller_sim.config import (
    INSULATION_VOLTAGE_FRACTION,
    PERIOD,
    SLOW_PERIOD,
    STATE_LABELS,
    ControllerSimConfig,
    Scenario,
)
from evse_can_ros.core.controller_sim.cyclic import Cyclic
from evse_can_ros.core.controller_sim.scenario import ScenarioKnobs
from evse_can_ros.core.controller_sim.supervision import Supervision
from evse_can_ros.core.controller_sim.transitions import Transitions
from evse_can_ros.protocol import CanFrame, ControllerState

__all__ = [
    "INSULATION_VOLTAGE_FRACTION",
    "PERIOD",
    "SLOW_PERIOD",
    "STATE_LABELS",
    "ControllerSimConfig",
    "ControllerSimulator",
    "Scenario",
]

S = ControllerState


class ControllerSimulator(Transitions, Supervision, Cyclic, ScenarioKnobs):
    """The emulated controller + vehicle of one pistol (see module docstring).

    Parts: :mod:`.state` (what it knows, shared actions), :mod:`.supervision` (receive path and
    checks of the power side), :mod:`.scenario` (vehicle plant, scenario knobs),
    :mod:`.transitions` (spec 8 table), :mod:`.cyclic` (spec 11.1 messages).
    """

    def step(self, now: float, received: Sequence[CanFrame] = ()) -> list[CanFrame]:
        """Advance to ``now`` with the power side's ``received`` frames; return frames to send.

        Frames queued between two steps (e.g. by :meth:`emergency_stop`) go out with this step's.
        """
        self._advance(now, received)
        out, self._out = self._out, []
        return [] if self.silent else out

    def _advance(self, now: float, received: Sequence[CanFrame]) -> None:
        if self._started is None:
            self._started = now
            self._set_state(now, S.INITIALISING, "controller starts")
        for frame in received:
            self._on_frame(now, frame)
        if self._silent_until is not None:
            if now < self._silent_until:
                self._plant(now)
                return
            self._silent_until = None
            self._next.clear()
            self._set_state(now, S.INITIALISING, "controller restarts after the reset")
        self._plant(now)
        self._scenario_events(now)
        if self.silent:  # a reset just started
            return
        self._supervise(now)
        for _ in range(4):  # a few transitions per step at most (spec 8 chains)
            if not self._transition(now):
                break
        self._cyclic(now)
