"""Typed messages of the Generic EVSE CAN interface v3 (database v3.6, v3 digest 3-5).

Same conventions as :mod:`evse_can_ros.protocol.messages` (``NAME`` = database name, one field
per signal, physical values, ``LabelEnum`` label sets). A v3 message whose layout is identical
to v2 (v3 digest 1: Power_Modules_Status, Sequence_Control, the ADM_* I/O messages,
Advantics_Controller_Status, Charge_Status_Change, Charge_Session_Finished, Emergency_Stop,
EV_ID_CCS_Part2_DIN, CCS/MCS_Extra_Information) *is* the v2 class: only its identifier moved,
and identifiers live in the database, not in the classes. This module defines the messages that
are new in v3, and ``NewChargeSessionV3`` for New_Charge_Session, which kept its name but shrank
to protocol and plug (the vehicle data moved to the EV_Information_* messages).

Sign convention of v3 (v3 digest 4.9, 5.1, 5.2): a signed current is positive when energy flows
to the vehicle (charge) and negative when it flows from the vehicle (discharge). Limits that are
magnitudes (DC_Power_Parameters maxima, EV_Information_*_Limits) are unsigned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from evse_can_ros.protocol.messages import (
    AdmCoCui1Inputs,
    AdmCsSeccInputs,
    AdmCsSeccOutputs,
    AdmCsSpccInputs,
    AdmCsSpccOutputs,
    AdvanticsControllerStatus,
    CanMessage,
    CcsExtraInformation,
    ChargeSessionFinished,
    ChargeStatusChange,
    CommunicationProtocol,
    EmergencyStop,
    EvIdCcsPart2Din,
    LabelEnum,
    McsExtraInformation,
    PlugAndPins,
    PowerModulesStatus,
    SequenceControl,
)


class PowerFunction(LabelEnum):
    """DC_Power_Control.Power_Function (v3 digest 5.1), one-hot.

    Raw values 3, 5-7 and 9-15 are undefined: they decode to ``UNKNOWN_<n>`` pseudo-members,
    which the power side treats as Off and reports as a fault (v3 digest 9, B1).
    """

    OFF = 0, "Off"
    STANDBY = 1, "Standby"
    INSULATION_TEST = 2, "Insulation_Test"
    PRECHARGE = 4, "Precharge"
    POWER_TRANSFER = 8, "Power_Transfer"

    @property
    def converts_power(self) -> bool:
        """True if the function asks for power conversion (test, precharge, transfer).

        False for Off, Standby and every undefined value (B1: treat as Off).
        """
        return self in _CONVERTING


_CONVERTING = frozenset(
    {PowerFunction.INSULATION_TEST, PowerFunction.PRECHARGE, PowerFunction.POWER_TRANSFER}
)


class SetpointsMode(LabelEnum):
    """DC_Power_Control.Setpoints_Mode (v3 digest 5.2)."""

    TARGET_MODE = 0, "Target_Mode"
    RANGE_MODE = 1, "Range_Mode"


class ContactorState(LabelEnum):
    """DC_Power_Control.Output_Contactors: mirrors the controller's relay (v3 digest 5.3)."""

    OPEN = 0, "Open"
    CLOSE = 1, "Close"


class VoltageLowering(LabelEnum):
    """DC_Power_Control.Lower_Output_Voltage (v3 digest 5.3)."""

    NO_LOWERING = 0, "No_Lowering"
    LOWERING = 1, "Lowering"


# --- sent by the customer controller (us) ----------------------------------------------


