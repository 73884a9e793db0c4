"""The power-module side of the Generic EVSE CAN interface (v2 and v3) as a pure state machine.

:class:`PowerModule` turns the controller's decoded messages (typed dataclasses of
:mod:`evse_can_ros.protocol`) into converter setpoints and our ``Power_Modules_Status``. It has
no rclpy, no threads and no clock: the caller (:class:`~evse_can_ros.core.converter_driver.
ConverterDriver`) calls

* :meth:`PowerModule.on_message` for every controller message (``Advantics_Controller_Status``
  included),
* :meth:`PowerModule.on_link_lost` when the bridge reports the heartbeat lost (PM-07, PM-44),
* :meth:`PowerModule.on_fault` when the converter backend fails (or an internal error happens),
* :meth:`PowerModule.set_limits` with the session limits sent to the controller (PM-34, A10),
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

One state machine serves both interface versions: every power command is first turned into a
version-neutral :class:`PowerRequest` (:func:`power_request`; v3 digest 5.4 maps the v2 frames
onto v3's DC_Power_Control), and the differences are data (:class:`PowerModule` ``version``):

* v2 requests are unidirectional (a negative ``Target_Current`` regulates at 0 A, PM-37); every
  standby request after the insulation test asks for the discharge (A13).
* v3 requests are signed (negative = from the vehicle) in Target_Mode and Range_Mode; the output
  is lowered only when ``Lower_Output_Voltage`` asks for it: after the insulation test (states
  3/4) and on entering Closing_Communication, never in Ending_Charge (B2, we have no output
  contactors); Off is standby; an undefined ``Power_Function`` latches a protocol fault (B1).
  Range_Mode operating point (B3, V3-07): ``OCPP_Control.Dynamic_Target_Current`` if the CSMS
  sent one in this session, else the local policy (:meth:`PowerModule.set_operating_point`,
  from the Charge goal), else ``Current_Range_Max``, clamped into the range on every step. A
  direction change ramps through 0 A (B4): the magnitude is cut at once, then ramps up again.
  Discharge (negative current) needs a backend that declares it (``Capabilities``) *and* a
  session discharge limit (:meth:`PowerModule.set_limits`, 0 = none allowed); otherwise it
  regulates at 0 A. Its voltage floor is the vehicle's ``EV_Minimum_Voltage`` when known.

Decisions (spec §12 recommended decisions unless stated):

* A1/A2: no counting of insulation iterations; the true resistance is reported every cycle.
* A5: System_Enable = 0 until the modules are first ready in a session, then 1 for the whole
  session; 0 again only for a latched fault (session refused / emergency shutdown, PM-23).
* A6: System_Enable does not wait for any controller state.
* A7/PM-08/PM-42, the re-arm rule: any ``Emergency_Stop``, a lost heartbeat or link, a converter
  fault or an internal error latches the output off; each further ``Emergency_Stop`` frame
  re-arms the latch. The latch is cleared only by a ``New_Charge_Session`` of a *new* session:
  if the latch happened after this session's first ``New_Charge_Session``, a session boundary
  must be seen first (``Charge_Session_Finished``, a no-session state 0/1/12, or
  Negotiating_Connection entered from anything but Waiting_For_PEV); if it happened before any
  ``New_Charge_Session`` of the session (states 0-2, 11, 12: nothing was powered), the session's
  first ``New_Charge_Session`` clears it. The repeated frames of a faulted session never do.
* A8/PM-37: (0 V, any A) = standby; ``Target_Current`` <= 0 with a voltage = regulate at 0 A.
* A9/PM-43: power (REGULATE) only while the latest state is 3..7; DISCHARGE only in 3..4.
* A10/PM-34: the session limits sent in ``Power_Modules_Limits`` (and the goal's power limit) are
  enforced here too, on top of the converter's capabilities (0 = no limit of ours).
* A13/PM-28: active discharge to ``discharge_voltage`` (default 10 V) after the insulation test.
  A20 (CHAdeMO-safe): the discharge stops at once when the state leaves 3/4 (v3: 3/4/10), when
  the output voltage rises by ``discharge_rise_limit`` above its lowest value in the discharge (a
  battery has been connected), or after ``discharge_timeout`` (a battery holds the voltage up):
  the bleeder never loads a battery for long. After a stop for a rise or the timeout, no further
  discharge in that session.
* A17: AC sessions (``CCS_PWM`` / ``CCS_AC``) are refused (System_Enable stays 0).
* A18/PM-45: on a *change* of the controller state: into a no-session state the session ends
  (PM-48); into 5/6/8/9/10/13 or an unknown state any power function stops (standby). D1: a
  ``Charging_Loop`` request received after the previous state frame is not cancelled by a state
  6 frame that lags it (the state frame can lag the first request by up to 100 ms, A9).
* Deviation/addition: commands are acted on only inside a session opened by
  ``New_Charge_Session`` (a driver restarted mid-session does not resume power).
* Addition (defence in depth, PM-29): after the insulation test, for the rest of the session
  (precharge, charging, standby with the battery connected, welding detection), a measured
  insulation resistance below ``insulation_min_ohm_per_volt`` x the higher of the measured and
  the session's test voltage (spec A2: the controller uses the test voltage; evaluated above
  ``insulation_check_min_voltage``) latches the output off and sets System_Enable = 0, without
  waiting for the controller's emergency stop (which it only raises while a power function is
  active).
* Addition: ``link_timeout``: if no controller message at all (the bridge publishes the state
  every 100 ms) arrives for that long, the output latches off (bridge dead or hung). A step that
  comes late (more than half of ``link_timeout`` after the previous one: this process was
  starved, its queue may hold the messages) defers the decision to the next step, which trips if
  the silence is still there: at most one control period later, never a false trip from our own
  scheduling delay.
* Status: the measured values of the last *valid* measurement. Without one yet, no status at all
  (:attr:`PowerModuleOutput.status` is None: the bridge sends nothing, so the power side counts
  as absent); after a converter fault the last valid values go out with System_Enable = 0, never
  an invented 0 V (a stale 0 V could let the controller unlock a live connector).
* PM-40 (CHAdeMO <= 10 V for unlocking) relies on the converter's permanent output bleed once
  the vehicle has opened its contactors; the state machine reports the true voltage and never
  holds the output up outside a power function.
"""

