"""The converter driver's decisions, without ROS: what the ``converter_driver`` node runs.

:class:`ConverterDriver` owns the power-module state machine
(:class:`~evse_can_ros.core.power_module.PowerModule`) and its control loop on one power stage
(a converter backend). The node (or the in-memory charger, :mod:`evse_can_ros.core.charger`)
only translates topics into these calls and schedules :meth:`ConverterDriver.tick`:

* :meth:`on_controller_state`: the bridge's ``controller_state`` (PM-07/44: a lost heartbeat
  switches off at once, latched; before the first heartbeat there is nothing to lose);
* :meth:`on_message`: the controller's commands; an ``Emergency_Stop`` acts inside the call
  (fast path: latch, output off, fresh measurement), the returned report says what to publish;
* :meth:`on_limits`: the session limits sent to the controller (enforced locally, PM-34/A10),
  with the discharge limit in v3 (0 = no discharge);
* :meth:`set_operating_point`: the charge server's Range_Mode policy (v3, B3);
* :meth:`tick`: one control period;
* :meth:`internal_error`: an exception in our own code on a safety path (timer, subscription,
  receive thread): counted, output off, latched, reported (System_Enable = 0);
* :meth:`shutdown`: output off, never raises (deactivate, destroy, SIGINT/SIGTERM).

Every call takes ``now`` (monotonic seconds); nothing here reads a clock or starts a thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from evse_can_ros.core.power_module import (
    ControlLoop,
    FaultKind,
    Phase,
    PowerModule,
    PowerModuleConfig,
    power_request,
)
from evse_can_ros.core.power_stage import (
    Capabilities,
    FollowsControllerState,
    Measurement,
    Mode,
    PowerStage,
    Setpoint,
)
from evse_can_ros.protocol import (
    AdvanticsControllerStatus,
    CanMessage,
    ChargeStatusChange,
    ChargingLoop,
    ControllerState,
    DcPowerControl,
    EmergencyStop,
    Permission,
    PowerFunction,
    PowerModulesStatus,
    ProtocolVersion,
)
from evse_can_ros.text import one_line

log = logging.getLogger(__name__)

ACT_NOW = (EmergencyStop, ChargingLoop, DcPowerControl, ChargeStatusChange)
"""Commands acted on at once, not at the next control period."""


@dataclass(frozen=True)
class Report:
    """What the node should publish after a call (the status also goes out periodically)."""

    status: PowerModulesStatus | None  # None: no valid measurement yet, publish nothing
    publish: bool  # publish power_modules_status now (something changed)
    new_fault: str  # a fault latched by this call ("" = none): log it after publishing


@dataclass(frozen=True)
class Snapshot:
    """Everything the converter_status topic and /diagnostics show."""

    phase: Phase
    applied: Setpoint
    system_enable: bool
    fault: str
    fault_kind: FaultKind
    session_energy_wh: float
    session_energy_exported_wh: float  # <= 0: taken from the vehicle (v3)
    measurement: Measurement | None  # the last *valid* one (None before the first)
    measurement_fresh: bool  # the last read succeeded
    capabilities: Capabilities | None
    controller_state: ControllerState | None
    limits: tuple[float, float, float]
    discharge_limit: float  # A, magnitude; 0 = no discharge
    internal_errors: int


class ConverterDriver:
    """See module docstring."""

    def __init__(
        self,
        stage: PowerStage,
        config: PowerModuleConfig | None = None,
        version: ProtocolVersion = ProtocolVersion.V2,
    ) -> None:
        self.stage = stage
        self.module = PowerModule(config, version)
        self.loop = ControlLoop(self.module, stage)
        self.heartbeat_seen = False
        self.internal_errors = 0
        self._reported: tuple[Phase, str, bool] | None = None

    # --- inputs -----------------------------------------------------------------------------

    def on_controller_state(
        self, now: float, state: ControllerState | None, alive: bool, reason: str = ""
    ) -> Report | None:
        """Take the bridge's controller state; returns a report if it switched the output off."""
        if alive and state is not None:
            self.heartbeat_seen = True
            if isinstance(self.stage, FollowsControllerState):
                self.stage.follow_controller_state(int(state))
            self.module.on_message(AdvanticsControllerStatus(state), now)
            return None
        if not self.heartbeat_seen:
            return None  # no controller yet: nothing to lose
        self.module.on_link_lost(now, f"bridge reports the heartbeat lost ({reason or 'lost'})")
        return self.tick(now)

    def on_message(self, now: float, message: CanMessage) -> Report | None:
        """Take a controller command; returns a report if it was acted on at once."""
        self.module.on_message(message, now)
        request = power_request(message)
        if (
            request is not None
            and request.function == PowerFunction.PRECHARGE
            and isinstance(self.stage, FollowsControllerState)
        ):
            self.stage.follow_ev_voltage(request.voltage)
        if isinstance(message, ACT_NOW):
            return self.tick(now)
        return None

    def on_limits(
        self,
        max_voltage: float,
        max_current: float,
        max_power: float = 0.0,
        max_discharge_current: float = 0.0,
    ) -> None:
        """Take the session limits sent to the controller (0 = none of ours; discharge: none)."""
        self.module.set_limits(max_voltage, max_current, max_power, max_discharge_current)

    def set_operating_point(self, current: float | None) -> None:
        """Take the charge server's Range_Mode operating point [A, signed; None = the maximum]."""
        self.module.set_operating_point(current)

    # --- control ----------------------------------------------------------------------------

    def tick(self, now: float) -> Report:
        """Run one control period (or act on an input now); return what to publish."""
        fault_before = self.module.fault
        out = self.loop.tick(now)
        return self._report(out.phase, out.fault, fault_before)

    def internal_error(self, now: float, where: str, exc: BaseException) -> Report:
        """Handle an exception in our code on a safety path: output off, latched, counted."""
        self.internal_errors += 1
        fault_before = self.module.fault
        self.loop.stop()
        self.module.on_internal_error(now, where, f"{type(exc).__name__}: {one_line(exc)}")
        try:
            out = self.loop.tick(now)
            return self._report(out.phase, out.fault, fault_before)
        except Exception:  # the loop itself is broken: the output is off already
            log.exception("control loop failed after an internal error")
            self.loop.stop()
            status = self.status()
            return Report(status, True, self.module.fault)

    def shutdown(self, reason: str) -> None:
        """Output off now (never raises): deactivate, destroy, signals, crashes."""
        try:
            self.loop.stop()
        except Exception:  # stop() never raises; belt and braces on the way out
            log.exception("output off failed (%s)", reason)
        log.info("output off: %s", reason)

    # --- read-outs --------------------------------------------------------------------------

    @property
    def full_rate(self) -> bool:
        """True while the control loop must run at its full rate.

        That is while a session is open (also a latched one, until it ends: the controller
        watches the reported voltage fall) or the applied setpoint is not OFF (the link timeout
        and the output watchdog then count). Otherwise the output is off, the watchdog is
        disarmed and the loop only keeps the report fresh: it may run slowly (idle).
        """
        return self.module.in_session or self.loop.applied.mode is not Mode.OFF

    def status(self) -> PowerModulesStatus | None:
        """Return the Power_Modules_Status to report now (None: nothing valid yet)."""
        out = self.loop.output
        if out is None or out.status is None:
            return None
        if out.status.system_enable and not self.module.system_enable:  # latched since
            return _disabled(out.status)
        return out.status

    def snapshot(self) -> Snapshot:
        """State for converter_status and diagnostics."""
        loop, pm = self.loop, self.module
        return Snapshot(
            phase=pm.phase,
            applied=loop.applied,
            system_enable=pm.system_enable,
            fault=pm.fault,
            fault_kind=pm.fault_kind,
            session_energy_wh=pm.session_energy_wh,
            session_energy_exported_wh=pm.session_energy_exported_wh,
            measurement=pm.last_measurement,
            measurement_fresh=loop.measurement is not None,
            capabilities=loop.capabilities,
            controller_state=pm.state,
            limits=pm.limits,
            discharge_limit=pm.discharge_limit,
            internal_errors=self.internal_errors,
        )

    def _report(self, phase: Phase, fault: str, fault_before: str) -> Report:
        key = (phase, fault, self.module.system_enable)
        changed = key != self._reported
        self._reported = key
        new_fault = fault if fault and fault != fault_before else ""
        return Report(self.status(), changed, new_fault)


def _disabled(status: PowerModulesStatus) -> PowerModulesStatus:
    return replace(status, system_enable=Permission.NOT_ALLOWED)
