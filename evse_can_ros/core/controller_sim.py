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

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from evse_can_ros.config import ConfigError, check, param
from evse_can_ros.core.vehicle import Vehicle, VehiclePhase
from evse_can_ros.protocol import (
    AdvanticsControllerStatus,
    ButtonState,
    CanFrame,
    CanMessage,
    CcsExtraInformation,
    ChargeSessionFinished,
    ChargeStatus,
    ChargeStatusChange,
    ChargingLoop,
    Codec,
    CommunicationProtocol,
    Completion,
    ControllerState,
    CpState,
    EmergencyStop,
    EmergencyStopOrigin,
    EvIdCcsPart2Din,
    InsulationTest,
    Permission,
    PowerModulesLimits,
    PowerModulesStatus,
    Precharge,
    ProtocolError,
    SequenceControl,
    SessionEnd,
    Validity,
)

log = logging.getLogger(__name__)

S = ControllerState
STATE_LABELS: tuple[str, ...] = tuple(s.label for s in ControllerState)
PERIOD = 0.1
"""s: period of the controller's cyclic messages (spec 5)."""
SLOW_PERIOD = 1.0
"""s: period of EV_ID_CCS_Part2_DIN (spec 5)."""
INSULATION_VOLTAGE_FRACTION = 0.9
"""Present_Voltage must reach this fraction of Test_Voltage before the resistance counts (9.5)."""

# States of an open session (vehicle attached to the controller's protocol stack).
_SESSION_STATES = frozenset(
    {
        S.NEGOTIATING_CONNECTION,
        S.CCS_AUTHORISATION_PROCESS,
        S.CONNECTED_WITH_FULL_INFO,
        S.INSULATION_TEST,
        S.PRECHARGE,
        S.WAITING_FOR_CHARGE,
        S.CHARGING,
        S.ENDING_CHARGE,
        S.WELDING_DETECTION,
    }
)
# Power functions possibly active (standby frame on abort).
_POWER_STATES = frozenset(
    {
        S.INSULATION_TEST,
        S.PRECHARGE,
        S.WAITING_FOR_CHARGE,
        S.CHARGING,
        S.ENDING_CHARGE,
        S.WELDING_DETECTION,
    }
)
# After the insulation test, with a power function active: insulation interlock (spec 6.1).
_INSULATION_INTERLOCK_STATES = frozenset(
    {S.PRECHARGE, S.WAITING_FOR_CHARGE, S.CHARGING, S.ENDING_CHARGE}
)
_EV_ID_PROTOCOLS = frozenset(
    {
        CommunicationProtocol.CCS_DIN_70121_2012_V2,
        CommunicationProtocol.CCS_ISO_15118_2010_V1,
        CommunicationProtocol.CCS_ISO_15118_2013_V2,
    }
)


@dataclass(frozen=True)
class ControllerSimConfig:
    """The emulated controller's configuration (its ``/srv/config.cfg`` and timing)."""

    pistol_index: int = param(
        1, "pistol index configured in the controller (id bits 28..24)", min=1, max=31
    )
    use_sequence_flags: bool = param(
        False,
        "evaluate Sequence_Control: Not_Available until Start_Charge_Authorisation, "
        "CHAdeMO_Start_Button, User_Stop_Button",
    )
    ccs_external_authorisation: bool = param(
        False, "CCS: wait in CCS_Authorisation_Process for the customer (needs sequence flags)"
    )
    wait_charge_parameters: bool = param(
        False, "give the vehicle the charger limits only after Charge_Parameters_Done (flags)"
    )
    boot_time: float = param(
        1.0, "time in Initialising after start or reset (real: ~15 s)", unit="s", min=0, max=120
    )
    power_status_timeout: float = param(
        0.5,
        "Power_Modules_Status reception timeout in the supervised window (not published)",
        unit="s",
        min=0.1,
        max=10.0,
    )
    max_voltage: float = param(
        1000.0, "static voltage limit of the controller config", unit="V", min=1.0, max=1500.0
    )
    max_current: float = param(
        500.0, "static current limit of the controller config", unit="A", min=1.0, max=3000.0
    )
    insulation_test_voltage: float = param(
        0.0,
        "Insulation_Test voltage; 0 = min(vehicle permitted, charger maximum)",
        unit="V",
        min=0.0,
        max=1500.0,
    )
    insulation_pass_iterations: int = param(
        10, "consecutive good Insulation_Test iterations to pass (spec D1: 10 or 50)", min=1
    )
    insulation_timeout: float = param(
        30.0, "insulation test budget (spec 9.5)", unit="s", min=0.5, max=300.0
    )
    insulation_limit: float = param(
        100.0, "insulation pass / interlock limit", unit="Ohm/V", min=1.0, max=10000.0
    )
    rampdown_voltage: float = param(
        20.0, "end of the post-test ramp-down (spec 9.5)", unit="V", min=0.0, max=100.0
    )
    chademo_unlock_voltage: float = param(
        10.0, "CHAdeMO: connector unlocked at or below (spec 9.10)", unit="V", min=0, max=60
    )
    unlock_timeout: float = param(
        10.0, "longest wait for a safe voltage before ending the session", unit="s", min=0.1
    )
    closing_time: float = param(
        2.0, "Closing_Communication dwell before Waiting_For_PEV", unit="s", min=0.0, max=60
    )
    charging_loop_period: float = param(
        0.1, "Charging_Loop period in Charging (CCS is vehicle paced)", unit="s", min=0.05
    )
    send_extra_information: bool = param(
        True, "send EV_ID_CCS_Part2_DIN and CCS_Extra_Information (CCS vehicles)"
    )

    def __post_init__(self) -> None:
        check(self)
        name = type(self).__name__
        for flag in ("ccs_external_authorisation", "wait_charge_parameters"):
            if getattr(self, flag) and not self.use_sequence_flags:
                raise ConfigError(f"{name}.{flag} needs use_sequence_flags = true")


