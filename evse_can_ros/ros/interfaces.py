"""The ROS interface of a pistol, one row per topic: the single table every node reads.

Each :class:`Topic` says which protocol messages it carries, its ROS type, its QoS, which node
publishes it and which nodes subscribe. The bridge derives what it publishes for each received
controller message, the converter driver and the charge server what they subscribe to, the
recorder what it records, and ``docs`` what the README must list (test_docs.py).

QoS: ``LATCHED`` (reliable, transient local, depth 1) for states a late joiner needs; ``EVENTS``
(reliable, volatile, depth 20) for commands and measurements; ``RAW`` (depth 1000) for raw CAN
frames; ``SAFE_TO_UNPLUG`` = LATCHED with a 2 s deadline (published on change and every second,
so a subscriber can detect a stale "true").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rclpy.duration import Duration
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import BatteryState
from std_msgs.msg import Float64

from evse_can_ros import msg as ros
from evse_can_ros.protocol import (
    AdmCoCui1Inputs,
    AdmCsSeccInputs,
    AdmCsSpccInputs,
    CanMessage,
    CcsExtraInformation,
    ChargeSessionFinished,
    ChargeStatusChange,
    ChargingLoop,
    DcPowerControl,
    EmergencyStop,
    EvIdCcsPart2Din,
    EvInformationBattery,
    EvInformationChargeLimits,
    EvInformationDischargeLimits,
    EvInformationEnergy,
    EvInformationVoltages,
    InsulationTest,
    McsExtraInformation,
    NewChargeSession,
    NewChargeSessionV3,
    OcppControl,
    Precharge,
    ProtocolVersion,
)

LATCHED = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
EVENTS = QoSProfile(
    depth=20, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE
)
RAW = QoSProfile(
    depth=1000, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE
)
SAFE_TO_UNPLUG_PERIOD = 1.0
"""s: safe_to_unplug is published on change and at least this often."""
SAFE_TO_UNPLUG = QoSProfile(
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
    deadline=Duration(seconds=2 * SAFE_TO_UNPLUG_PERIOD),
)

BRIDGE, DRIVER, SERVER = "can_bridge", "converter_driver", "charge_server"


@dataclass(frozen=True)
class Topic:
    """One topic of a pistol namespace."""

    name: str  # relative to the pistol namespace
    ros_type: Any
    qos: QoSProfile
    publisher: str  # node name
    subscribers: tuple[str, ...] = ()
    messages: tuple[type[CanMessage], ...] = ()  # protocol messages it carries (bridge topics)
    description: str = ""


TOPICS: tuple[Topic, ...] = (
    # --- the controller's messages, decoded by the bridge (spec 6.6-6.19) ---------------------
    Topic("new_charge_session", ros.NewChargeSession, EVENTS, BRIDGE, (DRIVER, SERVER),
          (NewChargeSession, NewChargeSessionV3),
          "vehicle and session data, every 100 ms until System_Enable (v3: protocol and plug)"),
    Topic("insulation_test", ros.InsulationTest, EVENTS, BRIDGE, (DRIVER,), (InsulationTest,),
          "test voltage requests"),
    Topic("precharge", ros.Precharge, EVENTS, BRIDGE, (DRIVER,), (Precharge,),
          "precharge requests (CCS/MCS)"),
    Topic("charging_loop", ros.ChargingLoop, EVENTS, BRIDGE, (DRIVER, SERVER), (ChargingLoop,),
          "voltage/current requests, SoC"),
    Topic("dc_power_control", ros.DcPowerControl, EVENTS, BRIDGE, (DRIVER,), (DcPowerControl,),
          "v3: power function, setpoints (signed), contactors, lowering"),
    Topic("ocpp_control", ros.OcppControl, EVENTS, BRIDGE, (DRIVER,), (OcppControl,),
          "v3: the CSMS's Dynamic_Target_Current (signed)"),
    Topic("ev_information_battery", ros.EvInformationBattery, LATCHED, BRIDGE, (SERVER,),
          (EvInformationBattery,), "v3: capacity and SoC (present, minimum, target, maximum)"),
    Topic("ev_information_voltages", ros.EvInformationVoltages, LATCHED, BRIDGE,
          (DRIVER, SERVER), (EvInformationVoltages,), "v3: the vehicle's voltages"),
    Topic("ev_information_charge_limits", ros.EvInformationChargeLimits, LATCHED, BRIDGE,
          (SERVER,), (EvInformationChargeLimits,), "v3: the vehicle's charge limits"),
    Topic("ev_information_discharge_limits", ros.EvInformationDischargeLimits, LATCHED, BRIDGE,
          (), (EvInformationDischargeLimits,), "v3: the vehicle's discharge limits"),
    Topic("ev_information_energy", ros.EvInformationEnergy, LATCHED, BRIDGE, (),
          (EvInformationEnergy,), "v3: energy the vehicle still wants (signed)"),
    Topic("charge_status_change", ros.ChargeStatusChange, EVENTS, BRIDGE, (DRIVER,),
          (ChargeStatusChange,), "charge started / stopped"),
    Topic("emergency_stop", ros.EmergencyStop, EVENTS, BRIDGE, (DRIVER, SERVER),
          (EmergencyStop,), "every 100 ms while an emergency stop is active"),
    Topic("charge_session_finished", ros.ChargeSessionFinished, EVENTS, BRIDGE,
          (DRIVER, SERVER), (ChargeSessionFinished,), "end of the session, clean or rushed"),
    Topic("controller_inputs", ros.ControllerInputs, EVENTS, BRIDGE, (),
          (AdmCoCui1Inputs, AdmCsSeccInputs, AdmCsSpccInputs), "controller board inputs"),
    Topic("ev_id", ros.EvId, EVENTS, BRIDGE, (), (EvIdCcsPart2Din,), "EVCCID (CCS DIN/-2)"),
    Topic("ccs_extra_information", ros.CcsExtraInformation, EVENTS, BRIDGE, (),
          (CcsExtraInformation,), "control pilot state and duty cycle"),
    Topic("mcs_extra_information", ros.McsExtraInformation, EVENTS, BRIDGE, (),
          (McsExtraInformation,), "MCS pilot/ID states"),
    # --- the bridge's own topics -----------------------------------------------------------
    Topic("controller_state", ros.ControllerState, LATCHED, BRIDGE, (DRIVER, SERVER), (),
          "controller state and heartbeat health, every 100 ms and on change"),
    Topic("battery_state", BatteryState, LATCHED, BRIDGE, (), (),
          "sensor_msgs/BatteryState of the vehicle in the session, 1 Hz"),
    Topic("power_modules_limits", ros.PowerModulesLimits, LATCHED, BRIDGE, (DRIVER,), (),
          "Power_Modules_Limits / DC_Power_Parameters as sent (and the local power limit)"),
    Topic("sequence_control", ros.SequenceControl, LATCHED, BRIDGE, (SERVER,), (),
          "Sequence_Control flags as sent"),
    Topic("can_rx", ros.CanFrame, RAW, BRIDGE, (), (), "raw frames received (publish_raw_frames)"),
    Topic("can_tx", ros.CanFrame, RAW, BRIDGE, (), (), "raw frames sent (publish_raw_frames)"),
    # --- the converter driver --------------------------------------------------------------
    Topic("power_modules_status", ros.PowerModulesStatus, EVENTS, DRIVER, (BRIDGE, SERVER), (),
          "measurements and System_Enable for the bridge, 20 Hz and on change"),
    Topic("converter_status", ros.ConverterStatus, EVENTS, DRIVER, (SERVER,), (),
          "phase, setpoint, measurement, capabilities, fault, 10 Hz"),
    # --- the charge server ----------------------------------------------------------------
    Topic("charger_availability", ros.ChargerAvailability, LATCHED, SERVER, (), (),
          "availability for the depot, on change"),
    Topic("safe_to_unplug", ros.SafeToUnplug, SAFE_TO_UNPLUG, SERVER, (), (),
          "stamped, with the reason; on change and every second (deadline 2 s)"),
    Topic("operating_point", Float64, LATCHED, SERVER, (DRIVER,), (),
          "v3 Range_Mode operating point of a V2G goal [A, signed]; NaN = the range maximum"),
)  # fmt: skip

TOPIC = {t.name: t for t in TOPICS}
"""Topics by name."""

TOPIC_OF_MESSAGE: dict[type[CanMessage], Topic] = {m: t for t in TOPICS for m in t.messages}
"""The topic on which the bridge publishes each decoded controller message."""


def subscriptions(node: str) -> tuple[Topic, ...]:
    """Return the topics ``node`` subscribes to."""
    return tuple(t for t in TOPICS if node in t.subscribers)


def message_of(topic: Topic, version: ProtocolVersion) -> type[CanMessage] | None:
    """Return the protocol message ``topic`` carries on interface ``version`` (None: none)."""
    return next((m for m in topic.messages if m in version.message_types), None)


def publications(node: str) -> tuple[Topic, ...]:
    """Return the topics ``node`` publishes."""
    return tuple(t for t in TOPICS if t.publisher == node)


BRIDGE_SERVICES: dict[str, str] = {
    "set_start_authorisation": "std_srvs/SetBool: Start_Charge_Authorisation (level)",
    "set_ccs_authorisation": "std_srvs/SetBool: CCS authorisation decision (Valid + Done)",
    "set_power_limits": "SetPowerLimits: Power_Modules_Limits, then Charge_Parameters_Done",
    "press_user_stop": "std_srvs/Trigger: User_Stop_Button pulse",
    "press_chademo_start": "std_srvs/Trigger: CHAdeMO_Start_Button pulse",
    "set_controller_outputs": "SetControllerOutputs: ADM_CS_*_Outputs every second",
}
"""The bridge's services (relative names)."""
