"""Typed messages of the Generic EVSE CAN interface v2 (spec 6), one dataclass per message.

Conventions (checked against the database by ``test_protocol_messages.py``):

* ``NAME`` is the database message name; the codec looks messages up by it, never by identifier.
* A field is named after its signal in lower case (``Present_Voltage`` -> ``present_voltage``).
  ``Reserved`` signals have no field: they are always sent as 0 and ignored on receipt.
* Values are physical values in the database units (V, A, degC, kOhm, kWh, %); 1-bit signals
  without labels are ``bool``; signals with a label set are ``LabelEnum`` members.
* ``LabelEnum`` accepts values outside its label set (e.g. a controller state added by a future
  controller release): they decode to a pseudo-member named ``UNKNOWN_<n>`` instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Any, ClassVar


class LabelEnum(IntEnum):
    """An integer label set of the database; members carry the database label in ``label``."""

    label: str

    def __new__(cls, value: int, label: str) -> LabelEnum:  # noqa: D102
        obj = int.__new__(cls, value)
        obj._value_ = value
        obj.label = label
        return obj

    @classmethod
    def _missing_(cls, value: object) -> LabelEnum | None:
        """Return a pseudo-member for an unlabelled value (decoding must not fail)."""
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0xFFFF_FFFF:
            obj = int.__new__(cls, value)
            obj._value_ = value
            obj._name_ = f"UNKNOWN_{value}"
            obj.label = f"Unknown_{value}"
            return obj
        return None

    @property
    def known(self) -> bool:
        """True if the value has a label in the database."""
        return self._name_ in type(self).__members__


class Permission(LabelEnum):
    """System_Enable and Start_Charge_Authorisation."""

    NOT_ALLOWED = 0, "Not_Allowed"
    ALLOWED = 1, "Allowed"


class ButtonState(LabelEnum):
    """CHAdeMO_Start_Button and User_Stop_Button (edge-triggered by the controller)."""

    NOT_PRESSED = 0, "Not_Pressed"
    PRESSED = 1, "Pressed"


class Completion(LabelEnum):
    """CCS_Authorisation_Done and Charge_Parameters_Done."""

    NOT_DONE = 0, "Not_Done"
    DONE = 1, "Done"


class Validity(LabelEnum):
    """CCS_Authorisation_Valid."""

    INVALID = 0, "Invalid"
    VALID = 1, "Valid"


class CommunicationProtocol(LabelEnum):
    """New_Charge_Session.Communication_Protocol."""

    CCS_DIN_70121_2012_V2 = 0, "CCS_DIN_70121_2012_v2"
    CCS_ISO_15118_2010_V1 = 1, "CCS_ISO_15118_2010_v1"
    CCS_ISO_15118_2013_V2 = 2, "CCS_ISO_15118_2013_v2"
    CHADEMO_V0_9 = 3, "CHAdeMO_v0.9"
    CHADEMO_V1_0_V1_1_V1_2 = 4, "CHAdeMO_v1.0-v1.1-v1.2"
    CHADEMO_V2_0 = 5, "CHAdeMO_v2.0"
    CCS_PWM = 6, "CCS_PWM"
    CCS_ISO_15118_2022 = 7, "CCS_ISO_15118_2022"

    @property
    def is_chademo(self) -> bool:
        """True for the CHAdeMO protocol versions."""
        return self in (
            CommunicationProtocol.CHADEMO_V0_9,
            CommunicationProtocol.CHADEMO_V1_0_V1_1_V1_2,
            CommunicationProtocol.CHADEMO_V2_0,
        )


class PlugAndPins(LabelEnum):
    """New_Charge_Session.Plug_and_pins."""

    CCS_DC_CORE = 0, "CCS_DC_Core"
    CCS_DC_EXTENDED = 1, "CCS_DC_Extended"
    CHADEMO = 2, "CHAdeMO"
    CCS_AC = 3, "CCS_AC"
    MCS = 4, "MCS"


class ChargeStatus(LabelEnum):
    """Charge_Status_Change.Vehicle_Ready_for_Charging."""

    CHARGE_STOPPED = 0, "Charge_Stopped"
    CHARGE_STARTED = 1, "Charge_Started"


class EmergencyStopOrigin(LabelEnum):
    """Emergency_Stop.Origin (0 and 2 are unassigned)."""

    EVSE = 1, "EVSE"
    PEV = 3, "PEV"


class SessionEnd(LabelEnum):
    """Charge_Session_Finished.State."""

    CLEAN_STOP = 0, "Clean_Stop"
    RUSHED_STOP = 1, "Rushed_Stop"


class ControllerState(LabelEnum):
    """Advantics_Controller_Status.State (spec 8)."""

    INITIALISING = 0, "Initialising"
    WAITING_FOR_PEV = 1, "Waiting_For_PEV"
    NEGOTIATING_CONNECTION = 2, "Negotiating_Connection"
    CONNECTED_WITH_FULL_INFO = 3, "Connected_With_Full_Info"
    INSULATION_TEST = 4, "Insulation_Test"
    PRECHARGE = 5, "Precharge"
    WAITING_FOR_CHARGE = 6, "Waiting_For_Charge"
    CHARGING = 7, "Charging"
    ENDING_CHARGE = 8, "Ending_Charge"
    WELDING_DETECTION = 9, "Welding_Detection"
    CLOSING_COMMUNICATION = 10, "Closing_Communication"
    CCS_AUTHORISATION_PROCESS = 11, "CCS_Authorisation_Process"
    NOT_AVAILABLE = 12, "Not_Available"
    CHARGE_PAUSE = 13, "Charge_Pause"


class CpState(LabelEnum):
    """CCS_Extra_Information.CP_State (control-pilot state)."""

    E_OR_F = 0, "E_or_F"
    D = 3, "D"
    C = 6, "C"
    B = 9, "B"
    A = 12, "A"


class CeState(LabelEnum):
    """MCS_Extra_Information.CE_State."""

    UNDEFINED = 0, "Undefined"
    A = 1, "A"
    B0 = 2, "B0"
    B0_AUX = 3, "B0_Aux"
    B = 4, "B"
    B_AUX = 5, "B_Aux"
    C = 6, "C"
    C_AUX = 7, "C_Aux"
    EC = 8, "EC"
    E = 9, "E"


class IdState(LabelEnum):
    """MCS_Extra_Information.ID_State."""

    UNMATED = 0, "Unmated"
    MATED = 1, "Mated"
    MATED_EVAUX = 2, "Mated_EVAux"
    MATED_EVSEAUX = 3, "Mated_EVSEAux"


@dataclass(frozen=True)
class CanMessage:
    """Base of all typed messages. ``NAME`` is the database message name."""

    NAME: ClassVar[str] = ""


# --- sent by the customer controller (us) ----------------------------------------------


@dataclass(frozen=True)
class PowerModulesStatus(CanMessage):
    """Power_Modules_Status (spec 6.1): every 100 ms while the power stage is awake."""

    NAME: ClassVar[str] = "Power_Modules_Status"
    present_voltage: float  # V
    present_current: float  # A, positive = delivered to the vehicle (v3: negative = from it)
    power_modules_temperature: float  # degC, -40..215
    enclosure_temperature: float  # degC, -40..215
    system_enable: Permission
    insulation_resistance: float  # kOhm, 2 kOhm steps, 0..510


@dataclass(frozen=True)
class PowerModulesLimits(CanMessage):
    """Power_Modules_Limits (spec 6.2): event driven, >= 100 ms apart."""

    NAME: ClassVar[str] = "Power_Modules_Limits"
    maximum_voltage: float  # V, 0 = controller config default
    maximum_current: float  # A, never negative, 0 = controller config default


@dataclass(frozen=True)
class SequenceControl(CanMessage):
    """Sequence_Control (spec 6.3): on every flag change and on entry into states 12 and 1."""

    NAME: ClassVar[str] = "Sequence_Control"
    start_charge_authorisation: Permission = Permission.NOT_ALLOWED
    chademo_start_button: ButtonState = ButtonState.NOT_PRESSED
    ccs_authorisation_done: Completion = Completion.NOT_DONE
    ccs_authorisation_valid: Validity = Validity.INVALID
    charge_parameters_done: Completion = Completion.NOT_DONE
    user_stop_button: ButtonState = ButtonState.NOT_PRESSED


@dataclass(frozen=True)
class AdmCsSeccOutputs(CanMessage):
    """ADM_CS_SECC_Outputs (spec 6.4): every 1000 ms when outputs are CAN_Controlled."""

    NAME: ClassVar[str] = "ADM_CS_SECC_Outputs"
    digital_output1: bool = False
    digital_output2: bool = False
    digital_output3: bool = False
    digital_output4: bool = False
    led1: int = 0  # brightness 1..100, > 100 = full
    led2: int = 0
    led3: int = 0


@dataclass(frozen=True)
class AdmCsSpccOutputs(CanMessage):
    """ADM_CS_SPCC_Outputs (spec 6.5): every 1000 ms when outputs are CAN_Controlled."""

    NAME: ClassVar[str] = "ADM_CS_SPCC_Outputs"
    digital_output1: bool = False
    digital_output2: bool = False
    led1: int = 0
    led2: int = 0
    led3: int = 0


# --- sent by the Advantics controller --------------------------------------------------


@dataclass(frozen=True)
class NewChargeSession(CanMessage):
    """New_Charge_Session (spec 6.6): every 100 ms until System_Enable = Allowed."""

    NAME: ClassVar[str] = "New_Charge_Session"
    communication_protocol: CommunicationProtocol
    plug_and_pins: PlugAndPins
    ev_maximum_voltage: float  # V
    ev_maximum_current: float  # A, 0 = unknown
    battery_capacity: float  # kWh, 0 = unknown
    state_of_charge: int  # %


@dataclass(frozen=True)
class InsulationTest(CanMessage):
    """Insulation_Test (spec 6.7)."""

    NAME: ClassVar[str] = "Insulation_Test"
    test_voltage: float  # V, 0 = end of test / ramp down


@dataclass(frozen=True)
class Precharge(CanMessage):
    """Precharge (spec 6.8), CCS/MCS only."""

    NAME: ClassVar[str] = "Precharge"
    target_voltage: float  # V
    maximum_current: float  # A, 0 = precharge finished


@dataclass(frozen=True)
class ChargeStatusChange(CanMessage):
    """Charge_Status_Change (spec 6.9): one shot."""

    NAME: ClassVar[str] = "Charge_Status_Change"
    vehicle_ready_for_charging: ChargeStatus


@dataclass(frozen=True)
class ChargingLoop(CanMessage):
    """Charging_Loop (spec 6.10): (0 V, 0 A) = standby."""

    NAME: ClassVar[str] = "Charging_Loop"
    target_voltage: float  # V
    target_current: float  # A (signed on the bus)
    state_of_charge: int  # %, informative

    @property
    def is_standby(self) -> bool:
        """True for the (0 V, 0 A) standby command."""
        return self.target_voltage == 0 and self.target_current == 0


@dataclass(frozen=True)
class EmergencyStop(CanMessage):
    """Emergency_Stop (spec 6.11): every 100 ms while active."""

    NAME: ClassVar[str] = "Emergency_Stop"
    origin: EmergencyStopOrigin


@dataclass(frozen=True)
class ChargeSessionFinished(CanMessage):
    """Charge_Session_Finished (spec 6.12): one shot."""

    NAME: ClassVar[str] = "Charge_Session_Finished"
    state: SessionEnd


@dataclass(frozen=True)
class AdvanticsControllerStatus(CanMessage):
    """Advantics_Controller_Status (spec 6.13): the heartbeat, every 100 ms."""

    NAME: ClassVar[str] = "Advantics_Controller_Status"
    state: ControllerState


@dataclass(frozen=True)
class AdmCoCui1Inputs(CanMessage):
    """ADM_CO_CUI1_Inputs (spec 6.14)."""

    NAME: ClassVar[str] = "ADM_CO_CUI1_Inputs"
    switch0: bool
    switch1: bool
    switch2: bool
    switch3: bool
    switch4: bool
    switch5: bool
    colibri_temperature: float  # degC
    cpu_temperature: float  # degC
    pistol_ptc1: float  # degC
    pistol_ptc2: float  # degC


@dataclass(frozen=True)
class AdmCsSeccInputs(CanMessage):
    """ADM_CS_SECC_Inputs (spec 6.15)."""

    NAME: ClassVar[str] = "ADM_CS_SECC_Inputs"
    digital_input1: bool
    digital_input2: bool
    digital_input3: bool
    digital_input4: bool
    cpu_temperature: float  # degC
    pistol_ptc1: float  # degC
    pistol_ptc2: float  # degC


@dataclass(frozen=True)
class EvIdCcsPart2Din(CanMessage):
    """EV_ID_CCS_Part2_DIN (spec 6.16)."""

    NAME: ClassVar[str] = "EV_ID_CCS_Part2_DIN"
    byte0: int
    byte1: int
    byte2: int
    byte3: int
    byte4: int
    byte5: int

    @property
    def ev_id(self) -> bytes:
        """The 6-byte EV identifier, byte 0 first."""
        return bytes((self.byte0, self.byte1, self.byte2, self.byte3, self.byte4, self.byte5))


@dataclass(frozen=True)
class AdmCsSpccInputs(CanMessage):
    """ADM_CS_SPCC_Inputs (spec 6.17)."""

    NAME: ClassVar[str] = "ADM_CS_SPCC_Inputs"
    digital_input1: bool
    digital_input2: bool
    digital_input3: bool
    digital_input4: bool
    cpu_temperature0: float  # degC
    cpu_temperature1: float  # degC
    pt1k_a: float  # degC (CHAdeMO solenoid input on CHAdeMO pistols)
    pt1k_b: float  # degC
    pt1ks_c: float  # degC
    pt1ks_d: float  # degC


@dataclass(frozen=True)
class CcsExtraInformation(CanMessage):
    """CCS_Extra_Information (spec 6.18)."""

    NAME: ClassVar[str] = "CCS_Extra_Information"
    cp_state: CpState
    cp_duty_cycle: float  # %


@dataclass(frozen=True)
class McsExtraInformation(CanMessage):
    """MCS_Extra_Information (spec 6.19)."""

    NAME: ClassVar[str] = "MCS_Extra_Information"
    ce_state: CeState
    id_state: IdState


MESSAGE_TYPES: tuple[type[CanMessage], ...] = (
    PowerModulesStatus,
    PowerModulesLimits,
    SequenceControl,
    AdmCsSeccOutputs,
    AdmCsSpccOutputs,
    NewChargeSession,
    InsulationTest,
    Precharge,
    ChargeStatusChange,
    ChargingLoop,
    EmergencyStop,
    ChargeSessionFinished,
    AdvanticsControllerStatus,
    AdmCoCui1Inputs,
    AdmCsSeccInputs,
    EvIdCcsPart2Din,
    AdmCsSpccInputs,
    CcsExtraInformation,
    McsExtraInformation,
)
"""Every message of the v2.7 database, in database order."""

MESSAGE_TYPES_BY_NAME: dict[str, type[CanMessage]] = {t.NAME: t for t in MESSAGE_TYPES}


def field_name(signal_name: str) -> str:
    """Return the dataclass field name of a database signal name."""
    return signal_name.lower()


def as_dict(message: CanMessage) -> dict[str, Any]:
    """Return the fields of ``message`` as a plain dict (enums as their labels), e.g. for logs."""
    out: dict[str, Any] = {}
    for f in fields(message):
        value = getattr(message, f.name)
        out[f.name] = value.label if isinstance(value, LabelEnum) else value
    return out


__all__ = [
    "MESSAGE_TYPES",
    "MESSAGE_TYPES_BY_NAME",
    "AdmCoCui1Inputs",
    "AdmCsSeccInputs",
    "AdmCsSeccOutputs",
    "AdmCsSpccInputs",
    "AdmCsSpccOutputs",
    "AdvanticsControllerStatus",
    "ButtonState",
    "CanMessage",
    "CcsExtraInformation",
    "CeState",
    "ChargeSessionFinished",
    "ChargeStatus",
    "ChargeStatusChange",
    "ChargingLoop",
    "CommunicationProtocol",
    "Completion",
    "ControllerState",
    "CpState",
    "EmergencyStop",
    "EmergencyStopOrigin",
    "EvIdCcsPart2Din",
    "IdState",
    "InsulationTest",
    "LabelEnum",
    "McsExtraInformation",
    "NewChargeSession",
    "Permission",
    "PlugAndPins",
    "PowerModulesLimits",
    "PowerModulesStatus",
    "Precharge",
    "SequenceControl",
    "SessionEnd",
    "Validity",
    "as_dict",
    "field_name",
]