@dataclass(frozen=True)
class DcPowerParameters(CanMessage):
    """DC_Power_Parameters (v3 digest 4.2, replaces v2 Power_Modules_Limits).

    Event driven, at most one frame per 100 ms (we send it every 100 ms, B7); final before
    Charge_Parameters_Done. The three maxima are **magnitudes** (unsigned on the bus, the codec
    refuses a negative value): ``maximum_discharge_current`` is the largest current the charger
    can take *from* the vehicle, written as a positive number. 0 selects the controller's config
    default (``max_charger_voltage``, ``max_charger_current``, ``max_charger_discharge_current``)
    and every value is capped by that config.

    ``range_target_current`` is signed (negative = from the vehicle) but acts only when the
    controller drives its own power-module families in Range_Mode; we drive our own modules, so
    it stays 0 (v3 digest 4.2, B8).
    """

    NAME: ClassVar[str] = "DC_Power_Parameters"
    maximum_voltage: float  # V, 0 = controller config default
    maximum_charge_current: float  # A, magnitude, 0 = controller config default
    maximum_discharge_current: float  # A, magnitude, 0 = controller config default
    range_target_current: float = 0.0  # A, signed; always 0 for us (B8)


# --- sent by the Advantics controller --------------------------------------------------


@dataclass(frozen=True)
class NewChargeSessionV3(CanMessage):
    """New_Charge_Session in v3 (v3 digest 4.7): DLC 2, protocol and plug only.

    Every 100 ms until System_Enable = Allowed. The vehicle data of the v2 frame are in the
    EV_Information_* messages.
    """

    NAME: ClassVar[str] = "New_Charge_Session"
    communication_protocol: CommunicationProtocol
    plug_and_pins: PlugAndPins


@dataclass(frozen=True)
class DcPowerControl(CanMessage):
    """DC_Power_Control (v3 digest 4.9, 5): the power command of every powered phase.

    Replaces v2 Insulation_Test, Precharge and Charging_Loop. Nominally every 100 ms.

    Currents are signed: positive = to the vehicle (charge), negative = from the vehicle
    (discharge). In Target_Mode ``current_range_min == current_range_max`` = the target (which
    may be negative in ISO 15118-20 scheduled bidirectional transfer). In Range_Mode the power
    stage picks the operating point inside [``current_range_min``, ``current_range_max``]; the
    range contains 0 when both directions are possible and is all negative for discharge only.
    In Precharge ``current_range_max`` is the current limit and ``current_range_min`` is 0.
    Bit 4 of byte 6 is reserved and ignored (no field).
    """

    NAME: ClassVar[str] = "DC_Power_Control"
    target_voltage: float  # V: test, battery or setpoint voltage depending on the function
    current_range_max: float  # A, signed: target (Target_Mode), upper end (Range_Mode)
    current_range_min: float  # A, signed: = max (Target_Mode), lower end (Range_Mode)
    power_function: PowerFunction
    setpoints_mode: SetpointsMode
    output_contactors: ContactorState  # information, not a command (V3-13)
    lower_output_voltage: VoltageLowering  # only in Standby with zero setpoints

    def operating_current(self, dynamic_target: float | None = None) -> float:
        """Return the current setpoint [A, signed] this command asks for (v3 digest 5.2, B3).

        Target_Mode: ``current_range_max`` (the target). Range_Mode: ``dynamic_target`` (e.g.
        ``OCPP_Control.Dynamic_Target_Current``) if given, else ``current_range_max``, clamped
        to [``current_range_min``, ``current_range_max``]; an inverted range (min > max) yields
        ``current_range_max``. Pure arithmetic: ramping through 0 A on a direction change (B4)
        and the power function are the caller's business.
        """
        if self.setpoints_mode != SetpointsMode.RANGE_MODE:
            return self.current_range_max
        wanted = self.current_range_max if dynamic_target is None else dynamic_target
        return min(max(wanted, self.current_range_min), self.current_range_max)


@dataclass(frozen=True)
class EvInformationBattery(CanMessage):
    """EV_Information_Battery (v3 digest 4.12): on update; 0 = not provided (V3-11)."""

    NAME: ClassVar[str] = "EV_Information_Battery"
    battery_capacity: float  # kWh, 1 kWh steps (v2: 2 kWh)
    present_state_of_charge: int  # %
    minimum_state_of_charge: int  # %
    target_state_of_charge: int  # %
    maximum_state_of_charge: int  # %