@dataclass(frozen=True)
class Scenario:
    """Fault and behaviour knobs of a simulation run; each applies to every session."""

    plug_in_delay: float = param(
        1.0, "first plug-in after the start; < 0 = never", unit="s", min=-1.0, max=1e6
    )
    replug_delay: float = param(
        -1.0, "plug in again this long after unplugging; < 0 = stay unplugged", unit="s", min=-1
    )
    unplug_after: float = param(
        0.0, "unplug this long after Charging starts; 0 = off", unit="s", min=0.0
    )
    stop_after: float = param(
        0.0, "the vehicle stops this long after Charging starts; 0 = off", unit="s", min=0.0
    )
    ev_emergency_after: float = param(
        0.0, "EV emergency stop this long after Charging starts; 0 = off", unit="s", min=0.0
    )
    reset_after: float = param(
        0.0, "controller reset this long after entering reset_state; 0 = off", unit="s", min=0
    )
    reset_state: str = param("Charging", "state in which the reset happens", choices=STATE_LABELS)
    reset_duration: float = param(
        1.0, "heartbeat silence of a reset", unit="s", min=0.0, max=600.0
    )
    ccs_authorisation_refused: bool = param(
        False, "CCS: the controller's own authorisation (EIM/PnC) refuses the user"
    )
    withhold_start: bool = param(
        False,
        "CHAdeMO: the user never presses the physical start button (only CHAdeMO_Start_Button "
        "over CAN starts a session)",
    )
    insulation_fault_kohm: float = param(
        0.0,
        "the controller's own insulation monitor reads this (overrides the power side); 0 = off",
        unit="kOhm",
        min=0.0,
        max=510.0,
    )
    delayed_charge: float = param(
        0.0, "extra time in Waiting_For_Charge before the first current request", unit="s", min=0
    )

    def __post_init__(self) -> None:
        check(self)


class _Row(NamedTuple):
    """One transition of spec 8: in ``source``, when ``guard`` holds, run ``action``."""

    source: ControllerState
    guard: Callable[[ControllerSimulator, float], bool]
    action: Callable[[ControllerSimulator, float], None]
    spec: str


