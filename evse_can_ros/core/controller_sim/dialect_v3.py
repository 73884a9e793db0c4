"""Interface v3 frames of the emulated controller (v3 digest 4-7).

The v3 table (:data:`V3_FRAMES`) gives the frames of each :class:`~.dialect.Step`: one
``DC_Power_Control`` command replaces v2's Insulation_Test, Precharge and Charging_Loop (v3 digest
5.4), ``New_Charge_Session`` carries protocol and plug only. :meth:`DialectV3.cyclic` adds what
only v3 sends periodically:

* ``EV_Information_Battery/_Voltages/_Charge_Limits/_Discharge_Limits/_Energy``: all five once
  the session is open (right after the first New_Charge_Session), then each one whenever its
  content changes, checked every 100 ms, until the end of the session (v3 digest 4.12-4.16);
* in Waiting_For_Charge, Ending_Charge and Welding_Detection, every 100 ms: the last standby
  command again (``repeat_standby``) and, in Ending_Charge / Welding_Detection, the end-of-charge
  sequence: once the current is below 1 A, Standby (Open, No_Lowering), then on the next tick
  Standby (Open, Lowering) (v3 digest 5.3 point 2, 6; V10: lowering after the current fell and
  the contactors opened);
* with a range-mode vehicle, ``OCPP_Control`` on change (scenario ``csms_setpoint``), right
  after the Power_Transfer command.

``Output_Contactors`` mirrors the controller's own relay (v3 digest 5.3): closed from the standby
at System_Enable (the test voltage must reach the cable; not reopened after the test) until the
end-of-charge sequence or an abort opens it. ``Setpoints_Mode`` is Target_Mode in standby and in
the insulation test, Range_Mode in precharge (v3 digest 5.2).

Decisions where the digest leaves a choice: an abort sends Standby (Open, No_Lowering) (v2 sends
its standby there too); the Standby + Lowering on entering Closing_Communication (output > 20 V)
goes out right after Charge_Session_Finished, in the digest's order (6, "Termination"): a power
side must act on it although the session is over; the vehicle's maximum SoC in
EV_Information_Battery is its target SoC (it never charges beyond it); a charge-only vehicle
reports minimum SoC 0 (not provided) and no discharge limits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from evse_can_ros.core.controller_sim.config import _SESSION_STATES, PERIOD, S
from evse_can_ros.core.controller_sim.dialect import Dialect, Step
from evse_can_ros.core.vehicle import PowerRequest, Vehicle
from evse_can_ros.protocol import (
    CanMessage,
    ContactorState,
    DcPowerControl,
    EvInformationBattery,
    EvInformationChargeLimits,
    EvInformationDischargeLimits,
    EvInformationEnergy,
    EvInformationVoltages,
    NewChargeSessionV3,
    OcppControl,
    PowerFunction,
    ProtocolVersion,
    SetpointsMode,
    VoltageLowering,
)

if TYPE_CHECKING:
    from evse_can_ros.core.controller_sim.state import SimState

RELAY_OPEN_CURRENT = 1.0
"""A: the controller opens its relay at the end of charge below this current (v3 digest 5.3)."""

_INFORMATION_STATES = _SESSION_STATES - {S.NEGOTIATING_CONNECTION, S.CCS_AUTHORISATION_PROCESS}
"""The session states once the vehicle's information is known: EV_Information_* are sent."""
_STANDBY_STATES = frozenset({S.WAITING_FOR_CHARGE, S.ENDING_CHARGE, S.WELDING_DETECTION})
_ENDING_STATES = frozenset({S.ENDING_CHARGE, S.WELDING_DETECTION})