from __future__ import annotations

import enum
import logging
import math
from dataclasses import dataclass, field

from evse_can_ros.config import check, param
from evse_can_ros.core.controller_states import (
    BEFORE_POWER,
    DISCHARGE_ALLOWED,
    LOWERING_AT_CLOSE,
    SOURCING,
    STANDBY_ON_ENTRY,
    is_session_boundary,
)
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
    DcPowerControl,
    EmergencyStop,
    EvInformationVoltages,
    InsulationTest,
    NewChargeSession,
    NewChargeSessionV3,
    OcppControl,
    Permission,
    PlugAndPins,
    PowerFunction,
    PowerModulesStatus,
    Precharge,
    ProtocolVersion,
    SetpointsMode,
    VoltageLowering,
)

log = logging.getLogger(__name__)


class Phase(str, enum.Enum):
    """Phase of the power-module state machine (see module docstring)."""

    IDLE = "IDLE"
    WAKING = "WAKING"
    STANDBY = "STANDBY"
    INSULATION_TEST = "INSULATION_TEST"
    DISCHARGE = "DISCHARGE"
    PRECHARGE = "PRECHARGE"
    CHARGING = "CHARGING"
    OFF_LATCHED = "OFF_LATCHED"


class FaultKind(str, enum.Enum):
    """Why the output is latched off (the charge server maps the power side's own faults)."""

    NONE = "none"
    EMERGENCY_STOP = "emergency_stop"  # the controller's Emergency_Stop
    CONTROLLER_LINK = "controller_link"  # heartbeat / CAN link / bridge lost
    REFUSED = "refused"  # a session we cannot serve (AC)
    CONVERTER = "converter"  # the power stage failed (backend, measurement, module)
    INSULATION = "insulation"  # our own insulation interlock
    INTERNAL = "internal"  # an exception in our code on a safety path
    PROTOCOL = "protocol"  # a command we must not guess (v3 undefined Power_Function, B1)

    @property
    def power_side(self) -> bool:
        """True for a fault of the power side itself (not its reaction to someone else's)."""
        return self in (
            FaultKind.CONVERTER,
            FaultKind.INSULATION,
            FaultKind.INTERNAL,
            FaultKind.PROTOCOL,
        )