class ControllerSimulator:
    """The emulated controller + vehicle of one pistol (see module docstring)."""

    def __init__(
        self,
        codec: Codec,
        config: ControllerSimConfig | None = None,
        vehicle: Vehicle | None = None,
        scenario: Scenario | None = None,
    ) -> None:
        self.codec = codec
        self.config = config or ControllerSimConfig()
        self.vehicle = vehicle or Vehicle()
        self.scenario = scenario or Scenario()
        self.pistol_index = self.config.pistol_index
        self._state = S.INITIALISING
        self.state_since = 0.0
        self._started: float | None = None
        self._silent_until: float | None = None  # reset: no frames until then
        self._next: dict[str, float] = {}
        self._out: list[CanFrame] = []
        # power side as last received
        self.power_status: PowerModulesStatus | None = None
        self.power_status_time: float | None = None
        self.limits: PowerModulesLimits | None = None
        self.flags = SequenceControl()
        self._start_pressed = False  # user intent to start (CHAdeMO start button), remembered
        # session
        self.sessions = 0
        self.session_result: SessionEnd | None = None  # of the last finished session
        self.end_reason = ""  # why the last session ended
        self.emergency: EmergencyStopOrigin | None = None
        self.emergency_count = 0
        self._window_open: float | None = None  # Power_Modules_Status supervised since
        self._enabled_seen = False  # System_Enable = Allowed received in this session
        self._charge_started = False  # Charge_Status_Change Charge_Started sent
        self._limits_given = False
        self._test_voltage = 0.0
        self._insulation_good = 0
        self._insulation_passed = False
        self._rampdown = False
        self._finishing_since: float | None = None
        self._scenario_fired: set[str] = set()
        self.rx_errors = 0
        self.events: list[tuple[float, str]] = []

    # --- read-outs --------------------------------------------------------------------------

    @property
    def state(self) -> ControllerState:
        """The state reported in Advantics_Controller_Status."""
        return self._state

    @property
    def silent(self) -> bool:
        """True while a simulated reset keeps the controller off the bus."""
        return self._silent_until is not None

    @property
    def energy_wh(self) -> float:
        """Energy into the battery in the present (or last) session [Wh]."""
        return self.vehicle.session_energy_wh

    @property
    def test_voltage(self) -> float:
        """Insulation test voltage of the present session [V] (0 before the test)."""
        return self._test_voltage

    @property
    def charger_limits(self) -> tuple[float, float]:
        """The charger's voltage and current limits as given to the vehicle [V], [A]."""
        v, i = self.config.max_voltage, self.config.max_current
        if self.limits is not None:
            if self.limits.maximum_voltage > 0:
                v = min(v, self.limits.maximum_voltage)
            if self.limits.maximum_current > 0:
                i = min(i, self.limits.maximum_current)
        return v, i

    def present(self) -> tuple[float, float]:
        """Last reported output voltage [V] and current [A] (0, 0 before any status)."""
        s = self.power_status
        return (s.present_voltage, s.present_current) if s is not None else (0.0, 0.0)

    # --- the step ---------------------------------------------------------------------------

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

    # --- receive ----------------------------------------------------------------------------

    def _on_frame(self, now: float, frame: CanFrame) -> None:
        try:
            spec = self.codec.message_spec_of(frame, self.pistol_index)
            if spec.from_controller:
                return  # our own frames (or another controller's): not for us
            message = self.codec.decode(frame, self.pistol_index)
        except ProtocolError:
            self.rx_errors += 1
            return
        if isinstance(message, PowerModulesStatus):
            self._on_power_status(now, message)
        elif isinstance(message, PowerModulesLimits):
            self.limits = message
            if self._limits_given:  # later updates reach the vehicle too (A10: undocumented)
                self.vehicle.set_charger_limits(now, *self.charger_limits)
        elif isinstance(message, SequenceControl):
            self._on_flags(now, message)

    def _on_power_status(self, now: float, status: PowerModulesStatus) -> None:
        previous = self.power_status
        self.power_status = status
        self.power_status_time = now
        if self._state not in _SESSION_STATES or self._window_open is None:
            return
        if status.system_enable == Permission.ALLOWED:
            if not self._enabled_seen:
                self._event(now, "System_Enable = Allowed")
            self._enabled_seen = True
        elif self._enabled_seen and previous is not None and previous.system_enable:
            if self._state in (S.CHARGING,):  # spec 6.1: emergency shutdown
                self._emergency(now, EmergencyStopOrigin.EVSE, "System_Enable = 0 in Charging")
            elif self._state in (S.ENDING_CHARGE, S.WELDING_DETECTION):
                self._event(now, "System_Enable = 0 while ending: ignored")
            else:  # spec 6.1: charging service unavailable
                self._abort(now, "System_Enable = 0 before Charging: service unavailable")

    def _on_flags(self, now: float, flags: SequenceControl) -> None:
        previous = self.flags
        self.flags = flags
        if not self.config.use_sequence_flags:
            return
        pressed = ButtonState.PRESSED
        if (
            flags.chademo_start_button == pressed
            and previous.chademo_start_button != pressed
            and self.vehicle.is_chademo
            and self.vehicle.plugged_in
        ):
            self._start_pressed = True
            self._event(now, "CHAdeMO_Start_Button pressed")
        if flags.user_stop_button == pressed and previous.user_stop_button != pressed:
            self._event(now, "User_Stop_Button pressed")
            self._user_stop(now, "user stop button")

    def _user_stop(self, now: float, reason: str) -> None:
        """Relay a normal stop requested at the charger (spec 9.11)."""
        if self._state in (S.WAITING_FOR_CHARGE, S.CHARGING):
            self.vehicle.request_stop(now, reason)
        elif self._state in _SESSION_STATES and self._state not in (
            S.ENDING_CHARGE,
            S.WELDING_DETECTION,
        ):
            self._abort(now, f"{reason} before the charge")

    # --- vehicle and scenario ---------------------------------------------------------------

    def _plant(self, now: float) -> None:
        voltage, current = self.present()
        self.vehicle.step(now, voltage, current)

    def _scenario_events(self, now: float) -> None:
        sc = self.scenario
        v = self.vehicle
        assert self._started is not None
        if v.phase is VehiclePhase.UNPLUGGED:
            first = v.sessions == 0 and "first_plug" not in self._scenario_fired
            if first and sc.plug_in_delay >= 0 and now - self._started >= sc.plug_in_delay:
                self._scenario_fired.add("first_plug")
                self.plug_in(now)
            elif (
                not first
                and sc.replug_delay >= 0
                and v.sessions > 0
                and now - v.phase_since >= sc.replug_delay
            ):
                self.plug_in(now)
        if self._silent_until is not None:
            return
        age = now - self.state_since
        charging = self._state is S.CHARGING
        if charging and sc.unplug_after > 0 and age >= sc.unplug_after and self._fire("unplug"):
            self._event(now, "scenario: vehicle unplugged under load")
            v.unplug(now)
        if charging and sc.stop_after > 0 and age >= sc.stop_after and self._fire("stop"):
            v.request_stop(now, "vehicle stops early (scenario)")
        if (
            charging
            and sc.ev_emergency_after > 0
            and age >= sc.ev_emergency_after
            and self._fire("ev_emergency")
        ):
            v.emergency_stop(now, "EV emergency (scenario)")
        if (
            sc.reset_after > 0
            and self._state.label == sc.reset_state
            and age >= sc.reset_after
            and self._fire("reset")
        ):
            self._reset(now)

    def _fire(self, knob: str) -> bool:
        """Fire a once-per-session scenario knob; False if it already fired."""
        key = f"{knob}@{self.sessions}"
        if key in self._scenario_fired:
            return False
        self._scenario_fired.add(key)
        return True

    def plug_in(self, now: float) -> None:
        """Plug the vehicle in now (scenario or user); CHAdeMO: the user presses start too."""
        if self.vehicle.plugged_in:
            return
        self.vehicle.plug_in(now)
        self._start_pressed = self.vehicle.is_chademo and not self.scenario.withhold_start
        self._event(now, "vehicle plugged in")

    def reset(self, now: float, duration: float) -> None:
        """Simulate a controller crash: silent for ``duration`` s, then Initialising."""
        self._event(now, f"controller reset for {duration:g} s")
        self._reset_for(now, duration)

    def emergency_stop(self, now: float, reason: str) -> None:
        """Raise a charger-side emergency stop in the controller (origin EVSE)."""
        self._emergency(now, EmergencyStopOrigin.EVSE, reason)

    def _reset(self, now: float) -> None:
        self._event(now, f"scenario: controller reset for {self.scenario.reset_duration:g} s")
        self._reset_for(now, self.scenario.reset_duration)

    def _reset_for(self, now: float, duration: float) -> None:
        self._silent_until = now + duration
        self.vehicle.abort(now, "charger communication lost (controller reset)")
        if self._state in _SESSION_STATES:
            self.session_result = None
            self.end_reason = "controller reset"
        self._clear_session()
        self.emergency = None
        self._set_state(now, S.INITIALISING, "reset")

    # --- supervision of the power side (spec 6.1, 9.12) -------------------------------------

    def _supervise(self, now: float) -> None:
        if self._window_open is not None and self._state in _SESSION_STATES:
            last = max(self._window_open, self.power_status_time or self._window_open)
            if now - last > self.config.power_status_timeout:
                self._emergency(
                    now,
                    EmergencyStopOrigin.EVSE,
                    f"Power_Modules_Status timeout ({(now - last) * 1000:.0f} ms)",
                )
                return
        if self._insulation_passed and self._state in _INSULATION_INTERLOCK_STATES:
            ohm_per_volt = self._ohm_per_volt()
            if ohm_per_volt is not None and ohm_per_volt < self.config.insulation_limit:
                self._emergency(
                    now,
                    EmergencyStopOrigin.EVSE,
                    f"insulation {ohm_per_volt:.0f} Ohm/V below {self.config.insulation_limit:g}",
                )
                return
        v = self.vehicle
        if self._state in _SESSION_STATES:
            if v.error is not None:
                self._emergency(now, EmergencyStopOrigin.PEV, v.error)
            elif not v.plugged_in:
                self._abort(now, "vehicle unplugged during the session")
            elif v.phase is VehiclePhase.DONE:
                self._abort(now, v.end_reason or "vehicle ended the session")

    def _resistance_kohm(self) -> float | None:
        if self.scenario.insulation_fault_kohm > 0:
            return self.scenario.insulation_fault_kohm
        if self.power_status is None:
            return None
        return self.power_status.insulation_resistance

    def _ohm_per_volt(self) -> float | None:
        kohm = self._resistance_kohm()
        if kohm is None or self._test_voltage <= 0:
            return None
        return kohm * 1000.0 / self._test_voltage

    # --- transitions (spec 8) ---------------------------------------------------------------

    def _transition(self, now: float) -> bool:
        for row in _TRANSITIONS:
            if row.source is self._state and row.guard(self, now):
                before = self._state
                row.action(self, now)
                if self._state is not before:
                    return True
        return False

    def _age(self, now: float) -> float:
        return now - self.state_since

    # guards and actions, in the order of the table

    def _booted(self, now: float) -> bool:
        return self._age(now) >= self.config.boot_time

    def _to_idle(self, now: float) -> None:
        if self.config.use_sequence_flags and not self._start_allowed():
            self._set_state(now, S.NOT_AVAILABLE, "Start_Charge_Authorisation = Not_Allowed")
        else:
            self._set_state(now, S.WAITING_FOR_PEV, "ready for a vehicle")

    def _start_allowed(self) -> bool:
        return self.flags.start_charge_authorisation == Permission.ALLOWED

    def _authorised(self, now: float) -> bool:
        return self._start_allowed()

    def _unauthorised(self, now: float) -> bool:
        return self.config.use_sequence_flags and not self._start_allowed()

    def _to_waiting(self, now: float) -> None:
        self._set_state(now, S.WAITING_FOR_PEV, "Start_Charge_Authorisation = Allowed")

    def _to_not_available(self, now: float) -> None:
        self._set_state(now, S.NOT_AVAILABLE, "Start_Charge_Authorisation = Not_Allowed")

    def _vehicle_starts(self, now: float) -> bool:
        v = self.vehicle
        if v.phase is not VehiclePhase.PLUGGED:
            return False
        return not v.is_chademo or self._start_pressed

    def _open_session(self, now: float) -> None:
        self._clear_session()
        self.sessions += 1
        self.session_result = None
        self.end_reason = ""
        self._start_pressed = False
        self.vehicle.start_session(
            now, self.vehicle.params.current_request_delay + self.scenario.delayed_charge
        )
        self._set_state(now, S.NEGOTIATING_CONNECTION, f"session {self.sessions}: plug-in")

    def _info_complete(self, now: float) -> bool:
        return self.vehicle.phase is VehiclePhase.WAITING_FOR_CHARGER

    def _after_negotiation(self, now: float) -> None:
        ccs = not self.vehicle.is_chademo
        if ccs and self.config.ccs_external_authorisation:
            self._set_state(now, S.CCS_AUTHORISATION_PROCESS, "waiting for CCS authorisation")
        elif ccs and self.scenario.ccs_authorisation_refused:
            self._abort(now, "CCS authorisation refused (controller)")
        else:
            self._connected(now)

    def _connected(self, now: float) -> None:
        self._window_open = now  # Power_Modules_Status supervised from now (spec 6.1)
        self._set_state(now, S.CONNECTED_WITH_FULL_INFO, "all vehicle information known")
        self._next["new_charge_session"] = now

    def _authorisation_done(self, now: float) -> bool:
        return self.flags.ccs_authorisation_done == Completion.DONE

    def _authorisation_decided(self, now: float) -> None:
        if self.scenario.ccs_authorisation_refused:
            self._abort(now, "CCS authorisation refused (controller)")
        elif self.flags.ccs_authorisation_valid == Validity.VALID:
            self._event(now, "CCS authorisation valid")
            self._connected(now)
        else:
            self._abort(now, "CCS authorisation refused by the customer side")

    def _cable_check_requested(self, now: float) -> bool:
        if not self._limits_given and (
            not self.config.wait_charge_parameters
            or self.flags.charge_parameters_done == Completion.DONE
        ):
            self._limits_given = True
            self.vehicle.set_charger_limits(now, *self.charger_limits)
        return self.vehicle.wants_cable_check and self._power_enabled()

    def _power_enabled(self) -> bool:
        s = self.power_status
        return self._enabled_seen and s is not None and s.system_enable == Permission.ALLOWED

    def _start_insulation_test(self, now: float) -> None:
        self._send(now, ChargingLoop(0.0, 0.0, self._soc()))  # spec 9.5 step 14
        cfg = self.config
        v_test = cfg.insulation_test_voltage or min(
            self.vehicle.params.permitted_test_voltage, self.charger_limits[0]
        )
        self._test_voltage = v_test
        self._insulation_good = 0
        self._rampdown = False
        self._set_state(now, S.INSULATION_TEST, f"insulation test at {v_test:g} V")
        self._next["insulation"] = now

    def _insulation_finished(self, now: float) -> bool:
        if self._rampdown:
            return self.present()[0] <= self.config.rampdown_voltage
        return self._age(now) > self.config.insulation_timeout

    def _after_insulation(self, now: float) -> None:
        if not self._rampdown:  # timeout (spec 9.5 step 17)
            self._send(now, InsulationTest(0.0))
            self._abort(
                now,
                f"insulation test failed: not passed within {self.config.insulation_timeout:g} s",
            )
            return
        self._insulation_passed = True
        self._event(now, f"insulation test complete ({self.present()[0]:.1f} V)")
        self.vehicle.cable_check_passed(now)
        if self.vehicle.is_chademo:  # contactors closed; the vehicle asks to start (spec 9.5 19)
            self._waiting_for_charge(now)
        else:
            self._set_state(now, S.PRECHARGE, "vehicle starts precharge")
            self._next["precharge"] = now

    def _precharge_over(self, now: float) -> bool:
        return self.vehicle.phase is not VehiclePhase.PRECHARGE

    def _after_precharge(self, now: float) -> None:
        if self.vehicle.phase is VehiclePhase.READY:  # spec 9.6 step 23
            self._send(now, Precharge(self._precharge_target(), 0.0))
            self._send(now, ChargingLoop(0.0, 0.0, self._soc()))
            self._waiting_for_charge(now)
        # otherwise the vehicle aborted: _supervise ends the session

    def _waiting_for_charge(self, now: float) -> None:
        self._set_state(now, S.WAITING_FOR_CHARGE, "vehicle requests power delivery")
        self._send(now, ChargeStatusChange(ChargeStatus.CHARGE_STARTED))  # spec 9.7
        self._send(now, ChargingLoop(0.0, 0.0, self._soc()))
        self._charge_started = True

    def _current_requested(self, now: float) -> bool:
        return self.vehicle.phase is VehiclePhase.CHARGING

    def _start_charging(self, now: float) -> None:
        self._set_state(now, S.CHARGING, "first current request")
        self._next["charging_loop"] = now

    def _vehicle_stopping(self, now: float) -> bool:
        # the vehicle may pass through ENDING within one step when no current flows
        return self.vehicle.phase in (
            VehiclePhase.ENDING,
            VehiclePhase.WELDING_DETECTION,
            VehiclePhase.FINISHING,
        )

    def _ending_charge(self, now: float) -> None:
        self._set_state(now, S.ENDING_CHARGE, f"stop: {self.vehicle.stop_reason}")
        self._send(now, ChargeStatusChange(ChargeStatus.CHARGE_STOPPED))  # spec 9.9
        self._send(now, ChargingLoop(0.0, 0.0, self._soc()))
        self._charge_started = False

    def _contactors_opened(self, now: float) -> bool:
        return self.vehicle.phase in (VehiclePhase.WELDING_DETECTION, VehiclePhase.FINISHING)

    def _after_ending(self, now: float) -> None:
        if self.vehicle.phase is VehiclePhase.WELDING_DETECTION:
            self._set_state(now, S.WELDING_DETECTION, "vehicle checks its contactors")
        else:
            self._finishing_since = now

    def _welding_done(self, now: float) -> bool:
        return self.vehicle.phase is VehiclePhase.FINISHING

    def _start_finishing(self, now: float) -> None:
        if self._finishing_since is None:
            self._finishing_since = now
            self._event(now, "contactors open: waiting for a safe voltage")

    def _safe_to_unlock(self, now: float) -> bool:
        if self.vehicle.phase is not VehiclePhase.FINISHING:
            return False
        if self._finishing_since is None:
            self._finishing_since = now
        unlock = (
            self.config.chademo_unlock_voltage
            if self.vehicle.is_chademo
            else self.vehicle.params.unlock_voltage
        )
        if self.present()[0] <= unlock:
            return True
        return now - self._finishing_since > self.config.unlock_timeout

    def _finish_session(self, now: float) -> None:
        voltage = self.present()[0]
        clean = (
            not self.vehicle.forced_open
            and now - (self._finishing_since or now) <= self.config.unlock_timeout
        )
        reason = self.vehicle.stop_reason or "session finished"
        if not clean:
            reason += f" (forced: {voltage:.0f} V at unlock or current still flowing)"
        self.vehicle.session_finished(now)
        self._close(now, SessionEnd.CLEAN_STOP if clean else SessionEnd.RUSHED_STOP, reason)

    def _closed(self, now: float) -> bool:
        return self._age(now) >= self.config.closing_time

    def _after_closing(self, now: float) -> None:
        self.emergency = None  # re-evaluated here (spec 6.11)
        self._clear_session()
        self._to_idle(now)

    # --- helpers ----------------------------------------------------------------------------

    def _precharge_target(self) -> float:
        request = self.vehicle.precharge_request()
        return request.target_voltage if request else self.vehicle.battery.ocv()

    def _soc(self) -> int:
        return int(min(100, max(0, round(self.vehicle.soc))))

    def _emergency(self, now: float, origin: EmergencyStopOrigin, reason: str) -> None:
        self.emergency = origin
        self.emergency_count += 1
        # the Emergency_Stop frame goes out first, before the frames of the abort (and before
        # Charge_Session_Finished), then every 100 ms
        self._send(now, EmergencyStop(origin))
        self._next["emergency"] = now + PERIOD
        self._abort(now, f"emergency stop ({origin.label}): {reason}")

    def _abort(self, now: float, reason: str) -> None:
        """End the session abnormally (see module docstring)."""
        if self._state not in _SESSION_STATES:
            return
        if self._state in _POWER_STATES:
            self._send(now, ChargingLoop(0.0, 0.0, self._soc()))
        if self._charge_started:
            self._send(now, ChargeStatusChange(ChargeStatus.CHARGE_STOPPED))
        self.vehicle.abort(now, reason)
        self._close(now, SessionEnd.RUSHED_STOP, reason)

    def _close(self, now: float, result: SessionEnd, reason: str) -> None:
        self.session_result = result
        self.end_reason = reason
        self._window_open = None
        self._charge_started = False
        self._set_state(now, S.CLOSING_COMMUNICATION, f"{result.label}: {reason}")
        self._send(now, ChargeSessionFinished(result))

    def _clear_session(self) -> None:
        self._window_open = None
        self._enabled_seen = False
        self._charge_started = False
        self._limits_given = False
        self._test_voltage = 0.0
        self._insulation_good = 0
        self._insulation_passed = False
        self._rampdown = False
        self._finishing_since = None
        for key in ("new_charge_session", "insulation", "precharge", "charging_loop"):
            self._next.pop(key, None)

    def _set_state(self, now: float, state: ControllerState, why: str) -> None:
        if state is not self._state:
            self._event(now, f"{self._state.label} -> {state.label}: {why}")
        self._state = state
        self.state_since = now

    def _event(self, now: float, text: str) -> None:
        log.info("pistol %d: %s", self.pistol_index, text)
        self.events.append((now, text))

    def _send(self, now: float, message: CanMessage) -> None:
        self._out.append(self.codec.encode(message, self.pistol_index, now))

    def _due(self, key: str, now: float, period: float) -> bool:
        """Return True if the cyclic message ``key`` is due, and schedule the next one."""
        due = self._next.get(key)
        if due is None:
            self._next[key] = now + period
            return True
        if now + 1e-9 < due:
            return False
        self._next[key] = max(due + period, now + period / 2)
        return True

    # --- cyclic messages (spec 11.1) --------------------------------------------------------

    def _cyclic(self, now: float) -> None:
        state = self._state
        if self._due("status", now, PERIOD):
            self._send(now, AdvanticsControllerStatus(state))
        if self.emergency is not None and self._due("emergency", now, PERIOD):
            self._send(now, EmergencyStop(self.emergency))
        if (
            state is S.CONNECTED_WITH_FULL_INFO
            and not self._enabled_seen
            and self._due("new_charge_session", now, PERIOD)
        ):
            self._send(now, self.vehicle.session_info())
        if state is S.INSULATION_TEST and self._due("insulation", now, PERIOD):
            self._insulation_iteration(now)
        if state is S.PRECHARGE and self._due("precharge", now, PERIOD):
            precharge = self.vehicle.precharge_request()
            if precharge is not None:
                self._send(now, precharge)
        if state is S.CHARGING and self._due(
            "charging_loop", now, self.config.charging_loop_period
        ):
            request = self.vehicle.charge_request()
            if request is not None:
                self._send(now, request)
        if self.config.send_extra_information and not self.vehicle.is_chademo:
            self._extra_information(now)

    def _insulation_iteration(self, now: float) -> None:
        """One Insulation_Test frame: test voltage, or 0 V + standby during the ramp-down."""
        if self._rampdown:
            self._send(now, InsulationTest(0.0))
            self._send(now, ChargingLoop(0.0, 0.0, self._soc()))
            return
        self._send(now, InsulationTest(self._test_voltage))
        voltage = self.present()[0]
        ohm_per_volt = self._ohm_per_volt()
        good = (
            voltage >= INSULATION_VOLTAGE_FRACTION * self._test_voltage
            and ohm_per_volt is not None
            and ohm_per_volt >= self.config.insulation_limit
        )
        self._insulation_good = self._insulation_good + 1 if good else 0
        if self._insulation_good >= self.config.insulation_pass_iterations:
            self._event(now, f"insulation test passed ({ohm_per_volt:.0f} Ohm/V): ramp-down")
            self._rampdown = True

    def _extra_information(self, now: float) -> None:
        v = self.vehicle
        if v.in_session and v.params.communication_protocol in _EV_ID_PROTOCOLS:
            if v.info_complete and self._due("ev_id", now, SLOW_PERIOD):
                self._send(now, EvIdCcsPart2Din(*v.params.ev_id_bytes))
        else:
            self._next.pop("ev_id", None)
        if self._due("ccs_extra", now, PERIOD):
            if not v.plugged_in:
                cp, duty = CpState.A, 100.0
            elif v.contactors_closed or self._state in _POWER_STATES:
                cp, duty = CpState.C, 5.0
            else:
                cp, duty = CpState.B, 5.0 if v.in_session else 100.0
            self._send(now, CcsExtraInformation(cp, duty))


