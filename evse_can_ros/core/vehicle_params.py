"""Parameters of the simulated vehicle (ROS parameters ``vehicle.*`` of the emulator node)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from evse_can_ros.config import ConfigError, check, param
from evse_can_ros.core.battery import Battery, BatteryParams, VehicleInlet
from evse_can_ros.protocol import CommunicationProtocol, PlugAndPins

DC_PROTOCOLS: tuple[str, ...] = tuple(
    p.name for p in CommunicationProtocol if p is not CommunicationProtocol.CCS_PWM
)
"""Protocol names a DC vehicle may speak (CCS_PWM is AC-only, spec A17)."""

PLUG_CHOICES: tuple[str, ...] = ("auto", "CCS_DC_CORE", "CCS_DC_EXTENDED", "CHADEMO", "MCS")


class BptMode(Enum):
    """How a vehicle takes part in bidirectional power transfer (interface v3, v3 digest 5.2, 7).

    ``OFF``: charge only, the vehicle sets the current (Target_Mode). ``DYNAMIC``: the vehicle
    gives a range of currents, negative = it may discharge, and the charger side picks the
    operating point (Range_Mode: ISO 15118-20 dynamic mode, CHAdeMO V2G). ``SCHEDULED``: the
    vehicle decides and sets a signed target (Target_Mode, ISO 15118-20 scheduled mode); the
    simulated one discharges to its minimum SoC, then charges to its target SoC.
    """

    OFF = "off"
    DYNAMIC = "dynamic"
    SCHEDULED = "scheduled"


BPT_MODES: tuple[str, ...] = tuple(m.value for m in BptMode)
BPT_PROTOCOLS = frozenset(
    {
        CommunicationProtocol.CCS_ISO_15118_2022,
        CommunicationProtocol.CHADEMO_V0_9,
        CommunicationProtocol.CHADEMO_V1_0_V1_1_V1_2,
        CommunicationProtocol.CHADEMO_V2_0,
    }
)
"""Protocols with bidirectional transfer (v3 digest 7): ISO 15118-20 and CHAdeMO (V2G)."""


@dataclass(frozen=True)
class VehicleParams:
    """Everything that makes one simulated vehicle (ROS parameters of the emulator node)."""

    protocol: str = param(
        "CCS_ISO_15118_2013_V2",
        "communication protocol (CommunicationProtocol name; DB labels and enum members accepted)",
        choices=DC_PROTOCOLS,
    )
    plug: str = param(
        "auto", "plug and pins; auto = CHADEMO for CHAdeMO, else CCS_DC_CORE", choices=PLUG_CHOICES
    )
    capacity_kwh: float = param(60.0, "battery capacity", unit="kWh", min=1.0, max=510.0)
    initial_soc: float = param(20.0, "state of charge at creation", unit="%", min=0.0, max=100.0)
    ocv_min: float = param(317.0, "open-circuit voltage at 0 % SoC", unit="V", min=1.0, max=1500)
    ocv_max: float = param(
        403.0, "open-circuit voltage at 100 % SoC", unit="V", min=1.0, max=1500.0
    )
    internal_resistance: float = param(
        0.08, "battery internal resistance", unit="Ohm", min=0.001, max=10.0
    )
    max_voltage: float = param(
        410.0, "maximum voltage the vehicle advertises", unit="V", min=10.0, max=1500.0
    )
    max_current: float = param(
        200.0, "maximum current the vehicle advertises and requests", unit="A", min=1.0, max=3000
    )
    cv_voltage: float = param(
        0.0, "terminal voltage held in the CV phase, 0 = max_voltage", unit="V", min=0, max=1500
    )
    max_power_kw: float = param(
        0.0, "vehicle power limit, 0 = none", unit="kW", min=0.0, max=5000.0
    )
    taper_start_soc: float = param(
        80.0, "SoC above which the current limit is derated linearly", unit="%", min=0, max=100
    )
    taper_end_fraction: float = param(
        0.3, "current limit at 100 % SoC as a fraction of max_current", min=0.01, max=1.0
    )
    stop_current: float = param(
        2.0, "end the charge when the CV current falls below this", unit="A", min=0.0, max=100.0
    )
    target_soc: float = param(80.0, "end the charge at this SoC", unit="%", min=1.0, max=100.0)
    precharge_current: float = param(
        2.0, "Precharge.Maximum_Current the vehicle asks for", unit="A", min=0.1, max=20.0
    )
    insulation_test_voltage: float = param(
        0.0, "highest insulation-test voltage it permits, 0 = max_voltage", unit="V", min=0
    )
    soc_time_scale: float = param(
        1.0, "1 s of charging counts as this many seconds for the SoC", min=0.001, max=1e6
    )
    negotiation_time: float = param(
        2.0, "plug-in/start to all vehicle data known (spec 9.2)", unit="s", min=0.0, max=600.0
    )
    current_request_delay: float = param(
        1.0, "Waiting_For_Charge time before the first current request", unit="s", min=0, max=1e6
    )
    response_timeout: float = param(
        60.0, "longest wait for authorisation / charger parameters", unit="s", min=0.1, max=3600
    )
    cable_check_timeout: float = param(
        40.0, "cable check (incl. wake-up and ramp-down) must end within", unit="s", min=0.1
    )
    precharge_timeout: float = param(
        10.0, "inlet must reach the battery voltage within", unit="s", min=0.1, max=600.0
    )
    end_current_timeout: float = param(
        10.0, "after a stop, open the contactors anyway after", unit="s", min=0.1, max=600.0
    )
    overvoltage_margin: float = param(
        20.0, "emergency stop if the inlet exceeds max_voltage by", unit="V", min=0.0, max=1000
    )
    welding_detection: bool = param(True, "run welding detection after the charge (spec 9.10)")
    welding_detection_time: float = param(
        1.0, "duration of the welding detection", unit="s", min=0.0, max=60.0
    )
    unlock_voltage: float = param(
        60.0, "CCS: the vehicle unlocks its inlet at or below", unit="V", min=1.0, max=120.0
    )
    unplug_after_session: bool = param(True, "unplug when the session has ended")
    unplug_delay: float = param(
        2.0, "time from the end of the session to unplugging", unit="s", min=0.0, max=1e6
    )
    ev_id: str = param("0A1B2C3D4E5F", "EV ID (EVCCID), 12 hex digits (CCS DIN / ISO 15118-2)")
    # bidirectional power transfer (interface v3 only)
    bpt_mode: str = param(
        "off",
        "bidirectional transfer (v3): off = charge only; dynamic = range of currents, the charger "
        "picks (Range_Mode; ISO 15118-20 or CHAdeMO); scheduled = the vehicle discharges to "
        "min_soc, then charges to target_soc (signed target, Target_Mode; ISO 15118-20)",
        choices=BPT_MODES,
    )
    max_discharge_current: float = param(
        100.0, "BPT: largest current the vehicle delivers", unit="A", min=0.0, max=3000.0
    )
    max_discharge_power_kw: float = param(
        0.0, "BPT: discharge power limit, 0 = none", unit="kW", min=0.0, max=5000.0
    )
    min_soc: float = param(
        20.0, "minimum SoC: a BPT vehicle never discharges below it", unit="%", min=0, max=100
    )
    range_violation_timeout: float = param(
        5.0,
        "BPT: EV emergency stop when the current stays outside what the vehicle asks for "
        "(beyond its range, or beyond 0..target) this long",
        unit="s",
        min=0.1,
        max=600.0,
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "protocol", _protocol_name(self.protocol))
        object.__setattr__(self, "plug", str(self.plug).upper() if self.plug != "auto" else "auto")
        check(self)
        name = type(self).__name__
        if not self.ocv_min < self.ocv_max:
            raise ConfigError(
                f"{name}: ocv_min = {self.ocv_min} V must be below ocv_max = {self.ocv_max} V"
            )
        if self.cv_voltage > self.max_voltage:
            raise ConfigError(
                f"{name}.cv_voltage = {self.cv_voltage} V is above max_voltage "
                f"= {self.max_voltage} V"
            )
        if self.cv_limit <= self.ocv_min:
            raise ConfigError(
                f"{name}: CV voltage {self.cv_limit} V must be above ocv_min = {self.ocv_min} V"
            )
        chademo = self.communication_protocol.is_chademo
        if self.plug != "auto" and (self.plug == "CHADEMO") != chademo:
            raise ConfigError(f"{name}.plug = {self.plug!r} does not fit protocol {self.protocol}")
        try:
            ev_id = bytes.fromhex(self.ev_id)
        except ValueError:
            ev_id = b""
        if len(ev_id) != 6:
            raise ConfigError(f"{name}.ev_id = {self.ev_id!r} is not 12 hexadecimal digits")
        self._check_bpt()

    def _check_bpt(self) -> None:
        name = type(self).__name__
        if self.bpt is BptMode.OFF:
            return
        protocol = self.communication_protocol
        if protocol not in BPT_PROTOCOLS:
            raise ConfigError(
                f"{name}.bpt_mode = {self.bpt_mode!r} needs protocol CCS_ISO_15118_2022 or "
                f"CHAdeMO, not {self.protocol}"
            )
        if self.bpt is BptMode.SCHEDULED and protocol.is_chademo:
            raise ConfigError(
                f"{name}.bpt_mode = 'scheduled' is ISO 15118-20 only (CHAdeMO V2G is dynamic)"
            )
        if not self.min_soc < self.target_soc:
            raise ConfigError(
                f"{name}: min_soc = {self.min_soc} % must be below target_soc = "
                f"{self.target_soc} % for bidirectional transfer"
            )

    @property
    def bpt(self) -> BptMode:
        """The bidirectional mode as an enum."""
        return BptMode(self.bpt_mode)

    @property
    def bidirectional(self) -> bool:
        """True if the vehicle may discharge (``bpt_mode`` is not off)."""
        return self.bpt is not BptMode.OFF

    @property
    def communication_protocol(self) -> CommunicationProtocol:
        """The protocol as the database enum."""
        return CommunicationProtocol[self.protocol]

    @property
    def plug_and_pins(self) -> PlugAndPins:
        """The plug as the database enum (``auto`` resolved)."""
        if self.plug == "auto":
            chademo = self.communication_protocol.is_chademo
            return PlugAndPins.CHADEMO if chademo else PlugAndPins.CCS_DC_CORE
        return PlugAndPins[self.plug]

    @property
    def cv_limit(self) -> float:
        """Terminal voltage of the CV phase [V]."""
        return self.cv_voltage or self.max_voltage

    @property
    def permitted_test_voltage(self) -> float:
        """Highest insulation-test voltage the vehicle permits [V]."""
        return self.insulation_test_voltage or self.max_voltage

    @property
    def ev_id_bytes(self) -> bytes:
        """The EV ID as 6 bytes."""
        return bytes.fromhex(self.ev_id)

    def battery_params(self) -> BatteryParams:
        """Return the battery part of these parameters."""
        try:
            return BatteryParams(
                capacity_kwh=self.capacity_kwh,
                ocv_min=self.ocv_min,
                ocv_max=self.ocv_max,
                internal_resistance=self.internal_resistance,
                initial_soc=self.initial_soc,
            )
        except ValueError as exc:  # unreachable after check(); keep the one-line contract
            raise ConfigError(f"{type(self).__name__}: {exc}") from None

    def make_inlet(self) -> VehicleInlet:
        """Return a new inlet with a battery of these parameters (to share with a converter)."""
        return VehicleInlet(battery=Battery(self.battery_params()))


def _protocol_name(value: object) -> str:
    """Normalise a protocol given as enum member, enum name or database label to the name."""
    if isinstance(value, CommunicationProtocol):
        return value.name
    text = str(value)
    for p in CommunicationProtocol:
        if text.upper() == p.name or text == p.label:
            return p.name
    return text  # check() reports it with the list of choices