@dataclass(frozen=True)
class PowerRequest:
    """One power command of the controller in version-neutral terms (v3 digest 5.4).

    ``function`` uses the v3 vocabulary. Currents are signed (+ = to the vehicle):
    ``current_max`` is the target (Target_Mode), the precharge limit or the upper end of the
    range; ``current_min`` the lower end of the range (Range_Mode only).
    """

    function: PowerFunction
    voltage: float = 0.0
    current_max: float = 0.0
    current_min: float = 0.0
    range_mode: bool = False
    lowering: bool = False
    source: str = field(default="", compare=False)  # the frame, for the log


def power_request(msg: CanMessage) -> PowerRequest | None:
    """Return the power request of a controller command (None: not a power command).

    v2 (digest 5.4): ``Insulation_Test`` (V > 0) = test, (0 V) = standby with lowering;
    ``Precharge`` (I > 0) = precharge, (0 A) = standby; ``Charging_Loop`` (V > 0) = transfer at
    ``max(0, I)`` (PM-37, unidirectional), (0 V, any A) = standby with lowering (A8, A13).
    """
    if isinstance(msg, DcPowerControl):
        return PowerRequest(
            msg.power_function,
            msg.target_voltage,
            msg.current_range_max,
            msg.current_range_min,
            msg.setpoints_mode == SetpointsMode.RANGE_MODE,
            msg.lower_output_voltage == VoltageLowering.LOWERING,
            "DC_Power_Control",
        )
    if isinstance(msg, InsulationTest):
        if msg.test_voltage > 0:
            return PowerRequest(PowerFunction.INSULATION_TEST, msg.test_voltage, source="v2")
        return PowerRequest(PowerFunction.STANDBY, lowering=True, source="Insulation_Test 0 V")
    if isinstance(msg, Precharge):
        if msg.maximum_current > 0:
            i = msg.maximum_current
            return PowerRequest(PowerFunction.PRECHARGE, msg.target_voltage, i, 0.0, True)
        return PowerRequest(PowerFunction.STANDBY, source="Precharge 0 A")
    if isinstance(msg, ChargingLoop):
        if msg.target_voltage <= 0:
            if msg.target_current != 0:
                log.warning("Charging_Loop 0 V with %g A: treated as standby", msg.target_current)
            return PowerRequest(PowerFunction.STANDBY, lowering=True, source="Charging_Loop 0 V")
        i = max(0.0, msg.target_current)
        return PowerRequest(PowerFunction.POWER_TRANSFER, msg.target_voltage, i, i)
    return None


POWER_PHASES = frozenset((Phase.INSULATION_TEST, Phase.DISCHARGE, Phase.PRECHARGE, Phase.CHARGING))


