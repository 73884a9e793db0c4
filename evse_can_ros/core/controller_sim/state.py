"""The emulator's state and the actions every part uses (abort, close, send, schedule)."""

from __future__ import annotations

import logging

from evse_can_ros.config import ConfigError
from evse_can_ros.core.controller_sim.config import (
    _POWER_STATES,
    _SESSION_STATES,
    PERIOD,
    ControllerSimConfig,
    S,
    Scenario,
)
from evse_can_ros.core.controller_sim.dialect import Dialect, Step
from evse_can_ros.core.controller_sim.dialect_v3 import DialectV3
from evse_can_ros.core.vehicle import Vehicle
from evse_can_ros.protocol import (
    CanFrame,
    CanMessage,
    ChargeSessionFinished,
    ChargeStatus,
    ChargeStatusChange,
    Codec,
    ControllerState,
    DcPowerParameters,
    EmergencyStop,
    EmergencyStopOrigin,
    Permission,
    PowerModulesLimits,
    PowerModulesStatus,
    ProtocolVersion,
    SequenceControl,
    SessionEnd,
)

log = logging.getLogger(__name__)


class SimState:
    """What the emulated controller knows and the helpers its parts share."""

    def __init__(
        self,
        codec: Codec,
        config: ControllerSimConfig | None = None,
        vehicle: Vehicle | None = None,
        scenario: Scenario | None = None,
    ) -> None:
        self.codec = codec
        self.config: ControllerSimConfig = config or ControllerSimConfig()
        self.vehicle: Vehicle = vehicle or Vehicle()
        self.scenario: Scenario = scenario or Scenario()
        self.pistol_index = self.config.pistol_index
        self.protocol_version = codec.protocol_version
        if self.protocol_version is ProtocolVersion.V2 and self.vehicle.params.bidirectional:
            raise ConfigError(
                f"vehicle.bpt_mode = {self.vehicle.params.bpt_mode!r} needs interface v3 "
                "(protocol_version 3)"
            )
        self.dialect: Dialect = (
            DialectV3(self) if self.protocol_version is ProtocolVersion.V3 else Dialect(self)
        )
        self._state = S.INITIALISING
        self.state_since = 0.0
        self._started: float | None = None
        self._silent_until: float | None = None  # reset: no frames until then
        self._next: dict[str, float] = {}
        self._out: list[CanFrame] = []
        # power side as last received
        self.power_status: PowerModulesStatus | None = None
        self.power_status_time: float | None = None
        self.limits: PowerModulesLimits | DcPowerParameters | None = None  # v2 | v3
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
        """Net energy into the battery in the present (or last) session [Wh], < 0 = exported."""
        return self.vehicle.session_energy_wh

    @property
    def test_voltage(self) -> float:
        """Insulation test voltage of the present session [V] (0 before the test)."""
        return self._test_voltage

    @property
    def charger_limits(self) -> tuple[float, float]:
        """The charger's voltage and current limits as given to the vehicle [V], [A]."""
        v, i = self.config.max_voltage, self.config.max_current
        limits = self.limits
        if limits is not None:  # 0 = the controller's config value (spec 6.2, v3 digest 4.2)
            if limits.maximum_voltage > 0:
                v = min(v, limits.maximum_voltage)
            current = (
                limits.maximum_current
                if isinstance(limits, PowerModulesLimits)
                else limits.maximum_charge_current
            )
            if current > 0:
                i = min(i, current)
        return v, i

    @property
    def charger_discharge_limit(self) -> float:
        """Largest current the charger takes from the vehicle, as given to it [A]; 0 in v2.

        v3: ``max_discharge_current`` of the config (0 unless ``bidirectional``), capped by
        DC_Power_Parameters.Maximum_Discharge_Current unless that is 0 (= the config value).
        """
        if self.protocol_version is ProtocolVersion.V2 or not self.config.bidirectional:
            return 0.0
        i = self.config.max_discharge_current
        limits = self.limits
        if isinstance(limits, DcPowerParameters) and limits.maximum_discharge_current > 0:
            i = min(i, limits.maximum_discharge_current)
        return i

    def _give_limits(self, now: float) -> None:
        """Pass the charger's limits to the vehicle (charge parameter discovery)."""
        v, i = self.charger_limits
        self.vehicle.set_charger_limits(
            now, v, i, max_discharge_current=self.charger_discharge_limit
        )

    def present(self) -> tuple[float, float]:
        """Last reported output voltage [V] and current [A] (0, 0 before any status)."""
        s = self.power_status
        return (s.present_voltage, s.present_current) if s is not None else (0.0, 0.0)

    def _age(self, now: float) -> float:
        return now - self.state_since

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
            self._emit(now, Step.ABORT)
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
        self._emit(now, Step.CLOSING)

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
        self.dialect.clear()

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

    def _emit(self, now: float, step: Step) -> None:
        """Send the frames of ``step`` in this interface version (:mod:`.dialect`)."""
        for message in self.dialect.frames(now, step):
            self._send(now, message)

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

    def _to_idle(self, now: float) -> None:
        if self.config.use_sequence_flags and not self._start_allowed():
            self._set_state(now, S.NOT_AVAILABLE, "Start_Charge_Authorisation = Not_Allowed")
        else:
            self._set_state(now, S.WAITING_FOR_PEV, "ready for a vehicle")

    def _start_allowed(self) -> bool:
        return self.flags.start_charge_authorisation == Permission.ALLOWED