@dataclass(frozen=True)
class EvInformationVoltages(CanMessage):
    """EV_Information_Voltages (v3 digest 4.13): on update; 0 = not provided (V3-11)."""

    NAME: ClassVar[str] = "EV_Information_Voltages"
    ev_minimum_voltage: float  # V
    ev_maximum_voltage: float  # V
    ev_present_voltage: float  # V, measured by the vehicle


@dataclass(frozen=True)
class EvInformationChargeLimits(CanMessage):
    """EV_Information_Charge_Limits (v3 digest 4.14): on update; 0 = not provided (V3-11)."""

    NAME: ClassVar[str] = "EV_Information_Charge_Limits"
    ev_minimum_charge_current: float  # A
    ev_maximum_charge_current: float  # A
    ev_minimum_charge_power: float  # kW
    ev_maximum_charge_power: float  # kW


@dataclass(frozen=True)
class EvInformationDischargeLimits(CanMessage):
    """EV_Information_Discharge_Limits (v3 digest 4.15): magnitudes (unsigned), on update.

    0 = not provided (V3-11). The discharge direction is negative only in DC_Power_Control.
    """

    NAME: ClassVar[str] = "EV_Information_Discharge_Limits"
    ev_minimum_discharge_current: float  # A, magnitude
    ev_maximum_discharge_current: float  # A, magnitude
    ev_minimum_discharge_power: float  # kW, magnitude
    ev_maximum_discharge_power: float  # kW, magnitude


@dataclass(frozen=True)
class EvInformationEnergy(CanMessage):
    """EV_Information_Energy (v3 digest 4.16): energy the vehicle still wants, signed.

    Positive = the vehicle will absorb it, negative = the vehicle will deliver it.
    """

    NAME: ClassVar[str] = "EV_Information_Energy"
    ev_minimum_energy_request: float  # kWh, signed
    ev_target_energy_request: float  # kWh, signed
    ev_maximum_energy_request: float  # kWh, signed


@dataclass(frozen=True)
class OcppControl(CanMessage):
    """OCPP_Control (v3 digest 4.23): CSMS current setpoint, on change.

    Only meaningful during Power_Transfer in Range_Mode: clamp it into the DC_Power_Control
    range (:meth:`DcPowerControl.operating_current`).
    """

    NAME: ClassVar[str] = "OCPP_Control"
    dynamic_target_current: float  # A, signed: positive = charge, negative = discharge


MESSAGE_TYPES_V3: tuple[type[CanMessage], ...] = (
    PowerModulesStatus,
    DcPowerParameters,
    SequenceControl,
    AdmCsSeccOutputs,
    AdmCsSpccOutputs,
    AdvanticsControllerStatus,
    NewChargeSessionV3,
    ChargeStatusChange,
    DcPowerControl,
    ChargeSessionFinished,
    EmergencyStop,
    EvInformationBattery,
    EvInformationVoltages,
    EvInformationChargeLimits,
    EvInformationDischargeLimits,
    EvInformationEnergy,
    EvIdCcsPart2Din,
    AdmCoCui1Inputs,
    AdmCsSeccInputs,
    AdmCsSpccInputs,
    CcsExtraInformation,
    McsExtraInformation,
    OcppControl,
)
"""Every message of the v3.6 database, in database order (v3 digest 3)."""

MESSAGE_TYPES_V3_BY_NAME: dict[str, type[CanMessage]] = {t.NAME: t for t in MESSAGE_TYPES_V3}

__all__ = [
    "MESSAGE_TYPES_V3",
    "MESSAGE_TYPES_V3_BY_NAME",
    "ContactorState",
    "DcPowerControl",
    "DcPowerParameters",
    "EvInformationBattery",
    "EvInformationChargeLimits",
    "EvInformationDischargeLimits",
    "EvInformationEnergy",
    "EvInformationVoltages",
    "NewChargeSessionV3",
    "OcppControl",
    "PowerFunction",
    "SetpointsMode",
    "VoltageLowering",
]
