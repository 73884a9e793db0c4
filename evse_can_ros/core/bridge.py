"""The CAN bridge's protocol logic: supervision and what to transmit when (spec 6.1-6.5, 9-11).

Pure: frames and ``now`` (monotonic seconds) in, frames and events out. The ROS node calls
:meth:`BridgeCore.on_frame` from its receive thread and :meth:`BridgeCore.poll` from its transmit
loop (at :meth:`BridgeCore.next_wakeup` at the latest), under one lock.

Transmission (customer side, spec 11.2):

* ``Power_Modules_Status`` every ``status_period`` once the converter driver has reported a status
  (PM-09..14, A3: sent permanently while the power side reports). If that status is older than
  ``power_status_timeout`` (at most two status periods: converter node dead or hung), the frame
  keeps going out with ``System_Enable = Not_Allowed`` and the last measured values. That is an
  immediate, explicit shutdown request that the controller honours in every phase (spec 6.1,
  PM-23). We deliberately do *not* report invented zeros: a stale 0 V could let the controller
  unlock a live connector. Before the first status nothing is sent, so the power side counts as
  absent.
* ``Power_Modules_Limits`` on change, at most one frame per ``limits_min_interval`` (PM-19/20);
  the last limits are sent again when the controller enters Waiting_For_PEV / Not_Available.
* ``Sequence_Control`` on every flag change and on entry into Not_Available / Waiting_For_PEV
  (PM-15/16, A4). Start_Charge_Authorisation starts as Not_Allowed; the charge server sets it.
  Buttons are pulses: 1, then 0 ``button_pulse`` after the frame with 1 was actually sent (a
  failed send postpones the pulse, never shortens it; a press while the link is down is refused,
  PM-17). CCS authorisation sends Valid and Done in one frame (PM-18). Charge_Parameters_Done goes
  out only after a limits frame of the session was sent successfully (PM-19). Per-session flags
  are cleared after Charge_Session_Finished and when the controller returns to 1/12 from a
  session (PM-21, PM-48).
* ``ADM_CS_*_Outputs`` every ``outputs_period`` while enabled (PM-47).

Interface v3 (``codec.protocol_version`` 3, v3 digest 4.2, B7): ``DC_Power_Parameters`` takes
the place of ``Power_Modules_Limits`` (with ``Maximum_Discharge_Current``; ``Range_Target_Current``
always 0, B8) and, once set, is sent again every ``limits_min_interval`` with the same content (the
vendor example's rhythm); the vehicle data come from the ``EV_Information_*`` messages (0 = not
provided, V3-11).

Receive: frames longer than the database length (a controller that pads to 8 bytes) are decoded
from their first bytes and counted as ``rx_padded``; shorter frames are malformed (spec D8
decision: the signals are all there in a padded frame, not in a short one).

Supervision: no ``Advantics_Controller_Status`` for more than ``heartbeat_timeout`` (at most
200 ms, spec 6.13), the link reported down (bus-off, driver error), or an internal error in the
bridge's receive or transmit path makes the controller "lost" (PM-07, PM-44). The node publishes
that at once and the converter driver switches off.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields, replace
from enum import Enum
from typing import Any

from evse_can_ros.config import ConfigError, check, param
from evse_can_ros.core.controller_states import NO_SESSION
from evse_can_ros.protocol import (
    AdmCsSeccOutputs,
    AdmCsSpccOutputs,
    AdvanticsControllerStatus,
    ButtonState,
    CanFrame,
    CanMessage,
    ChargeSessionFinished,
    ChargingLoop,
    Codec,
    Completion,
    ControllerState,
    DcPowerParameters,
    EvIdCcsPart2Din,
    EvInformationBattery,
    ForeignPistolError,
    NewChargeSession,
    NewChargeSessionV3,
    Permission,
    PowerModulesLimits,
    PowerModulesStatus,
    ProtocolError,
    ProtocolVersion,
    SequenceControl,
    Validity,
)

log = logging.getLogger(__name__)

OutputsMessage = AdmCsSeccOutputs | AdmCsSpccOutputs
LimitsMessage = PowerModulesLimits | DcPowerParameters
SessionMessage = NewChargeSession | NewChargeSessionV3

# Entering these states (re)sends the flags (PM-15, A4).
_FLAG_RESEND_STATES = (ControllerState.NOT_AVAILABLE, ControllerState.WAITING_FOR_PEV)
_PER_SESSION_RESET: dict[str, Any] = {
    "chademo_start_button": ButtonState.NOT_PRESSED,
    "ccs_authorisation_done": Completion.NOT_DONE,
    "ccs_authorisation_valid": Validity.INVALID,
    "charge_parameters_done": Completion.NOT_DONE,
    "user_stop_button": ButtonState.NOT_PRESSED,
}


HOUSEKEEPING_PERIOD = 0.1
"""s: :meth:`BridgeCore.poll` runs at least this often (every deadline is in next_wakeup)."""


@dataclass(frozen=True)
class BridgeConfig:
    """Protocol timing and policy of one bridge (one pistol)."""

    pistol_index: int = param(
        1, "pistol index configured in the controller (id bits 28..24)", min=1, max=31
    )
    heartbeat_timeout: float = param(
        0.2, "controller heartbeat timeout (PM-07, spec 6.13: 200 ms)", unit="s", min=0.05, max=0.2
    )
    status_period: float = param(
        0.1, "Power_Modules_Status period (PM-09)", unit="s", min=0.02, max=0.1
    )
    power_status_timeout: float = param(
        0.2,
        "converter status older than this is stale: System_Enable=0 is sent (<= 2 periods)",
        unit="s",
        min=0.05,
        max=0.2,
    )
    limits_min_interval: float = param(
        0.1, "minimum spacing of Power_Modules_Limits (PM-20)", unit="s", min=0.1, max=10.0
    )
    button_pulse: float = param(
        0.2, "length of emulated button presses (PM-17)", unit="s", min=0.1, max=2.0
    )
    outputs_period: float = param(
        1.0, "ADM_*_Outputs period while enabled (PM-47)", unit="s", min=0.1, max=1.0
    )

    def __post_init__(self) -> None:
        check(self)
        if self.power_status_timeout > 2 * self.status_period + 1e-9:
            raise ConfigError(
                f"BridgeConfig.power_status_timeout = {self.power_status_timeout} s is above two "
                f"status periods ({2 * self.status_period:g} s): frozen values would be reported"
            )


class RxKind(Enum):
    """What :meth:`BridgeCore.on_frame` made of a frame."""

    MESSAGE = "message"  # a controller message of our pistol
    UNEXPECTED = "unexpected"  # a customer-side message of our pistol sent by someone else
    FOREIGN = "foreign"  # another pistol index (or 0)
    MALFORMED = "malformed"  # unknown id, wrong DLC, 11-bit, remote frame
    ERROR_FRAME = "error_frame"  # a bus error report


@dataclass(frozen=True)
class RxResult:
    """Outcome of one received frame."""

    kind: RxKind
    message: CanMessage | None = None
    error: str = ""


@dataclass(frozen=True)
class Event:
    """Something the node should publish or log: ``kind`` + a one-line ``text``."""

    kind: str  # "controller_alive", "controller_lost", "state", "power_status_stale",
    # "power_status_fresh", "flags_reset"
    text: str


@dataclass(frozen=True)
class Outgoing:
    """A frame to send now and the typed message it carries."""

    message: CanMessage
    frame: CanFrame


@dataclass(frozen=True)
class VehicleView:
    """The vehicle of the present session (sensor_msgs/BatteryState), NaN where unknown."""

    present: bool
    protocol: str
    plug: str
    soc_fraction: float  # 0..1
    voltage: float  # [V] at the charger output
    current: float  # [A] into the vehicle
    design_capacity_ah: float  # estimate from the kWh capacity at the present voltage
    charging: bool
    ev_id: str  # hex, "" if unknown


@dataclass
class Counters:
    """Receive/transmit statistics for diagnostics."""

    rx_messages: int = 0
    rx_foreign: int = 0
    rx_malformed: int = 0
    rx_unexpected: int = 0
    rx_error_frames: int = 0
    rx_padded: int = 0
    tx_frames: int = 0
    heartbeat_losses: int = 0
    stale_power_status: int = 0
    internal_errors: int = 0


class BridgeCore:
    """Protocol state of one pistol's bridge (see module docstring)."""

    def __init__(self, codec: Codec, config: BridgeConfig | None = None) -> None:
        self.codec = codec
        self.config = config or BridgeConfig()
        self.pistol_index = self.config.pistol_index
        self.counters = Counters()
        # controller supervision
        self.controller_state: ControllerState | None = None
        self.last_heartbeat: float | None = None
        self.alive = False
        self.link_up = True
        self.last_error = ""  # the link's last error
        self.lost_reason = ""  # why the controller counts as lost
        # power side
        self.power_status: PowerModulesStatus | None = None
        self.power_status_time: float | None = None
        self.power_status_stale = False
        self._next_status: float | None = None
        # limits
        self.v3 = codec.protocol_version is ProtocolVersion.V3
        self.limits_sent: LimitsMessage | None = None
        self._limits_pending: LimitsMessage | None = None
        self._limits_last_time: float | None = None
        self.limits_power = 0.0  # [W] the power limit given with the limits (not on CAN)
        self._parameters_done_pending = False  # Done waits for the pending limits frame
        self._done_after: LimitsMessage | None = None  # limits frame handed out, Done next
        # sequence flags (Start_Charge_Authorisation Not_Allowed until the charge server says)
        self.flags = SequenceControl()
        self.flags_sent: SequenceControl | None = None
        self._flags_dirty = False
        self._pulse_release: dict[str, float | None] = {}  # None: pressed, frame not sent yet
        # controller outputs
        self.outputs: OutputsMessage | None = None
        self._next_outputs: float | None = None
        self._events: list[Event] = []
        # the vehicle of the present session (for sensor_msgs/BatteryState)
        self.session: SessionMessage | None = None
        self.soc: int | None = None
        self.capacity_kwh = 0.0  # 0 = unknown
        self.ev_id: bytes | None = None

    # --- receive ----------------------------------------------------------------------------

    def on_frame(self, now: float, frame: CanFrame) -> RxResult:
        """Classify and decode one received frame; update supervision. Never raises."""
        if frame.is_error_frame:
            self.counters.rx_error_frames += 1
            return RxResult(RxKind.ERROR_FRAME, error=f"error frame 0x{frame.arbitration_id:X}")
        try:
            spec = self.codec.message_spec_of(frame, self.pistol_index, padded_ok=True)
            if not spec.from_controller:
                self.counters.rx_unexpected += 1
                return RxResult(
                    RxKind.UNEXPECTED,
                    error=f"{spec.name} for pistol {self.pistol_index} sent by another node",
                )
            if len(frame.data) > spec.length:  # padded by the sender (spec D8 decision)
                self.counters.rx_padded += 1
                frame = replace(frame, data=frame.data[: spec.length])
            message = self.codec.decode(frame, self.pistol_index)
        except ForeignPistolError as exc:
            self.counters.rx_foreign += 1
            return RxResult(RxKind.FOREIGN, error=str(exc))
        except ProtocolError as exc:
            self.counters.rx_malformed += 1
            return RxResult(RxKind.MALFORMED, error=str(exc))
        self.counters.rx_messages += 1
        if isinstance(message, AdvanticsControllerStatus):
            self._on_heartbeat(now, message.state)
        elif isinstance(message, ChargeSessionFinished):
            self._reset_session_flags("Charge_Session_Finished")
            self._end_session()
        elif isinstance(message, NewChargeSession):
            if self.session is None:
                self.soc = message.state_of_charge
            self.session = message
            self.capacity_kwh = message.battery_capacity
        elif isinstance(message, NewChargeSessionV3):
            self.session = message
        elif isinstance(message, EvInformationBattery):
            if message.present_state_of_charge > 0:  # 0 = not provided (V3-11)
                self.soc = message.present_state_of_charge
            if message.battery_capacity > 0:
                self.capacity_kwh = message.battery_capacity
        elif isinstance(message, ChargingLoop):
            if self.session is not None and not message.is_standby:
                self.soc = message.state_of_charge
        elif isinstance(message, EvIdCcsPart2Din):
            self.ev_id = message.ev_id
        return RxResult(RxKind.MESSAGE, message)

    def _on_heartbeat(self, now: float, state: ControllerState) -> None:
        self.last_heartbeat = now
        self.link_up = True
        if not self.alive:
            self.alive = True
            self._events.append(
                Event("controller_alive", f"controller heartbeat present (state {state.label})")
            )
        previous = self.controller_state
        if state == previous:
            return
        self.controller_state = state
        self._events.append(
            Event("state", f"controller state {_label(previous)} -> {state.label}")
        )
        if state in NO_SESSION and previous is not None and previous not in NO_SESSION:
            self._reset_session_flags(f"return to {state.label}")
            self._end_session()
        if state in _FLAG_RESEND_STATES:
            self._flags_dirty = True
            if self.limits_sent is not None and self._limits_pending is None:
                self._limits_pending = self.limits_sent

    def _reset_session_flags(self, reason: str) -> None:
        reset = replace(self.flags, **_PER_SESSION_RESET)
        self._pulse_release.clear()
        self._parameters_done_pending = False
        self._done_after = None
        if reset != self.flags:
            self.flags = reset
            self._flags_dirty = True
        self._events.append(Event("flags_reset", f"per-session flags cleared ({reason})"))

    def _end_session(self) -> None:
        self.session = None
        self.soc = None
        self.capacity_kwh = 0.0
        self.ev_id = None

    def link_down(self, now: float, reason: str) -> None:
        """Report the bus as unusable (bus-off, driver error): the controller counts as lost.

        Button presses not sent yet are dropped (their callers retry; a press long after the
        request would surprise the user).
        """
        self.link_up = False
        self.last_error = reason
        for button, release in list(self._pulse_release.items()):
            if release is None:
                del self._pulse_release[button]
                self._set_flags(**{button: ButtonState.NOT_PRESSED})
        if self.alive:
            self._lose_controller(reason)

    def internal_error(self, now: float, where: str, text: str) -> None:
        """Count an exception in the bridge's receive/transmit path; the controller is lost.

        The converter driver then switches off (latched until a new session); if the error
        repeats, nothing is sent any more and the controller's own Power_Modules_Status
        supervision trips.
        """
        self.counters.internal_errors += 1
        reason = f"internal error in the bridge's {where}: {text}"
        self.last_error = reason
        if self.alive:
            self._lose_controller(reason)

    def _lose_controller(self, reason: str) -> None:
        self.lost_reason = reason
        self.alive = False
        self.counters.heartbeat_losses += 1
        self._events.append(Event("controller_lost", reason))

    # --- power side inputs ------------------------------------------------------------------

    def set_power_status(self, now: float, status: PowerModulesStatus) -> None:
        """Take the converter driver's latest status (the next Power_Modules_Status carries it).

        Raises ValueError for non-finite values; the previous status then ages normally.
        """
        for f in fields(status):
            value = getattr(status, f.name)
            if (
                isinstance(value, float)
                and not math.isfinite(value)
                and not (f.name == "insulation_resistance" and value == math.inf)
            ):
                raise ValueError(f"power status {f.name} = {value} is not a finite number")
        c = self.codec
        name = PowerModulesStatus.NAME
        status = replace(
            status,
            present_voltage=c.clamp(name, "Present_Voltage", status.present_voltage),
            present_current=c.clamp(name, "Present_Current", status.present_current),
            power_modules_temperature=c.clamp(
                name, "Power_Modules_Temperature", status.power_modules_temperature
            ),
            enclosure_temperature=c.clamp(
                name, "Enclosure_Temperature", status.enclosure_temperature
            ),
            system_enable=(
                Permission.ALLOWED
                if status.system_enable == Permission.ALLOWED
                else Permission.NOT_ALLOWED
            ),  # PM-13: only 0 or 1
            insulation_resistance=c.clamp(
                name, "Insulation_Resistance", status.insulation_resistance
            ),
        )
        self.power_status = status
        self.power_status_time = now
        if self._next_status is None:
            self._next_status = now
        if self.power_status_stale:
            self.power_status_stale = False
            self._events.append(
                Event(
                    "power_status_fresh", "power status from the converter driver is fresh again"
                )
            )

    # --- customer decisions (services) ------------------------------------------------------

    def set_limits(
        self,
        now: float,
        maximum_voltage: float,
        maximum_current: float,
        maximum_power: float = 0.0,
        maximum_discharge_current: float = 0.0,
    ) -> None:
        """Queue Power_Modules_Limits / DC_Power_Parameters (0 = controller config default).

        ``maximum_power`` [W] has no signal on the bus; it is published with the limits for the
        converter driver, which enforces all three locally (PM-34, A10).
        ``maximum_discharge_current`` [A, magnitude] is v3 only (a v2 bridge refuses a non-zero
        value); 0 on the bus is the controller's config default, while the converter driver
        allows no discharge at all for 0. Raises ValueError.
        """
        for label, value in (
            ("maximum_voltage", maximum_voltage),
            ("maximum_current", maximum_current),
            ("maximum_power", maximum_power),
            ("maximum_discharge_current", maximum_discharge_current),
        ):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{label} must be >= 0 (0 = controller default), got {value}")
        limits: LimitsMessage
        if self.v3:
            limits = DcPowerParameters(
                float(maximum_voltage), float(maximum_current), float(maximum_discharge_current)
            )
        elif maximum_discharge_current:
            raise ValueError("maximum_discharge_current needs interface v3 (protocol_version 3)")
        else:
            limits = PowerModulesLimits(float(maximum_voltage), float(maximum_current))
        try:
            self.codec.encode(limits, self.pistol_index)
        except ProtocolError as exc:
            raise ValueError(str(exc)) from None
        self._limits_pending = limits
        self.limits_power = float(maximum_power)

    def set_charge_parameters_done(self, now: float) -> None:
        """Declare the limits final; the flag follows a limits frame that was sent (PM-19)."""
        if self._limits_pending is not None or self._done_after is not None:
            self._parameters_done_pending = True
        elif self.limits_sent is not None:
            self._set_flags(charge_parameters_done=Completion.DONE)
        else:
            raise ValueError("Charge_Parameters_Done needs the limits first (PM-19, V3-10)")

    def set_start_authorisation(self, now: float, allowed: bool) -> None:
        """Set Start_Charge_Authorisation (level; kept across sessions)."""
        self._set_flags(
            start_charge_authorisation=Permission.ALLOWED if allowed else Permission.NOT_ALLOWED
        )

    def set_ccs_authorisation(self, now: float, valid: bool) -> None:
        """Send the CCS authorisation decision: Valid and Done in one frame (PM-18)."""
        self._set_flags(
            ccs_authorisation_valid=Validity.VALID if valid else Validity.INVALID,
            ccs_authorisation_done=Completion.DONE,
        )

    def press_button(self, now: float, button: str) -> bool:
        """Pulse ``user_stop_button`` or ``chademo_start_button``; False if a pulse is running.

        Raises ValueError while the CAN link is down (the press could not be sent).
        """
        if button not in ("user_stop_button", "chademo_start_button"):
            raise ValueError(f"unknown button {button!r}")
        if not self.link_up:
            raise ValueError(f"cannot press {button}: CAN link down ({self.last_error})")
        if button in self._pulse_release:
            return False
        self._set_flags(**{button: ButtonState.PRESSED})
        self._pulse_release[button] = None  # released button_pulse after the frame is sent
        return True

    def set_outputs(self, now: float, outputs: OutputsMessage | None) -> None:
        """Start (or change) sending controller outputs every outputs_period; None stops it."""
        if outputs is not None:
            try:
                self.codec.encode(outputs, self.pistol_index)
            except ProtocolError as exc:
                raise ValueError(str(exc)) from None
        self.outputs = outputs
        self._next_outputs = now if outputs is not None else None

    def _set_flags(self, **changes: object) -> None:
        updated = replace(self.flags, **changes)  # type: ignore[arg-type]
        if updated != self.flags:
            self.flags = updated
            self._flags_dirty = True

    # --- transmit / supervise ---------------------------------------------------------------

    def poll(self, now: float) -> tuple[list[Outgoing], list[Event]]:
        """Run supervision and return the frames due now (in send order) and new events."""
        if (  # heartbeat supervision (PM-07)
            self.alive
            and self.last_heartbeat is not None
            and now - self.last_heartbeat > self.config.heartbeat_timeout
        ):
            self._lose_controller(
                f"no Advantics_Controller_Status for {(now - self.last_heartbeat) * 1000:.0f} ms"
            )
        out = self._sequence_frames(now)
        if (  # Power_Modules_Status (PM-09)
            self.power_status is not None
            and self._next_status is not None
            and now >= self._next_status - 1e-6
        ):
            out.append(self._outgoing(self._status_to_send(now), now))
            self._next_status += self.config.status_period
            if self._next_status <= now:  # we fell behind (stall): restart the schedule
                self._next_status = now + self.config.status_period
        if (  # controller outputs (PM-47)
            self.outputs is not None
            and self._next_outputs is not None
            and now >= self._next_outputs - 1e-6
        ):
            out.append(self._outgoing(self.outputs, now))
            self._next_outputs = max(self._next_outputs + self.config.outputs_period, now)
        events, self._events = self._events, []
        self.counters.tx_frames += len(out)
        return out, events

    def _sequence_frames(self, now: float) -> list[Outgoing]:
        """Button releases, limits, then the flags that depend on them (PM-17, PM-19)."""
        out: list[Outgoing] = []
        for button, release_at in list(self._pulse_release.items()):
            if release_at is not None and now >= release_at:  # counted from the sent press
                del self._pulse_release[button]
                self._set_flags(**{button: ButtonState.NOT_PRESSED})
        if self._done_after is not None:  # the limits frame before was sent (not failed)
            self._done_after = None
            self._set_flags(charge_parameters_done=Completion.DONE)
        spaced = (
            self._limits_last_time is None
            or now - self._limits_last_time >= self.config.limits_min_interval - 1e-9
        )
        if self.v3 and spaced and self._limits_pending is None and self.limits_sent is not None:
            self._limits_pending = self.limits_sent  # B7: repeated with stable content
        if self._limits_pending is not None and spaced:
            limits = self._limits_pending
            self._limits_pending = None
            self._limits_last_time = now
            self.limits_sent = limits
            out.append(self._outgoing(limits, now))
            if self._parameters_done_pending:
                self._parameters_done_pending = False
                self._done_after = limits  # Done in the next poll, unless this send fails
        if self._flags_dirty:
            self._flags_dirty = False
            self.flags_sent = self.flags
            out.append(self._outgoing(self.flags, now))
            for button, release_at in self._pulse_release.items():
                if release_at is None and getattr(self.flags, button) == ButtonState.PRESSED:
                    self._pulse_release[button] = now + self.config.button_pulse
        return out

    def send_failed(self, message: CanMessage) -> None:
        """Queue flags and limits again after a frame from :meth:`poll` could not be sent.

        Periodic frames are not repeated (the next period carries fresh data). A failed flags
        frame restarts the pulses it carried (they start when a frame is sent); a failed limits
        frame holds Charge_Parameters_Done back until the limits are sent (PM-19).
        """
        if isinstance(message, SequenceControl):
            self._flags_dirty = True
            for button in list(self._pulse_release):
                if getattr(message, button) == ButtonState.PRESSED:
                    self._pulse_release[button] = None
        elif isinstance(message, (PowerModulesLimits, DcPowerParameters)):
            if self._limits_pending is None:
                self._limits_pending = message
            if self._done_after is message:
                self._done_after = None
                self._parameters_done_pending = True

    @property
    def has_events(self) -> bool:
        """True if :meth:`poll` has events to hand out (e.g. a state change just received)."""
        return bool(self._events)

    def _status_to_send(self, now: float) -> PowerModulesStatus:
        assert self.power_status is not None and self.power_status_time is not None
        stale = now - self.power_status_time > self.config.power_status_timeout
        if stale and not self.power_status_stale:
            self.power_status_stale = True
            self.counters.stale_power_status += 1
            self._events.append(
                Event(
                    "power_status_stale",
                    f"no power status from the converter driver for "
                    f"{(now - self.power_status_time) * 1000:.0f} ms: sending System_Enable=0",
                )
            )
        if self.power_status_stale:
            return replace(self.power_status, system_enable=Permission.NOT_ALLOWED)
        return self.power_status

    def _outgoing(self, message: CanMessage, now: float) -> Outgoing:
        return Outgoing(message, self.codec.encode(message, self.pistol_index, timestamp=now))

    def next_wakeup(self, now: float) -> float:
        """Latest time at which :meth:`poll` must run again."""
        candidates = [now + HOUSEKEEPING_PERIOD]
        if self._next_status is not None and self.power_status is not None:
            candidates.append(self._next_status)
        if self.alive and self.last_heartbeat is not None:
            candidates.append(self.last_heartbeat + self.config.heartbeat_timeout + 1e-4)
        candidates.extend(t for t in self._pulse_release.values() if t is not None)
        if (
            self._limits_pending is not None or (self.v3 and self.limits_sent is not None)
        ) and self._limits_last_time is not None:
            candidates.append(self._limits_last_time + self.config.limits_min_interval)
        elif self._limits_pending is not None or self._flags_dirty:
            candidates.append(now)
        if self._done_after is not None:
            candidates.append(now)
        if self._next_outputs is not None:
            candidates.append(self._next_outputs)
        return min(candidates)

    # --- read-outs --------------------------------------------------------------------------

    def vehicle(self) -> VehicleView:
        """Return the vehicle of the present session as sensor_msgs/BatteryState needs it."""
        session, status = self.session, self.power_status
        charging = (
            self.controller_state == ControllerState.CHARGING
            and status is not None
            and status.present_current > 1.0
        )
        voltage = status.present_voltage if status is not None and session else math.nan
        current = status.present_current if status is not None and session else math.nan
        capacity_ah = math.nan
        if session is not None and self.capacity_kwh > 0 and voltage > 1.0:
            # estimate: the protocol gives kWh only; Ah at the present voltage
            capacity_ah = self.capacity_kwh * 1000.0 / voltage
        return VehicleView(
            present=session is not None,
            protocol=session.communication_protocol.label if session else "",
            plug=session.plug_and_pins.label if session else "",
            soc_fraction=self.soc / 100.0
            if session is not None and self.soc is not None
            else math.nan,
            voltage=voltage,
            current=current,
            design_capacity_ah=capacity_ah,
            charging=charging,
            ev_id=self.ev_id.hex().upper() if session is not None and self.ev_id else "",
        )

    def heartbeat_age(self, now: float) -> float:
        """Seconds since the last controller heartbeat (inf if none yet)."""
        return math.inf if self.last_heartbeat is None else now - self.last_heartbeat

    def power_status_age(self, now: float) -> float:
        """Seconds since the converter driver's last status (inf if none yet)."""
        return math.inf if self.power_status_time is None else now - self.power_status_time


def _label(state: ControllerState | None) -> str:
    return "none" if state is None else state.label
