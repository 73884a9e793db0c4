"""The power-module side of the Generic EVSE CAN interface v2 as a pure state machine.

:class:`PowerModule` turns the controller's decoded messages (typed dataclasses of
:mod:`evse_can_ros.protocol`) into converter setpoints and our ``Power_Modules_Status``. It has
no rclpy, no threads and no clock: the node calls

* :meth:`PowerModule.on_message` for every controller message (``Advantics_Controller_Status``
  included: the node builds one from the bridge's ``controller_state`` topic),
* :meth:`PowerModule.on_link_lost` when the bridge reports the heartbeat lost (PM-07, PM-44),
* :meth:`PowerModule.on_fault` when the converter backend fails,
* :meth:`PowerModule.step` every control period with the converter's measurement and
  capabilities; it returns the :class:`Setpoint` to apply, the status to publish, the phase,
  whether the modules should be awake and the latched fault.

Phases (``Phase``) and what the output does:

========================  =====================================================================
``IDLE``                  no session; output off; modules may sleep
``WAKING``                ``New_Charge_Session`` seen, waiting for the modules (System_Enable 0)
``STANDBY``               awake, no power conversion, output left alone (no bleeding, PM-24/32)
``INSULATION_TEST``       constant voltage at ``Test_Voltage`` (PM-25/26)
``DISCHARGE``             post-insulation active discharge to ``discharge_voltage`` (PM-28, A20)
``PRECHARGE``             constant voltage at ``Target_Voltage``, current <= Maximum_Current
``CHARGING``              ``Target_Current`` (ramped up, cut at once) capped at ``Target_Voltage``
``OFF_LATCHED``           emergency stop / link lost / fault: off until a new session (A7)
========================  =====================================================================

Decisions (spec §12 recommended decisions unless stated):

* A1/A2: no counting of insulation iterations; the true resistance is reported every cycle.
* A5: System_Enable = 0 until the modules are first ready in a session, then 1 for the whole
  session; 0 again only for a latched fault (session refused / emergency shutdown, PM-23).
* A6: System_Enable does not wait for any controller state.
* A7/PM-42: any ``Emergency_Stop`` latches the output off; each further frame re-arms the latch.
  The latch (also for heartbeat/link loss, PM-08, and converter faults) is cleared only by a
  ``New_Charge_Session`` received after the controller has been seen idle (states 0, 1, 2, 11,
  12) or after ``Charge_Session_Finished``, so the repeated frames of the faulted session never
  clear it.
* A8/PM-37: (0 V, any A) = standby; ``Target_Current`` <= 0 with a voltage = regulate at 0 A.
* A9/PM-43: power (REGULATE) only while the latest state is 3..7; DISCHARGE only in 3..4.
* A13/PM-28: active discharge to ``discharge_voltage`` (default 10 V) after the insulation test.
* A17: AC sessions (``CCS_PWM`` / ``CCS_AC``) are refused (System_Enable stays 0).
* A18/PM-45: on a *change* of the controller state: into 0/1/2/11/12 the session ends (PM-48);
  into 5/6/8/9/10/13 or an unknown state any power function stops (standby).
* A20: the output is never bled except after an insulation test while the state is 3 or 4.
* Deviation/addition: commands are acted on only inside a session opened by
  ``New_Charge_Session`` (a driver restarted mid-session does not resume power; the bridge then
  reports the stale status as System_Enable = 0 anyway).
* Addition (defence in depth, PM-29): after the insulation test, while precharging or charging,
  a measured insulation resistance below ``insulation_min_ohm_per_volt`` x voltage latches the
  output off and sets System_Enable = 0, without waiting for the controller's emergency stop.
* Addition: ``link_timeout``: if no controller message at all (the bridge publishes the state
  every 100 ms) arrives for that long, the output latches off (bridge dead or hung).
* PM-40 (CHAdeMO <= 10 V for unlocking) relies on the converter's permanent output bleed once
  the vehicle has opened its contactors; the state machine reports the true voltage and never
  holds the output up outside a power function.
"""

from __future__ import annotations

import enum
import logging
import math
from dataclasses import dataclass