@dataclass(frozen=True)
class PowerModuleConfig:
    """Configuration of the power-module state machine (node parameters)."""

    link_timeout: float = param(
        0.25,
        "no controller message (state included) for this long: output off, latched",
        unit="s",
        min=0.05,
        max=0.25,
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
    discharge_rise_limit: float = param(
        5.0,
        "the discharge stops when the output rises this much above its lowest value (battery)",
        unit="V",
        min=1.0,
        max=50.0,
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
    discharge_timeout: float = param(
        3.0,
        "an output discharge (lowering) that has not reached discharge_voltage by then stops",
        unit="s",
        min=0.2,
        max=30.0,
    )
    sleep_when_idle: bool = param(True, "let the power modules sleep outside sessions")

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class PowerModuleOutput:
    """Result of :meth:`PowerModule.step`."""

    setpoint: Setpoint
    status: PowerModulesStatus | None  # Power_Modules_Status content (kOhm); None: nothing valid
    phase: Phase
    wake: bool
    fault: str  # latched fault, "" = none


class PowerModule:
    """See module docstring."""

    def __init__(
        self,
        config: PowerModuleConfig | None = None,
        version: ProtocolVersion = ProtocolVersion.V2,
    ) -> None:
        self.config = config or PowerModuleConfig()
        self.version = ProtocolVersion.of(version)
        v3 = self.version is ProtocolVersion.V3
        self._discharge_states = DISCHARGE_ALLOWED | (LOWERING_AT_CLOSE if v3 else frozenset())
        self.phase = Phase.IDLE
        self.state: ControllerState | None = None  # latest Advantics_Controller_Status.State
        self.fault = ""  # latched fault text ("" = none)
        self.fault_kind = FaultKind.NONE
        self.session: NewChargeSession | NewChargeSessionV3 | None = None
        self.enabled = False  # System_Enable granted in this session (A5)
        self.session_energy_wh = 0.0  # delivered to the vehicle (>= 0)
        self.session_energy_exported_wh = 0.0  # taken from the vehicle (<= 0, v3)
        self.last_measurement: Measurement | None = None  # the last valid one
        self._latched = False
        self._ncs_in_session = False  # a New_Charge_Session since the last session boundary
        self._latched_after_ncs = False  # the latch needs a session boundary to clear (A7)
        self._last_controller: float | None = None
        self._silence_deferred = False  # a late step saw the link silent (link_timeout)
        self._last_state_frame: float | None = None
        self._previous_state_frame: float | None = None
        self._request_time: float | None = None  # last Charging_Loop request (D1)
        self._last_step: float | None = None
        self._test_voltage = 0.0
        self._precharge = (0.0, 0.0)
        self._transfer: PowerRequest | None = None
        self._ramped_current = 0.0
        self._insulation_tested = False
        self._session_test_voltage = 0.0  # highest Test_Voltage of the session (spec A2)
        self._discharge_floor = math.inf
        self._discharge_since: float | None = None
        self._discharge_blocked = False  # a discharge stopped on a rise or timeout (A20)
        self._dynamic_target: float | None = None  # OCPP_Control in this session (v3)
        self._operating_point: float | None = None  # local Range_Mode policy (v3)
        self._ev_min_voltage = 0.0  # EV_Minimum_Voltage, 0 = not provided (v3)
        self._limits: tuple[float, float, float] = (math.inf, math.inf, math.inf)
        self._discharge_limit = 0.0  # A, magnitude; 0 = no discharge in this session

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

    @property
    def limits(self) -> tuple[float, float, float]:
        """Session limits enforced locally: voltage [V], current [A], power [W] (inf = none)."""
        return self._limits

    @property
    def discharge_limit(self) -> float:
        """Largest current the session may take from the vehicle [A, magnitude] (0 = none)."""
        return self._discharge_limit

    def set_limits(
        self,
        max_voltage: float | None = None,
        max_current: float | None = None,
        max_power: float | None = None,
        max_discharge_current: float | None = None,
    ) -> None:
        """Session limits [V, A, W] on top of the converter capabilities (None or 0 = no limit).

        Called with the limits sent to the controller in Power_Modules_Limits /
        DC_Power_Parameters (0 there means "controller default", which is no limit of ours)
        and the goal's power limit (PM-34, A10). ``max_discharge_current`` [A, magnitude] is the
        opposite: None or 0 = no discharge at all (v3: a discharge needs a goal that allows it).
        """
        values = []
        for name, v in (
            ("max_voltage", max_voltage),
            ("max_current", max_current),
            ("max_power", max_power),
            ("max_discharge_current", max_discharge_current),
        ):
            if v is None or v == 0:
                values.append(math.inf)
            elif not isinstance(v, (int, float)) or math.isnan(v) or v < 0:
                raise ValueError(f"{name} must be >= 0 or None, got {v}")
            else:
                values.append(float(v))
        limits = (values[0], values[1], values[2])
        discharge = 0.0 if math.isinf(values[3]) else values[3]
        if limits != self._limits or discharge != self._discharge_limit:
            log.info(
                "session limits %s V, %s A, %s W, discharge %s A",
                *(f"{x:g}" for x in (*limits, discharge)),
            )
        self._limits = limits
        self._discharge_limit = discharge

    def set_operating_point(self, current: float | None) -> None:
        """Local Range_Mode policy [A, signed] (None: Current_Range_Max, B3); v3 only.

        Clamped into the controller's range (and the limits) on every step; an
        ``OCPP_Control.Dynamic_Target_Current`` of the session takes precedence.
        """
        if current is not None and not math.isfinite(current):
            raise ValueError(f"operating point must be finite or None, got {current}")
        if current != self._operating_point:
            log.info("range-mode operating point: %s", "maximum" if current is None else current)
        self._operating_point = current

    def on_message(self, msg: CanMessage, now: float) -> None:
        """Take one decoded controller message received at ``now``."""
        self._last_controller = now
        if isinstance(msg, AdvanticsControllerStatus):
            self._previous_state_frame, self._last_state_frame = self._last_state_frame, now
            self._on_state(msg.state)
        elif isinstance(msg, EmergencyStop):
            self._latch(f"emergency stop (origin {msg.origin.label})", FaultKind.EMERGENCY_STOP)
        elif isinstance(msg, (NewChargeSession, NewChargeSessionV3)):
            self._on_new_session(msg)
        elif isinstance(msg, ChargeSessionFinished):
            if self.in_session or self._latched:
                log.info("Charge_Session_Finished (%s): output off", msg.state.label)
            self._end_session()  # PM-41
            self._session_boundary()
        elif isinstance(msg, EvInformationVoltages):
            self._ev_min_voltage = max(0.0, msg.ev_minimum_voltage)  # 0 = not provided (V3-11)
        elif not self._can_command():
            request = power_request(msg)
            if request is not None and request.lowering and not self._latched:
                self._on_standby(request, now)  # v3: lowering in Closing_Communication, after
            return  # Charge_Session_Finished (v3 digest 5.3, situation 3)
        elif isinstance(msg, OcppControl):
            self._dynamic_target = msg.dynamic_target_current
            log.info("OCPP_Control: dynamic target %g A", msg.dynamic_target_current)
        elif (request := power_request(msg)) is not None:
            self._on_request(request, now)
        elif isinstance(msg, ChargeStatusChange):
            if msg.vehicle_ready_for_charging == ChargeStatus.CHARGE_STARTED:
                if self.phase is not Phase.CHARGING and self.phase is not Phase.WAKING:
                    self._set_phase(Phase.STANDBY, "Charge_Started: ready")  # PM-33
            elif self.phase in POWER_PHASES:
                self._set_phase(Phase.STANDBY, "Charge_Stopped")  # PM-38
        # everything else (inputs, EV ID, extra information) is ignored (PM-46)

    def on_link_lost(self, now: float, reason: str) -> None:
        """Handle a lost controller heartbeat or CAN link: off at once, latched (PM-07/08/44)."""
        self._latch(f"controller link lost: {reason}", FaultKind.CONTROLLER_LINK)

    def on_fault(self, now: float, reason: str) -> None:
        """Handle a converter failure (ConverterFault): off, latched until a new session."""
        self._latch(f"converter fault: {reason}", FaultKind.CONVERTER)

    def on_internal_error(self, now: float, where: str, reason: str) -> None:
        """Handle an exception in our own code on a safety path: off, latched."""
        self._latch(f"internal error in {where}: {reason}", FaultKind.INTERNAL)

    # --- the control step ------------------------------------------------------------------------

    def step(
        self, now: float, measurement: Measurement | None, capabilities: Capabilities | None
    ) -> PowerModuleOutput:
        """Advance to ``now`` with the latest measurement (None: none valid this period)."""
        cfg = self.config
        dt = 0.0 if self._last_step is None else max(0.0, now - self._last_step)
        self._last_step = now
        silent = (
            self._last_controller is not None
            and now - self._last_controller > cfg.link_timeout
            and not self._latched
        )
        if silent and (dt <= cfg.link_timeout / 2 or self._silence_deferred):
            assert self._last_controller is not None
            self._latch(
                f"no controller message for {now - self._last_controller:.2f} s "
                f"(link_timeout {cfg.link_timeout:g} s)",
                FaultKind.CONTROLLER_LINK,
            )
        self._silence_deferred = silent  # late step: the queued messages get one more step
        if measurement is not None:
            self.last_measurement = measurement
            self._check_measurement(measurement)
        m = self.last_measurement
        caps = capabilities or NO_CAPABILITIES
        if measurement is not None and self.in_session and not self._latched and measurement.ready:
            if not self.enabled:
                log.info("power modules ready: System_Enable = Allowed")  # PM-22
            self.enabled = True
            if self.phase is Phase.WAKING:
                self._set_phase(Phase.STANDBY, "modules ready")
        if self.phase is Phase.DISCHARGE and measurement is not None:
            self._supervise_discharge(measurement.voltage, now)
        setpoint = self._setpoint(caps, dt)
        if measurement is not None and self.in_session:
            energy = measurement.voltage * measurement.current * dt / 3600.0
            if energy > 0:
                self.session_energy_wh += energy
            else:
                self.session_energy_exported_wh += energy
        return PowerModuleOutput(
            setpoint=setpoint,
            status=self._status(m),
            phase=self.phase,
            wake=(self.in_session and not self._latched)
            or self.phase is Phase.DISCHARGE
            or not cfg.sleep_when_idle,
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
            if phase is Phase.DISCHARGE:
                self._discharge_floor = math.inf
            self.phase = phase

    def _latch(self, reason: str, kind: FaultKind) -> None:
        if not self._latched:
            log.error("output off, latched until a new session: %s", reason)
            self._latched = True
            self.fault = reason
            self.fault_kind = kind
            self._latched_after_ncs = self._ncs_in_session
        elif self._ncs_in_session:
            self._latched_after_ncs = True  # e.g. an emergency stop re-arms it (PM-42)
        self._set_phase(Phase.OFF_LATCHED, reason)
        self._clear_targets()

    def _session_boundary(self) -> None:
        self._ncs_in_session = False
        self._latched_after_ncs = False

    def _clear_targets(self) -> None:
        self._test_voltage = 0.0
        self._precharge = (0.0, 0.0)
        self._transfer = None
        self._ramped_current = 0.0
        self._request_time = None

    def _end_session(self) -> None:
        self.session = None
        self.enabled = False
        self._insulation_tested = False
        self._clear_targets()
        if not self._latched:
            self._set_phase(Phase.IDLE, "session over")

    def _on_new_session(self, msg: NewChargeSession | NewChargeSessionV3) -> None:
        if self._latched and self._latched_after_ncs:
            return  # repeated frames of the faulted session: stay off (PM-08, PM-42, A7)
        self._ncs_in_session = True
        if self.in_session and not self._latched:
            return  # repeated until System_Enable = Allowed
        if self._latched:
            log.info("new session: clearing latched fault (%s)", self.fault)
        self._latched = False
        self.fault = ""
        self.fault_kind = FaultKind.NONE
        self.session = msg
        self.enabled = False
        self.session_energy_wh = 0.0
        self.session_energy_exported_wh = 0.0
        self._insulation_tested = False
        self._session_test_voltage = 0.0
        self._discharge_blocked = False
        self._dynamic_target = None
        self._ev_min_voltage = 0.0
        self._clear_targets()
        self._set_phase(
            Phase.WAKING,
            f"New_Charge_Session {msg.communication_protocol.label}/{msg.plug_and_pins.label}",
        )
        if (
            msg.communication_protocol == CommunicationProtocol.CCS_PWM
            or msg.plug_and_pins == PlugAndPins.CCS_AC
        ):
            self._latch(
                f"AC session ({msg.communication_protocol.label}) refused (spec A17)",
                FaultKind.REFUSED,
            )

    def _on_state(self, state: ControllerState) -> None:
        previous, self.state = self.state, state
        if state == previous:
            return
        log.info(
            "controller state %s -> %s",
            previous.label if previous is not None else "-",
            state.label,
        )  # PM-49
        if is_session_boundary(previous, state):
            self._session_boundary()
        if state in BEFORE_POWER:
            if self.in_session:
                self._end_session()  # PM-48
            return
        if self.phase is Phase.DISCHARGE and state not in self._discharge_states:
            after = Phase.STANDBY if self.in_session else Phase.IDLE
            self._set_phase(after, f"controller state {state.label}: discharge stopped")
        if state in STANDBY_ON_ENTRY or not state.known:  # A18, PM-45
            if state == ControllerState.PRECHARGE:
                stop = {Phase.INSULATION_TEST, Phase.DISCHARGE}
            elif state == ControllerState.WAITING_FOR_CHARGE and self._fresh_request():
                stop = set()  # D1: the state frame lags a newer Charging_Loop request (A9)
            else:
                stop = set(POWER_PHASES)
            if self.phase in stop:
                self._set_phase(Phase.STANDBY, f"controller state {state.label}")

    def _fresh_request(self) -> bool:
        """Return True if the last Charging_Loop request came after the previous state frame."""
        return (
            self.phase is Phase.CHARGING
            and self._request_time is not None
            and (
                self._previous_state_frame is None
                or self._request_time > self._previous_state_frame
            )
        )

    def _on_request(self, req: PowerRequest, now: float) -> None:
        f = req.function
        if f == PowerFunction.INSULATION_TEST and req.voltage > 0:
            self._test_voltage = req.voltage
            self._session_test_voltage = max(self._session_test_voltage, req.voltage)
            self._set_phase(Phase.INSULATION_TEST, f"Test_Voltage {req.voltage:g} V")
        elif f == PowerFunction.PRECHARGE and req.current_max > 0:
            self._mark_tested()
            self._precharge = (req.voltage, req.current_max)
            self._set_phase(Phase.PRECHARGE, f"precharge to {req.voltage:g} V")
        elif f == PowerFunction.POWER_TRANSFER:
            self._mark_tested()
            self._transfer = req
            self._request_time = now
            self._set_phase(Phase.CHARGING, "power transfer request")
        elif f in (PowerFunction.OFF, PowerFunction.STANDBY) or f.known:
            self._on_standby(req, now)  # also a test at 0 V or a precharge at 0 A
        else:
            self._latch(
                f"protocol fault: DC_Power_Control Power_Function {int(f)} is undefined (B1)",
                FaultKind.PROTOCOL,
            )

    def _on_standby(self, req: PowerRequest, now: float) -> None:
        """No power conversion; lower the output where the version allows it (A13, v3 5.3)."""
        why = req.source or req.function.label
        if self.phase is Phase.INSULATION_TEST:
            self._insulation_tested = True
            if req.lowering:
                self._start_discharge(now, f"{why} after the insulation test: ramp down")
            else:
                self._set_phase(Phase.STANDBY, f"{why}: end of insulation test")
        elif self.phase in (Phase.PRECHARGE, Phase.CHARGING):
            self._set_phase(Phase.STANDBY, why)  # PM-24, PM-32: no discharge
        elif (
            req.lowering
            and self.phase in (Phase.STANDBY, Phase.IDLE)
            and self.version is ProtocolVersion.V3
            and self.state in self._discharge_states
            and (self._insulation_tested or self.state in LOWERING_AT_CLOSE)
            and self.last_measurement is not None
            and self.last_measurement.voltage > self.config.discharge_voltage
        ):
            self._start_discharge(now, f"{why}: Lower_Output_Voltage")

    def _start_discharge(self, now: float, why: str) -> None:
        if self._discharge_blocked:
            self._set_phase(Phase.STANDBY, f"{why}: refused, a battery held the voltage up")
            return
        self._discharge_since = now
        self._set_phase(Phase.DISCHARGE, why)

    def _mark_tested(self) -> None:
        if self.phase in (Phase.INSULATION_TEST, Phase.DISCHARGE):
            self._insulation_tested = True

    def _supervise_discharge(self, voltage: float, now: float) -> None:
        cfg = self.config
        since = now if self._discharge_since is None else self._discharge_since
        after = Phase.STANDBY if self.in_session else Phase.IDLE
        if voltage <= cfg.discharge_voltage:
            self._set_phase(after, f"output discharged to {voltage:.1f} V")
        elif voltage > self._discharge_floor + cfg.discharge_rise_limit:
            self._discharge_blocked = True
            self._set_phase(
                after,
                f"output voltage rising during the discharge ({self._discharge_floor:.1f} -> "
                f"{voltage:.1f} V): a battery is connected, discharge stopped",
            )
        elif now - since > cfg.discharge_timeout:
            self._discharge_blocked = True
            self._set_phase(
                after,
                f"output still at {voltage:.1f} V after {now - since:.1f} s of discharge "
                f"(discharge_timeout): a battery may be connected, discharge stopped",
            )
        else:
            self._discharge_floor = min(self._discharge_floor, voltage)

    def _check_measurement(self, m: Measurement) -> None:
        cfg = self.config
        if m.fault:
            if not self._latched:
                self._latch(f"converter fault: {m.fault}", FaultKind.CONVERTER)  # PM-23
            return
        if (
            self._insulation_tested
            and self.in_session
            and self.phase not in (Phase.INSULATION_TEST, Phase.DISCHARGE, Phase.OFF_LATCHED)
            and cfg.insulation_min_ohm_per_volt > 0
            and m.voltage > cfg.insulation_check_min_voltage
            and m.insulation_resistance_ohm
            < cfg.insulation_min_ohm_per_volt * max(m.voltage, self._session_test_voltage)
        ):
            self._latch(
                f"insulation fault: {m.insulation_resistance_ohm / 1000:.1f} kOhm at "
                f"{max(m.voltage, self._session_test_voltage):.0f} V "
                f"(< {cfg.insulation_min_ohm_per_volt:g} Ohm/V)",
                FaultKind.INSULATION,
            )

    def _setpoint(self, caps: Capabilities, dt: float) -> Setpoint:
        cfg = self.config
        phase = self.phase
        state = self.state
        if phase is Phase.DISCHARGE:
            if state not in self._discharge_states:
                return OFF
            return Setpoint(Mode.DISCHARGE, cfg.discharge_voltage, 0.0)
        if phase not in POWER_PHASES or state not in SOURCING:  # PM-43
            return OFF
        op_v, op_i, op_p = self._limits
        v_max = min(caps.max_voltage, op_v)
        if phase is Phase.INSULATION_TEST:
            v, i = self._test_voltage, cfg.insulation_test_current
        elif phase is Phase.PRECHARGE:
            v, i = self._precharge
        else:
            return self._transfer_setpoint(caps, dt)
        v = min(v, v_max)
        if v <= 0 or v < caps.min_voltage:
            return OFF
        i_max = min(caps.current_limit_at(v), op_i, op_p / v)
        return Setpoint(Mode.REGULATE, v, max(0.0, min(i, i_max)))

    def _transfer_setpoint(self, caps: Capabilities, dt: float) -> Setpoint:
        """Power transfer: the signed request, limited, ramped through 0 A (PM-35, B4)."""
        req = self._transfer
        if req is None:
            return OFF
        op_v, op_i, op_p = self._limits
        v = min(req.voltage, caps.max_voltage, op_v)
        floor = max(self._ev_min_voltage, caps.min_voltage)
        can_discharge = caps.discharge_limit_at(floor) > 0 and self._discharge_limit > 0
        i = self._operating_current(req, can_discharge)
        if i >= 0:
            if v <= 0 or v < caps.min_voltage:
                return OFF
            i = min(i, caps.current_limit_at(v), op_i, op_p / v)
        else:  # from the vehicle, never below its minimum voltage (v3)
            v = floor
            i = -min(-i, caps.discharge_limit_at(v), self._discharge_limit, op_p / max(v, 1.0))
        ramped, rate = self._ramped_current, self.config.current_ramp_rate
        if ramped * i < 0:
            i = 0.0  # direction change: through 0 A first (B4)
        elif rate > 0 and abs(i) > abs(ramped):
            step = rate * dt
            i = min(i, ramped + step) if i > 0 else max(i, ramped - step)
        self._ramped_current = i
        if i < 0:
            return Setpoint(Mode.REGULATE, v, i)
        return Setpoint(Mode.REGULATE, v, i) if v > 0 else OFF

    def _operating_current(self, req: PowerRequest, can_discharge: bool) -> float:
        """Return the requested current [A, signed]: the target or a point in the range (B3).

        The local policy's discharge needs a stage and a session that allow one; otherwise the
        range maximum (a unidirectional charger in a V2G session charges).
        """
        if not req.range_mode:
            return req.current_max
        low, high = req.current_min, req.current_max
        if low > high:
            return 0.0  # an inverted range: nothing is acceptable, deliver nothing
        wanted = self._dynamic_target
        if wanted is None:
            local = self._operating_point
            wanted = high if local is None or (local < 0 and not can_discharge) else local
        return min(max(wanted, low), high)

    def _status(self, m: Measurement | None) -> PowerModulesStatus | None:
        if m is None:
            return None
        enable = Permission.ALLOWED if self.system_enable else Permission.NOT_ALLOWED
        return PowerModulesStatus(
            present_voltage=max(0.0, m.voltage),  # noise around 0 V only (power_stage)
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
        """Run one control period at ``now``; return the state machine's output.

        When this period switches the output off, the converter is read once more after the
        switch-off, so the status shows the output as it is now (e.g. 0 A after an emergency
        stop), not as it was before.
        """
        pm, backend = self.module, self.backend
        was_on = self.applied.mode is not Mode.OFF
        self._measure(now)
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
            self.measurement = None
            out = pm.step(now, None, None)
        if was_on and self.applied.mode is Mode.OFF and self.measurement is not None:
            self._measure(now)
            out = pm.step(now, self.measurement, self.capabilities)
        self.output = out
        return out

    def _measure(self, now: float) -> None:
        try:
            self.measurement = self.backend.read(now)
            self.capabilities = self.backend.capabilities(now)
        except ConverterFault as exc:
            self.measurement = None
            self.module.on_fault(now, str(exc))

    def stop(self) -> None:
        """Output off now (never raises)."""
        self.backend.stop()
        self.applied = OFF