_C = ControllerSimulator

# Transition table (spec 8). Rows are tried in order; the first guard that holds fires.
# Aborts (emergency, refusal, unplug, vehicle timeout) come from _supervise / the receive path.
_TRANSITIONS: tuple[_Row, ...] = (
    _Row(S.INITIALISING, _C._booted, _C._to_idle, "8: 0 -> 12 with sequence flags, else -> 1"),
    _Row(S.NOT_AVAILABLE, _C._authorised, _C._to_waiting, "8/9.1: Start_Charge_Authorisation"),
    _Row(S.WAITING_FOR_PEV, _C._unauthorised, _C._to_not_available, "8: 12 implied on 1 -> 0"),
    _Row(S.WAITING_FOR_PEV, _C._vehicle_starts, _C._open_session, "9.2: plug-in (+ start)"),
    _Row(S.NEGOTIATING_CONNECTION, _C._info_complete, _C._after_negotiation, "8: -> 11 or 3"),
    _Row(S.CCS_AUTHORISATION_PROCESS, _C._authorisation_done, _C._authorisation_decided, "9.3"),
    _Row(
        S.CONNECTED_WITH_FULL_INFO,
        _C._cable_check_requested,
        _C._start_insulation_test,
        "9.4/9.5 steps 11-15: parameters, System_Enable, cable check",
    ),
    _Row(S.INSULATION_TEST, _C._insulation_finished, _C._after_insulation, "9.5 steps 17-19"),
    _Row(S.PRECHARGE, _C._precharge_over, _C._after_precharge, "9.6 step 23"),
    _Row(S.WAITING_FOR_CHARGE, _C._vehicle_stopping, _C._ending_charge, "9.11: stop before"),
    _Row(S.WAITING_FOR_CHARGE, _C._current_requested, _C._start_charging, "9.8 step 27"),
    _Row(S.CHARGING, _C._vehicle_stopping, _C._ending_charge, "9.9 step 31"),
    _Row(S.ENDING_CHARGE, _C._contactors_opened, _C._after_ending, "9.9 step 32 -> 9 or 10"),
    _Row(S.ENDING_CHARGE, _C._safe_to_unlock, _C._finish_session, "9.10 steps 34-35"),
    _Row(S.WELDING_DETECTION, _C._welding_done, _C._start_finishing, "9.10 step 33"),
    _Row(S.WELDING_DETECTION, _C._safe_to_unlock, _C._finish_session, "9.10 steps 34-35"),
    _Row(S.CLOSING_COMMUNICATION, _C._closed, _C._after_closing, "9.10 step 36: -> 1 (or 12)"),
)