from evse_can_ros.config import check, param
from evse_can_ros.core.power_stage import (
    NO_CAPABILITIES,
    OFF,
    Capabilities,
    ConverterFault,
    Measurement,
    Mode,
    PowerStage,
    Setpoint,
)
from evse_can_ros.protocol import (
    AdvanticsControllerStatus,
    CanMessage,
    ChargeSessionFinished,
    ChargeStatus,
    ChargeStatusChange,
    ChargingLoop,
    CommunicationProtocol,
    ControllerState,
    EmergencyStop,
    InsulationTest,
    NewChargeSession,
    Permission,
    PlugAndPins,
    PowerModulesStatus,
    Precharge,
)

log = logging.getLogger(__name__)


class Phase(enum.Enum):
    """Phase of the power-module state machine (see module docstring)."""

    IDLE = "IDLE"
    WAKING = "WAKING"
    STANDBY = "STANDBY"
    INSULATION_TEST = "INSULATION_TEST"
    DISCHARGE = "DISCHARGE"
    PRECHARGE = "PRECHARGE"
    CHARGING = "CHARGING"
    OFF_LATCHED = "OFF_LATCHED"


SOURCING_STATES = frozenset(range(3, 8))
"""Controller states in which power may be sourced (A9; PM-43 lists the others)."""
DISCHARGE_STATES = frozenset((3, 4))
"""Controller states in which the post-insulation discharge may run (A20)."""
IDLE_STATES = frozenset((0, 1, 2, 11, 12))
"""Controller states outside a session: entering one ends the session (PM-48)."""
POWER_PHASES = frozenset((Phase.INSULATION_TEST, Phase.DISCHARGE, Phase.PRECHARGE, Phase.CHARGING))


@dataclass(frozen=True)
class PowerModuleConfig:
    """Configuration of the power-module state machine (node parameters)."""

    link_timeout: float = param(
        0.5,
        "no controller message (state included) for this long: output off, latched",
        unit="s",
        min=0.05,
        max=10.0,
    )
    current_ramp_rate: float = param(
        200.0,
        "rise rate of the charging current setpoint; decreases act at once (0 = no ramp)",
        unit="A/s",
        min=0.0,
        max=1e6,
    )
    insulation_test_current: float = param(
        10.0,
        "current limit while regulating the insulation test voltage",
        unit="A",
        min=0.1,
        max=100.0,
    )
    discharge_voltage: float = param(
        10.0, "post-insulation discharge target (spec: <= 20 V)", unit="V", min=0.0, max=20.0
    )
    insulation_min_ohm_per_volt: float = param(
        100.0,
        "local insulation interlock after the test while precharging/charging (0 = off)",
        unit="Ohm/V",
        min=0.0,
        max=1e5,
    )
    insulation_check_min_voltage: float = param(
        50.0,
        "measured voltage above which the insulation interlock is evaluated",
        unit="V",
        min=0.0,
        max=1500.0,
    )
    sleep_when_idle: bool = param(True, "let the power modules sleep outside sessions")

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class PowerModuleOutput:
    """Result of :meth:`PowerModule.step`."""

    setpoint: Setpoint
    status: PowerModulesStatus  # Power_Modules_Status content (insulation in kOhm)
    phase: str
    wake: bool
    fault: str  # latched fault, "" = none


