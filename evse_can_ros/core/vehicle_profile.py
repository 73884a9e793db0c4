"""What the simulated vehicle knows and asks for: its state, read-outs and charging profile.

:class:`VehicleProfile` is the state and the request side of :class:`~evse_can_ros.core.vehicle.
Vehicle` (which adds the plant and the decisions); see that module for the whole picture.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from enum import Enum

from evse_can_ros.core.battery import Battery, VehicleInlet
from evse_can_ros.core.vehicle_params import BptMode, VehicleParams
from evse_can_ros.protocol import (
    ChargingLoop,
    NewChargeSession,
    Precharge,
)

log = logging.getLogger(__name__)

PRECHARGE_WINDOW = 20.0
"""V: the vehicle closes its contactors when |inlet - battery| <= this (spec 9.6 step 22)."""
END_CURRENT_CCS = 1.0
"""A: a CCS vehicle opens its contactors below this current after a stop (spec 9.9 step 32)."""
END_CURRENT_CHADEMO = 5.0
"""A: the same for CHAdeMO (spec 9.9 step 32)."""


class VehiclePhase(Enum):
    """What the vehicle is doing (the request it would send on its protocol)."""

    UNPLUGGED = "unplugged"
    PLUGGED = "plugged"  # waiting for the charger to start a session
    NEGOTIATING = "negotiating"  # communication set-up, parameter exchange (spec 9.2)
    WAITING_FOR_CHARGER = "waiting_for_charger"  # all data known; authorisation / parameters
    CABLE_CHECK = "cable_check"  # insulation test requested (spec 9.5)
    PRECHARGE = "precharge"  # CCS/MCS (spec 9.6)
    READY = "ready"  # contactors closed, power delivery start requested (spec 9.7)
    CHARGING = "charging"  # current demand (spec 9.8)
    ENDING = "ending"  # power delivery stop, waiting for the current to fall (spec 9.9)
    WELDING_DETECTION = "welding_detection"  # contactors open, checking them (spec 9.10)
    FINISHING = "finishing"  # contactors open; waiting for unlock and session end
    DONE = "done"  # session over (normally or aborted); unplugs after unplug_delay


_CONNECTED_PHASES = (VehiclePhase.READY, VehiclePhase.CHARGING, VehiclePhase.ENDING)
_SESSION_PHASES = tuple(
    p for p in VehiclePhase if p not in (VehiclePhase.UNPLUGGED, VehiclePhase.PLUGGED)
)


@dataclass(frozen=True)
class PowerRequest:
    """The vehicle's power demand while charging, signed (positive = into the vehicle) [V], [A].

    Target mode (``range_mode`` False): ``current_min == current_max`` = the target. Range mode:
    any current in [``current_min``, ``current_max``] is acceptable and the charger side picks.
    """

    target_voltage: float
    current_min: float
    current_max: float
    range_mode: bool


class VehicleProfile:
    """The vehicle's state, read-outs and requests. Pure: ``now`` is always an argument.

    Bidirectional vehicles (``params.bpt_mode``, interface v3): :meth:`power_request` is a range
    (dynamic) or a signed target (scheduled); the range never lets the SoC leave
    [``min_soc``, ``target_soc``]: no discharge at the minimum, no charge at the target.
    """

    def __init__(self, params: VehicleParams | None = None, inlet: VehicleInlet | None = None):
        self.params = params or VehicleParams()
        if inlet is None:
            inlet = self.params.make_inlet()
        elif inlet.battery.params != self.params.battery_params():
            log.info("vehicle uses the shared inlet's battery %s", inlet.battery.params)
        self.inlet = inlet
        self.inlet.plugged_in = False
        self.inlet.contactors_closed = False
        self._phase = VehiclePhase.UNPLUGGED
        self.phase_since = 0.0
        self._last_step: float | None = None
        self.present_voltage = 0.0  # the charger's last reported values (what the EV sees)
        self.present_current = 0.0
        self.charger_max_voltage: float | None = None
        self.charger_max_current: float | None = None
        self.charger_max_power_kw = 0.0
        self.charger_max_discharge_current = 0.0  # A, magnitude; 0 = the charger cannot discharge
        self.charge_delay = self.params.current_request_delay
        self.error: str | None = None  # set by an EV-side emergency stop
        self.stop_reason = ""  # why the vehicle ended the charge normally
        self.end_reason = ""  # why the session ended
        self.forced_open = False  # contactors opened with the current still flowing
        self.session_energy_wh = 0.0  # net: into the battery minus out of it
        self.session_charged_wh = 0.0
        self.session_discharged_wh = 0.0  # >= 0
        self.sessions = 0
        self.cv_active = False
        self.discharging = False  # scheduled BPT: in the discharge part of the schedule
        self._outside_since: float | None = None  # BPT: current outside the request since
        self.events: list[tuple[float, str]] = []

    # --- read-outs --------------------------------------------------------------------------

    @property
    def battery(self) -> Battery:
        """The traction battery (shared with the inlet)."""
        return self.inlet.battery

    @property
    def soc(self) -> float:
        """State of charge [%]."""
        return self.battery.soc

    @property
    def phase(self) -> VehiclePhase:
        """What the vehicle is doing now."""
        return self._phase

    @property
    def plugged_in(self) -> bool:
        """True while the connector is in the inlet."""
        return self.inlet.plugged_in

    @property
    def contactors_closed(self) -> bool:
        """True while the battery is switched to the inlet."""
        return self.inlet.contactors_closed

    @property
    def is_chademo(self) -> bool:
        """True for a CHAdeMO vehicle."""
        return self.params.communication_protocol.is_chademo

    @property
    def in_session(self) -> bool:
        """True from session start until the session is over."""
        return self._phase in _SESSION_PHASES and self._phase is not VehiclePhase.DONE

    @property
    def end_current(self) -> float:
        """Current below which the vehicle opens its contactors after a stop [A]."""
        return END_CURRENT_CHADEMO if self.is_chademo else END_CURRENT_CCS

    @property
    def info_complete(self) -> bool:
        """True once the controller knows all vehicle data (end of negotiation)."""
        return self._phase in _SESSION_PHASES and self._phase not in (
            VehiclePhase.NEGOTIATING,
            VehiclePhase.DONE,
        )

    def session_info(self) -> NewChargeSession:
        """Return what the controller announces in New_Charge_Session (spec 6.6)."""
        p = self.params
        return NewChargeSession(
            communication_protocol=p.communication_protocol,
            plug_and_pins=p.plug_and_pins,
            ev_maximum_voltage=p.max_voltage,
            ev_maximum_current=0.0 if self.is_chademo else p.max_current,  # optional in CHAdeMO
            battery_capacity=p.capacity_kwh,
            state_of_charge=_soc_int(self.soc),
        )

    def target_voltage(self) -> float:
        """Charging_Loop.Target_Voltage: the CV voltage, capped by the charger's maximum [V]."""
        v = self.params.cv_limit
        if self.charger_max_voltage:
            v = min(v, self.charger_max_voltage)
        return v

    def requested_current(self) -> float:
        """Return the current the vehicle wants now (CC, taper, power limits, then CV) [A]."""
        p = self.params
        b = self.battery
        ocv = b.ocv()
        r = p.internal_resistance
        limits = [p.max_current * self._taper_factor()]
        for power_kw in (p.max_power_kw, self.charger_max_power_kw):
            if power_kw > 0:  # I with (ocv + I R) I = P
                limits.append((-ocv + math.sqrt(ocv * ocv + 4 * r * power_kw * 1000)) / (2 * r))
        if self.charger_max_current:
            limits.append(self.charger_max_current)
        cc = min(limits)
        cv = (self.target_voltage() - ocv) / r
        self.cv_active = cv < cc
        return max(0.0, min(cc, cv))

    def _taper_factor(self) -> float:
        p = self.params
        if self.soc <= p.taper_start_soc or p.taper_start_soc >= 100:
            return 1.0
        x = (self.soc - p.taper_start_soc) / (100.0 - p.taper_start_soc)
        return 1.0 - (1.0 - p.taper_end_fraction) * min(1.0, x)

    def precharge_request(self) -> Precharge | None:
        """Return the Precharge request while precharging (battery voltage, current), else None."""
        if self._phase is not VehiclePhase.PRECHARGE:
            return None
        return Precharge(self.battery.ocv(), self.params.precharge_current)

    def charge_request(self) -> ChargingLoop | None:
        """Return the current demand while charging (CC-CV, charger limits), else None."""
        if self._phase is not VehiclePhase.CHARGING:
            return None
        return ChargingLoop(self.target_voltage(), self.requested_current(), _soc_int(self.soc))

    # --- bidirectional (interface v3) -------------------------------------------------------

    def discharge_limit(self) -> float:
        """Return the largest current the vehicle gives now [A, magnitude]; 0 if it may not.

        0 for a charge-only vehicle, at or below ``min_soc``, or if the charger cannot discharge.
        Else ``max_discharge_current`` limited by the vehicle's discharge power and the charger's
        maximum discharge current.
        """
        p = self.params
        if not p.bidirectional or self.soc <= p.min_soc:
            return 0.0
        limits = [p.max_discharge_current, self.charger_max_discharge_current]
        if p.max_discharge_power_kw > 0:  # I with (ocv - I R) I = P, the smaller root
            ocv, r = self.battery.ocv(), p.internal_resistance
            root = ocv * ocv - 4 * r * p.max_discharge_power_kw * 1000
            limits.append((ocv - math.sqrt(root)) / (2 * r) if root > 0 else ocv / (2 * r))
        return max(0.0, min(limits))

    def power_request(self) -> PowerRequest | None:
        """Return the signed power demand while charging (v3 DC_Power_Control), else None.

        Dynamic BPT: the range [-discharge limit, +charge current], the charge end at 0 once
        ``target_soc`` is reached and the discharge end at 0 at ``min_soc``. Scheduled BPT: the
        signed target (the discharge limit, negative, in the discharge part). Charge only:
        the CC-CV target of :meth:`requested_current`.
        """
        if self._phase is not VehiclePhase.CHARGING:
            return None
        v = self.target_voltage()
        if self.params.bpt is BptMode.DYNAMIC:
            charge = self.requested_current() if self.soc < self.params.target_soc else 0.0
            return PowerRequest(v, -self.discharge_limit(), charge, range_mode=True)
        target = -self.discharge_limit() if self.discharging else self.requested_current()
        return PowerRequest(v, target, target, range_mode=False)

    def accepted_currents(self) -> tuple[float, float]:
        """Return the currents the vehicle accepts now [A, signed] (lowest, highest).

        Range mode: the range. Target mode: anything between 0 and the target (a charger may
        deliver less than asked, never more, never the other way).
        """
        request = self.power_request()
        if request is None:
            return 0.0, 0.0
        if request.range_mode:
            return request.current_min, request.current_max
        return min(0.0, request.current_max), max(0.0, request.current_max)

    def energy_to_soc_kwh(self, soc: float) -> float:
        """Return the energy from the present SoC to ``soc`` [kWh, signed: < 0 = to give]."""
        return (soc - self.soc) * self.params.capacity_kwh / 100.0


def _soc_int(soc: float) -> int:
    return int(min(100, max(0, round(soc))))