class DialectV3(Dialect):
    """Interface v3 (module docstring); per-session state: relay, last command, sent info."""

    version = ProtocolVersion.V3

    def __init__(self, sim: SimState) -> None:
        super().__init__(sim)
        self._reset()

    def _reset(self) -> None:
        self.relay_closed = False  # Output_Contactors
        self.last: DcPowerControl | None = None  # the last DC_Power_Control sent
        self.ending_stage = 0  # 0: relay closed, 1: opened, 2: lowering requested
        self._information: dict[str, bytes] = {}  # EV_Information_* as last sent
        self._csms_sent: float | None = None
        self._csms_at_limit = False

    def clear(self) -> None:
        """Forget the session."""
        self._reset()
        for key in ("dc_power_control", "ev_information"):
            self.sim._next.pop(key, None)

    def frames(self, now: float, step: Step) -> list[CanMessage]:
        """Return the messages of ``step``; remember the DC_Power_Control among them."""
        messages = V3_FRAMES[step](self, now)
        for message in messages:
            if isinstance(message, DcPowerControl):
                self.last = message
                self.sim._next["dc_power_control"] = now + PERIOD
        return messages

    def cyclic(self, now: float) -> None:
        """Send the EV information updates and the standby ticks (module docstring)."""
        sim = self.sim
        if sim.state in _INFORMATION_STATES and sim._due("ev_information", now, PERIOD):
            for message in ev_information(sim.vehicle):
                data = sim.codec.encode(message, sim.pistol_index).data
                if self._information.get(message.NAME) != data:
                    self._information[message.NAME] = data
                    sim._send(now, message)
        if sim.state in _STANDBY_STATES and sim._due("dc_power_control", now, PERIOD):
            self._standby_tick(now)

    def _standby_tick(self, now: float) -> None:
        sim = self.sim
        ending = sim.state in _ENDING_STATES
        if ending and self.ending_stage == 0 and abs(sim.present()[1]) < RELAY_OPEN_CURRENT:
            self.relay_closed = False
            self.ending_stage = 1
            self._command(now, standby(self))
        elif ending and self.ending_stage == 1:
            self.ending_stage = 2
            self._command(now, standby(self, lowering=True))
        elif sim.config.repeat_standby and self.last is not None:
            sim._send(now, self.last)

    def _command(self, now: float, command: DcPowerControl) -> None:
        self.last = command
        self.sim._send(now, command)

    def csms(self, now: float, request: PowerRequest) -> list[CanMessage]:
        """Return OCPP_Control if the CSMS's setpoint changes (scenario knobs, range mode)."""
        sc = self.sim.scenario
        if not request.range_mode or sc.csms_setpoint == 0:
            return []
        if not self._csms_at_limit and sc.csms_setpoint_at_limit != 0:
            closed = request.current_min >= 0 if sc.csms_setpoint < 0 else request.current_max <= 0
            if closed:
                self._csms_at_limit = True
                self.sim._event(now, "CSMS: the vehicle reached its SoC limit, new setpoint")
        setpoint = sc.csms_setpoint_at_limit if self._csms_at_limit else sc.csms_setpoint
        if setpoint == self._csms_sent:
            return []
        self._csms_sent = setpoint
        return [OcppControl(setpoint)]


def command(
    d: DialectV3,
    function: PowerFunction,
    *,
    voltage: float = 0.0,
    current_max: float = 0.0,
    current_min: float = 0.0,
    mode: SetpointsMode = SetpointsMode.TARGET_MODE,
    lowering: bool = False,
) -> DcPowerControl:
    """Return a DC_Power_Control with the relay state of ``d``."""
    return DcPowerControl(
        voltage,
        current_max,
        current_min,
        function,
        mode,
        ContactorState.CLOSE if d.relay_closed else ContactorState.OPEN,
        VoltageLowering.LOWERING if lowering else VoltageLowering.NO_LOWERING,
    )


def standby(d: DialectV3, lowering: bool = False) -> DcPowerControl:
    """Return a Standby command: setpoints 0, lowering as asked (v3 digest 5.1, 5.3)."""
    return command(d, PowerFunction.STANDBY, lowering=lowering)


def _power_ready(d: DialectV3, now: float) -> list[CanMessage]:
    d.relay_closed = True  # the test voltage must reach the cable
    return [standby(d)]


def _precharge(d: DialectV3, now: float) -> list[CanMessage]:
    r = d.sim.vehicle.precharge_request()
    if r is None:
        return []
    return [
        command(
            d,
            PowerFunction.PRECHARGE,
            voltage=r.target_voltage,
            current_max=r.maximum_current,
            mode=SetpointsMode.RANGE_MODE,
        )
    ]


