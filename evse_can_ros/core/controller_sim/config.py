"""The emulated controller's configuration, scenario knobs and the groups of states it uses."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from evse_can_ros.config import ConfigError, check, param
from evse_can_ros.protocol import (
    CommunicationProtocol,
    ControllerState,
)

log = logging.getLogger(__name__)

S = ControllerState
STATE_LABELS: tuple[str, ...] = tuple(s.label for s in ControllerState)
PERIOD = 0.1
"""s: period of the controller's cyclic messages (spec 5)."""
SLOW_PERIOD = 1.0
"""s: period of EV_ID_CCS_Part2_DIN (spec 5)."""
INSULATION_VOLTAGE_FRACTION = 0.9
"""Present_Voltage must reach this fraction of Test_Voltage before the resistance counts (9.5)."""

# States of an open session (vehicle attached to the controller's protocol stack).
_SESSION_STATES = frozenset(
    {
        S.NEGOTIATING_CONNECTION,
        S.CCS_AUTHORISATION_PROCESS,
        S.CONNECTED_WITH_FULL_INFO,
        S.INSULATION_TEST,
        S.PRECHARGE,
        S.WAITING_FOR_CHARGE,
        S.CHARGING,
        S.ENDING_CHARGE,
        S.WELDING_DETECTION,
    }
)
# Power functions possibly active (standby frame on abort).
_POWER_STATES = frozenset(
    {
        S.INSULATION_TEST,
        S.PRECHARGE,
        S.WAITING_FOR_CHARGE,
        S.CHARGING,
        S.ENDING_CHARGE,
        S.WELDING_DETECTION,
    }
)
# After the insulation test, with a power function active: insulation interlock (spec 6.1).
_INSULATION_INTERLOCK_STATES = frozenset(
    {S.PRECHARGE, S.WAITING_FOR_CHARGE, S.CHARGING, S.ENDING_CHARGE}
)
_EV_ID_PROTOCOLS = frozenset(
    {
        CommunicationProtocol.CCS_DIN_70121_2012_V2,
        CommunicationProtocol.CCS_ISO_15118_2010_V1,
        CommunicationProtocol.CCS_ISO_15118_2013_V2,
    }
)


@dataclass(frozen=True)
class ControllerSimConfig:
    """The emulated controller's configuration (its ``/srv/config.cfg`` and timing)."""

    pistol_index: int = param(
        1, "pistol index configured in the controller (id bits 28..24)", min=1, max=31
    )
    use_sequence_flags: bool = param(
        False,
        "evaluate Sequence_Control: Not_Available until Start_Charge_Authorisation, "
        "CHAdeMO_Start_Button, User_Stop_Button",
    )
    ccs_external_authorisation: bool = param(
        False, "CCS: wait in CCS_Authorisation_Process for the customer (needs sequence flags)"
    )
    wait_charge_parameters: bool = param(
        False, "give the vehicle the charger limits only after Charge_Parameters_Done (flags)"
    )
    boot_time: float = param(
        1.0, "time in Initialising after start or reset (real: ~15 s)", unit="s", min=0, max=120
    )
    power_status_timeout: float = param(
        0.5,
        "Power_Modules_Status reception timeout in the supervised window (not published)",
        unit="s",
        min=0.1,
        max=10.0,
    )
    max_voltage: float = param(
        1000.0, "static voltage limit of the controller config", unit="V", min=1.0, max=1500.0
    )
    max_current: float = param(
        500.0, "static current limit of the controller config", unit="A", min=1.0, max=3000.0
    )
    insulation_test_voltage: float = param(
        0.0,
        "Insulation_Test voltage; 0 = min(vehicle permitted, charger maximum)",
        unit="V",
        min=0.0,
        max=1500.0,
    )
    insulation_pass_iterations: int = param(
        10, "consecutive good Insulation_Test iterations to pass (spec D1: 10 or 50)", min=1
    )
    insulation_timeout: float = param(
        30.0, "insulation test budget (spec 9.5)", unit="s", min=0.5, max=300.0
    )
    insulation_limit: float = param(
        100.0, "insulation pass / interlock limit", unit="Ohm/V", min=1.0, max=10000.0
    )
    rampdown_voltage: float = param(
        20.0, "end of the post-test ramp-down (spec 9.5)", unit="V", min=0.0, max=100.0
    )
    chademo_unlock_voltage: float = param(
        10.0, "CHAdeMO: connector unlocked at or below (spec 9.10)", unit="V", min=0, max=60
    )
    unlock_timeout: float = param(
        10.0, "longest wait for a safe voltage before ending the session", unit="s", min=0.1
    )
    closing_time: float = param(
        2.0, "Closing_Communication dwell before Waiting_For_PEV", unit="s", min=0.0, max=60
    )
    charging_loop_period: float = param(
        0.1, "Charging_Loop period in Charging (CCS is vehicle paced)", unit="s", min=0.05
    )
    send_extra_information: bool = param(
        True, "send EV_ID_CCS_Part2_DIN and CCS_Extra_Information (CCS vehicles)"
    )
    # interface v3 (the codec's protocol_version selects the interface)
    bidirectional: bool = param(
        True,
        "v3: is_bidirectional of the pistol: a BPT vehicle may discharge (the real controller's "
        "default is false)",
    )
    max_discharge_current: float = param(
        500.0,
        "v3: static discharge current limit of the controller config "
        "(max_charger_discharge_current)",
        unit="A",
        min=0.0,
        max=3000.0,
    )
    repeat_standby: bool = param(
        True,
        "v3: repeat the standby DC_Power_Control every 100 ms in Waiting_For_Charge, "
        "Ending_Charge and Welding_Detection (KCD: sent during any powered phase); false = "
        "single frames at the phase changes (sequence diagrams)",
    )

    def __post_init__(self) -> None:
        check(self)
        name = type(self).__name__
        for flag in ("ccs_external_authorisation", "wait_charge_parameters"):
            if getattr(self, flag) and not self.use_sequence_flags:
                raise ConfigError(f"{name}.{flag} needs use_sequence_flags = true")