class PowerModule:
    """See module docstring."""

    def __init__(self, config: PowerModuleConfig | None = None) -> None:
        self.config = config or PowerModuleConfig()
        self.phase = Phase.IDLE
        self.state: ControllerState | None = None  # latest Advantics_Controller_Status.State
        self.fault = ""  # latched fault text ("" = none)
        self.session: NewChargeSession | None = None
        self.enabled = False  # System_Enable granted in this session (A5)
        self.session_energy_wh = 0.0
        self.last_measurement: Measurement | None = None
        self._latched = False
        self._idle_seen = True  # a new session may clear the latch
        self._last_controller: float | None = None
        self._last_step: float | None = None
        self._test_voltage = 0.0
        self._precharge = (0.0, 0.0)
        self._target = (0.0, 0.0)
        self._ramped_current = 0.0
        self._insulation_tested = False
        self._limits: tuple[float, float, float] = (math.inf, math.inf, math.inf)

    # --- inputs ----------------------------------------------------------------------------------

    @property
    def in_session(self) -> bool:
        """True between New_Charge_Session and the end of the session."""
        return self.session is not None

    @property
    def latched(self) -> bool:
        """True while the output is latched off (emergency stop, link loss, fault)."""
        return self._latched

    @property
    def system_enable(self) -> bool:
        """System_Enable as reported now (A5)."""
        return self.in_session and self.enabled and not self._latched

    def set_limits(
        self,
        max_voltage: float | None = None,
        max_current: float | None = None,
        max_power: float | None = None,
    ) -> None:
        """Operator limits [V, A, W] on top of the converter capabilities (None = no limit)."""
        values = []
        for name, v in (
            ("max_voltage", max_voltage),
            ("max_current", max_current),
            ("max_power", max_power),
        ):
            if v is None:
                values.append(math.inf)
            elif math.isnan(v) or v < 0:
                raise ValueError(f"{name} must be >= 0 or None, got {v}")
            else:
                values.append(float(v))
        self._limits = (values[0], values[1], values[2])

    def on_message(self, msg: CanMessage, now: float) -> None:
        """Take one decoded controller message received at ``now``."""
        self._last_controller = now
        if isinstance(msg, AdvanticsControllerStatus):
            self._on_state(msg.state)
        elif isinstance(msg, EmergencyStop):
            self._latch(f"emergency stop (origin {msg.origin.label})")  # PM-42, A7
        elif isinstance(msg, NewChargeSession):
            self._on_new_session(msg)
        elif isinstance(msg, ChargeSessionFinished):
            if self.in_session or self._latched:
                log.info("Charge_Session_Finished (%s): output off", msg.state.label)
            self._end_session()  # PM-41
        elif not self._can_command():
            return
        elif isinstance(msg, InsulationTest):
            self._on_insulation_test(msg)
        elif isinstance(msg, Precharge):
            self._on_precharge(msg)
        elif isinstance(msg, ChargingLoop):
            self._on_charging_loop(msg)
        elif isinstance(msg, ChargeStatusChange):
            if msg.vehicle_ready_for_charging == ChargeStatus.CHARGE_STARTED:
                if self.phase is not Phase.CHARGING and self.phase is not Phase.WAKING:
                    self._set_phase(Phase.STANDBY, "Charge_Started: ready")  # PM-33
            elif self.phase in POWER_PHASES:
                self._set_phase(Phase.STANDBY, "Charge_Stopped")  # PM-38
        # everything else (inputs, EV ID, extra information) is ignored (PM-46)

    def on_link_lost(self, now: float, reason: str) -> None:
        """Handle a lost controller heartbeat or CAN link: off at once, latched (PM-07/08/44)."""
        self._latch(f"controller link lost: {reason}")

    def on_fault(self, now: float, reason: str) -> None:
        """Handle a converter failure (ConverterFault): off, latched until a new session."""
        self._latch(f"converter fault: {reason}")

    # --- the control step ------------------------------------------------------------------------

    def step(
        self, now: float, measurement: Measurement | None, capabilities: Capabilities | None
    ) -> PowerModuleOutput:
        """Advance to ``now`` with the latest measurement (None: the converter does not answer)."""
        cfg = self.config
        dt = 0.0 if self._last_step is None else max(0.0, now - self._last_step)
        self._last_step = now
        if (
            self._last_controller is not None
            and now - self._last_controller > cfg.link_timeout
            and not self._latched
        ):
            self._latch(
                f"no controller message for {now - self._last_controller:.2f} s "
                f"(link_timeout {cfg.link_timeout:g} s)"
            )
        m = measurement if measurement is not None else self.last_measurement
        if measurement is not None:
            self.last_measurement = measurement
            self._check_measurement(measurement)
        caps = capabilities or NO_CAPABILITIES
        if m is not None and self.in_session and not self._latched and m.ready:
            if not self.enabled:
                log.info("power modules ready: System_Enable = Allowed")  # PM-22
            self.enabled = True
            if self.phase is Phase.WAKING:
                self._set_phase(Phase.STANDBY, "modules ready")
        if self.phase is Phase.DISCHARGE and m is not None and m.voltage <= cfg.discharge_voltage:
            self._set_phase(Phase.STANDBY, f"output discharged to {m.voltage:.1f} V")
        setpoint = self._setpoint(caps, dt)
        if m is not None and m.current > 0 and self.in_session:
            self.session_energy_wh += m.voltage * m.current * dt / 3600.0
        return PowerModuleOutput(
            setpoint=setpoint,
            status=self._status(m),
            phase=self.phase.value,
            wake=(self.in_session and not self._latched) or not cfg.sleep_when_idle,
            fault=self.fault,
        )

    # --- internals -------------------------------------------------------------------------------

    def _can_command(self) -> bool:
        return self.in_session and not self._latched

    def _set_phase(self, phase: Phase, why: str) -> None:
        if phase is not self.phase:
            log.info("phase %s -> %s (%s)", self.phase.value, phase.value, why)
            if phase is Phase.CHARGING:
                self._ramped_current = 0.0
            self.phase = phase

    def _latch(self, reason: str) -> None:
        self._idle_seen = False
        if not self._latched:
            log.error("output off, latched until a new session: %s", reason)
            self._latched = True
            self.fault = reason
        self._set_phase(Phase.OFF_LATCHED, reason)
        self._clear_targets()

    def _clear_targets(self) -> None:
        self._test_voltage = 0.0
        self._precharge = (0.0, 0.0)
        self._target = (0.0, 0.0)
        self._ramped_current = 0.0

    def _end_session(self) -> None:
        self.session = None
        self.enabled = False
        self._insulation_tested = False
        self._idle_seen = True
        self._clear_targets()
        if not self._latched:
            self._set_phase(Phase.IDLE, "session over")

    def _on_new_session(self, msg: NewChargeSession) -> None:
        if self._latched and not self._idle_seen:
            return  # repeated frames of the faulted session: stay off (PM-08, PM-42)
        if self.in_session and not self._latched:
            return  # repeated until System_Enable = Allowed
        if self._latched:
            log.info("new session: clearing latched fault (%s)", self.fault)
        self._latched = False
        self.fault = ""
        self.session = msg
        self.enabled = False
        self.session_energy_wh = 0.0
        self._insulation_tested = False
        self._clear_targets()
        self._set_phase(
            Phase.WAKING,
            f"New_Charge_Session {msg.communication_protocol.label}/{msg.plug_and_pins.label}",
        )
        if (
            msg.communication_protocol == CommunicationProtocol.CCS_PWM
            or msg.plug_and_pins == PlugAndPins.CCS_AC
        ):
            self._latch(f"AC session ({msg.communication_protocol.label}) refused (spec A17)")

    def _on_state(self, state: ControllerState) -> None:
        previous, self.state = self.state, state
        if state == previous:
            return
        log.info(
            "controller state %s -> %s",
            previous.label if previous is not None else "-",
            state.label,
        )  # PM-49
        value = int(state)
        if value in IDLE_STATES:
            self._idle_seen = True
            if self.in_session:
                self._end_session()  # PM-48
        elif value in (5, 6, 8, 9, 10, 13) or not state.known:  # A18, PM-45
            stop = POWER_PHASES if value != 5 else {Phase.INSULATION_TEST, Phase.DISCHARGE}
            if self.phase in stop:
                self._set_phase(Phase.STANDBY, f"controller state {state.label}")

    def _on_insulation_test(self, msg: InsulationTest) -> None:
        if msg.test_voltage > 0:
            self._test_voltage = msg.test_voltage
            self._set_phase(Phase.INSULATION_TEST, f"Test_Voltage {msg.test_voltage:g} V")
        elif self.phase is Phase.INSULATION_TEST:
            self._insulation_tested = True
            self._set_phase(Phase.DISCHARGE, "end of insulation test: ramp down")

    def _on_precharge(self, msg: Precharge) -> None:
        if msg.maximum_current > 0:
            self._mark_tested()
            self._precharge = (msg.target_voltage, msg.maximum_current)
            self._set_phase(Phase.PRECHARGE, f"precharge to {msg.target_voltage:g} V")
        elif self.phase is Phase.PRECHARGE:
            self._set_phase(Phase.STANDBY, "precharge finished")  # PM-32: no discharge

    def _on_charging_loop(self, msg: ChargingLoop) -> None:
        if msg.target_voltage <= 0:  # (0, 0) standby; (0, I) treated as standby (A8)
            if msg.target_current != 0:
                log.warning("Charging_Loop 0 V with %g A: treated as standby", msg.target_current)
            if self.phase is Phase.INSULATION_TEST:
                self._insulation_tested = True
                self._set_phase(Phase.DISCHARGE, "standby after insulation test: ramp down")
            elif self.phase in (Phase.PRECHARGE, Phase.CHARGING):
                self._set_phase(Phase.STANDBY, "Charging_Loop standby")  # PM-24
            return
        self._mark_tested()
        self._target = (msg.target_voltage, max(0.0, msg.target_current))  # PM-37
        self._set_phase(Phase.CHARGING, "Charging_Loop request")

    def _mark_tested(self) -> None:
        if self.phase in (Phase.INSULATION_TEST, Phase.DISCHARGE):
            self._insulation_tested = True

    def _check_measurement(self, m: Measurement) -> None:
        cfg = self.config
        if m.fault:
            if not self._latched:
                self._latch(f"converter fault: {m.fault}")  # PM-23
            return
        if (
            self._insulation_tested
            and self.phase in (Phase.PRECHARGE, Phase.CHARGING)
            and cfg.insulation_min_ohm_per_volt > 0
            and m.voltage > cfg.insulation_check_min_voltage
            and m.insulation_resistance_ohm < cfg.insulation_min_ohm_per_volt * m.voltage
        ):
            self._latch(
                f"insulation fault: {m.insulation_resistance_ohm / 1000:.1f} kOhm at "
                f"{m.voltage:.0f} V (< {cfg.insulation_min_ohm_per_volt:g} Ohm/V)"
            )

    def _setpoint(self, caps: Capabilities, dt: float) -> Setpoint:
        cfg = self.config
        phase = self.phase
        state = int(self.state) if self.state is not None else -1
        if phase is Phase.DISCHARGE:
            if state not in DISCHARGE_STATES:
                return OFF
            return Setpoint(Mode.DISCHARGE, cfg.discharge_voltage, 0.0)
        if phase not in POWER_PHASES or state not in SOURCING_STATES:  # PM-43
            return OFF
        op_v, op_i, op_p = self._limits
        v_max = min(caps.max_voltage, op_v)
        if phase is Phase.INSULATION_TEST:
            v, i = self._test_voltage, cfg.insulation_test_current
        elif phase is Phase.PRECHARGE:
            v, i = self._precharge
        else:
            v, i = self._target
        v = min(v, v_max)
        if v <= 0 or v < caps.min_voltage:
            return OFF
        i_max = min(caps.current_limit_at(v), op_i, op_p / v)
        i = max(0.0, min(i, i_max))
        if phase is Phase.CHARGING:  # PM-35: ramp up, cut at once
            rate = cfg.current_ramp_rate
            if rate > 0 and i > self._ramped_current:
                i = min(i, self._ramped_current + rate * dt)
            self._ramped_current = i
        return Setpoint(Mode.REGULATE, v, i)

    def _status(self, m: Measurement | None) -> PowerModulesStatus:
        enable = Permission.ALLOWED if self.system_enable else Permission.NOT_ALLOWED
        if m is None:
            return PowerModulesStatus(0.0, 0.0, 0.0, 0.0, enable, 0.0)
        return PowerModulesStatus(
            present_voltage=max(0.0, m.voltage),
            present_current=m.current,
            power_modules_temperature=m.module_temperature,
            enclosure_temperature=m.enclosure_temperature,
            system_enable=enable,
            insulation_resistance=m.insulation_resistance_ohm / 1000.0,  # Ohm -> kOhm
        )