def _charge(d: DialectV3, now: float) -> list[CanMessage]:
    r = d.sim.vehicle.power_request()
    if r is None:
        return []
    mode = SetpointsMode.RANGE_MODE if r.range_mode else SetpointsMode.TARGET_MODE
    return [
        command(
            d,
            PowerFunction.POWER_TRANSFER,
            voltage=r.target_voltage,
            current_max=r.current_max,
            current_min=r.current_min,
            mode=mode,
        )
    ]


def _abort(d: DialectV3, now: float) -> list[CanMessage]:
    d.relay_closed = False
    return [standby(d)]


def _closing(d: DialectV3, now: float) -> list[CanMessage]:
    if d.sim.present()[0] <= d.sim.config.rampdown_voltage:
        return []
    d.relay_closed = False
    return [standby(d, lowering=True)]


def _session_info(d: DialectV3, now: float) -> list[CanMessage]:
    p = d.sim.vehicle.params
    return [NewChargeSessionV3(p.communication_protocol, p.plug_and_pins)]


V3Frames = Callable[[DialectV3, float], list[CanMessage]]

V3_FRAMES: dict[Step, V3Frames] = {
    Step.SESSION_INFO: _session_info,  # 4.7: protocol and plug; the rest in EV_Information_*
    Step.POWER_READY: _power_ready,  # 6 "power ready": Standby, relay closed
    Step.INSULATION_TEST: lambda d, now: [
        command(d, PowerFunction.INSULATION_TEST, voltage=d.sim.test_voltage)  # Target_Mode
    ],
    Step.RAMP_DOWN: lambda d, now: [standby(d, lowering=True)],  # 5.3 point 1, relay closed
    Step.INSULATION_FAILED: lambda d, now: [],  # the abort's standby and closing follow
    Step.PRECHARGE: _precharge,  # 5.1: battery voltage, Min 0, Max = limit, Range_Mode
    Step.PRECHARGE_END: lambda d, now: [standby(d)],  # 6: one Standby, no lowering
    Step.START_OF_CHARGE: lambda d, now: [standby(d)],  # 6: Charge_Started, one Standby
    Step.CHARGE: lambda d, now: [*_charge(d, now), *_csms(d, now)],  # 5.2, 4.23
    Step.END_OF_CHARGE: lambda d, now: [standby(d)],  # 6: (Close, No_Lowering) first
    Step.ABORT: _abort,  # decision: Standby, relay open
    Step.CLOSING: _closing,  # 5.3 point 3: Standby + Lowering if the output is > 20 V
}
"""Interface v3 (v3 digest 5-6): one row per step."""


def _csms(d: DialectV3, now: float) -> list[CanMessage]:
    request = d.sim.vehicle.power_request()
    return [] if request is None else d.csms(now, request)


def ev_information(vehicle: Vehicle) -> list[CanMessage]:
    """Return the five EV_Information_* messages of ``vehicle`` now (v3 digest 4.12-4.16)."""
    p = vehicle.params
    bpt = p.bidirectional
    soc = int(min(100, max(0, round(vehicle.soc))))
    if vehicle.contactors_closed:
        voltage = vehicle.battery.terminal_voltage(vehicle.present_current)
    else:
        voltage = vehicle.battery.ocv()
    to_target = float(round(vehicle.energy_to_soc_kwh(p.target_soc)))
    to_minimum = float(round(vehicle.energy_to_soc_kwh(p.min_soc))) if bpt else 0.0
    if not bpt:
        to_target = max(0.0, to_target)
    target = round(p.target_soc)
    return [
        EvInformationBattery(p.capacity_kwh, soc, round(p.min_soc) if bpt else 0, target, target),
        EvInformationVoltages(p.ocv_min, p.max_voltage, voltage),
        EvInformationChargeLimits(0.0, p.max_current, 0.0, p.max_power_kw),
        EvInformationDischargeLimits(
            0.0,
            p.max_discharge_current if bpt else 0.0,
            0.0,
            p.max_discharge_power_kw if bpt else 0.0,
        ),
        EvInformationEnergy(to_minimum, to_target, to_target),
    ]