@dataclass(frozen=True)
class Scenario:
    """Fault and behaviour knobs of a simulation run; each applies to every session."""

    plug_in_delay: float = param(
        1.0, "first plug-in after the start; < 0 = never", unit="s", min=-1.0, max=1e6
    )
    replug_delay: float = param(
        -1.0, "plug in again this long after unplugging; < 0 = stay unplugged", unit="s", min=-1
    )
    unplug_after: float = param(
        0.0, "unplug this long after Charging starts; 0 = off", unit="s", min=0.0
    )
    stop_after: float = param(
        0.0, "the vehicle stops this long after Charging starts; 0 = off", unit="s", min=0.0
    )
    ev_emergency_after: float = param(
        0.0, "EV emergency stop this long after Charging starts; 0 = off", unit="s", min=0.0
    )
    reset_after: float = param(
        0.0, "controller reset this long after entering reset_state; 0 = off", unit="s", min=0
    )
    reset_state: str = param("Charging", "state in which the reset happens", choices=STATE_LABELS)
    reset_duration: float = param(
        1.0, "heartbeat silence of a reset", unit="s", min=0.0, max=600.0
    )
    ccs_authorisation_refused: bool = param(
        False, "CCS: the controller's own authorisation (EIM/PnC) refuses the user"
    )
    withhold_start: bool = param(
        False,
        "CHAdeMO: the user never presses the physical start button (only CHAdeMO_Start_Button "
        "over CAN starts a session)",
    )
    insulation_fault_kohm: float = param(
        0.0,
        "the controller's own insulation monitor reads this (overrides the power side); 0 = off",
        unit="kOhm",
        min=0.0,
        max=510.0,
    )
    delayed_charge: float = param(
        0.0, "extra time in Waiting_For_Charge before the first current request", unit="s", min=0
    )
    csms_setpoint: float = param(
        0.0,
        "v3, range mode: OCPP_Control.Dynamic_Target_Current the CSMS sends when Charging "
        "starts (negative = discharge); 0 = no OCPP_Control",
        unit="A",
        min=-3000.0,
        max=3000.0,
    )
    csms_setpoint_at_limit: float = param(
        0.0,
        "v3: the CSMS's setpoint once the vehicle's range excludes csms_setpoint's direction "
        "(its SoC limit is reached); 0 = keep csms_setpoint",
        unit="A",
        min=-3000.0,
        max=3000.0,
    )

    def __post_init__(self) -> None:
        check(self)