class ControlLoop:
    """One control period: read the converter, step the state machine, apply the setpoint.

    Shared by the node and the tests, so both drive a backend the same way. Pure: ``now`` is an
    argument. A :class:`ConverterFault` from the backend latches the state machine off (the
    backend has already stopped its output).
    """

    def __init__(self, module: PowerModule, backend: PowerStage) -> None:
        self.module = module
        self.backend = backend
        self.awake = False
        self.applied: Setpoint = OFF
        self.measurement: Measurement | None = None
        self.capabilities: Capabilities | None = None
        self.output: PowerModuleOutput | None = None

    def tick(self, now: float) -> PowerModuleOutput:
        """Run one control period at ``now``; return the state machine's output."""
        pm, backend = self.module, self.backend
        try:
            self.measurement = backend.read(now)
            self.capabilities = backend.capabilities(now)
        except ConverterFault as exc:
            self.measurement = None
            pm.on_fault(now, str(exc))
        out = pm.step(now, self.measurement, self.capabilities)
        try:
            if out.wake and not self.awake:
                backend.wake()
                self.awake = True
            elif not out.wake and self.awake:
                backend.sleep()
                self.awake = False
            self.applied = backend.apply(out.setpoint, now)
        except ConverterFault as exc:
            pm.on_fault(now, str(exc))
            backend.stop()
            self.applied = OFF
            out = pm.step(now, None, None)
        self.output = out
        return out

    def stop(self) -> None:
        """Output off now (never raises)."""
        self.backend.stop()
        self.applied = OFF
