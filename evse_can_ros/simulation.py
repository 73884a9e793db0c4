"""The in-memory charger with the simulated converter: the hardware-free charger for tests.

:func:`simulated_charger` builds an :class:`~evse_can_ros.core.charger.InMemoryCharger` whose
power stage is the simulated converter (:mod:`evse_can_ros.converter.simulated`) sharing the
simulated vehicle's inlet, so the battery is counted once. Pure: no rclpy, no threads (the
converter's wall-clock watchdog thread is off; its modules' own watchdog runs on the simulated
clock), no wall clock.
"""

from __future__ import annotations

from typing import Any

from evse_can_ros.config import from_mapping
from evse_can_ros.converter.simulated import SimulatedConverter, SimulatedConverterParams
from evse_can_ros.core.bridge import BridgeConfig
from evse_can_ros.core.charge_session import SessionConfig
from evse_can_ros.core.charger import InMemoryCharger, Timing
from evse_can_ros.core.controller_sim import ControllerSimConfig, Scenario
from evse_can_ros.core.power_module import PowerModuleConfig
from evse_can_ros.core.vehicle import Vehicle, VehicleParams
from evse_can_ros.protocol import ProtocolVersion, load_codec

V3_CONVERTER = {"max_discharge_current": 200.0, "max_discharge_power": 150000.0}
"""The simulated converter of a v3 charger: bidirectional (the v2 one cannot take power)."""


def simulated_charger(
    *,
    pistol_index: int = 1,
    vehicle: dict[str, Any] | None = None,
    converter: dict[str, Any] | None = None,
    controller: dict[str, Any] | None = None,
    scenario: dict[str, Any] | None = None,
    bridge: dict[str, Any] | None = None,
    power_module: dict[str, Any] | None = None,
    session: dict[str, Any] | None = None,
    setpoint_timeout: float = 0.25,
    timing: Timing | None = None,
    protocol_version: int = 2,
) -> InMemoryCharger:
    """Build a charger; every dict holds parameters of that part (ConfigError if invalid).

    Defaults: a CCS vehicle at 20 % that plugs in after 0.5 s and charges 200 times faster than
    real time (``soc_time_scale``), a controller with sequence flags and a short boot, the
    simulated converter with its default 150 kW modules; with ``protocol_version`` 3 the
    converter is bidirectional (``V3_CONVERTER``: 200 A / 150 kW from the vehicle too).
    """
    vehicle_params = from_mapping(
        VehicleParams, {"soc_time_scale": 200.0, "negotiation_time": 0.5, **(vehicle or {})}
    )
    car = Vehicle(vehicle_params)
    v3 = ProtocolVersion.of(protocol_version) is ProtocolVersion.V3
    converter_params = {**(V3_CONVERTER if v3 else {}), **(converter or {})}
    stage = SimulatedConverter(
        from_mapping(SimulatedConverterParams, converter_params),
        car.inlet,
        setpoint_timeout,
        watchdog_thread=False,
    )
    stage.open()
    return InMemoryCharger(
        load_codec(protocol_version=protocol_version),
        stage,
        car,
        pistol_index=pistol_index,
        controller=from_mapping(
            ControllerSimConfig,
            {
                "pistol_index": pistol_index,
                "use_sequence_flags": True,
                "boot_time": 0.5,
                **(controller or {}),
            },
        ),
        scenario=from_mapping(
            Scenario, {"plug_in_delay": 0.5, "replug_delay": 2.0, **(scenario or {})}
        ),
        bridge=from_mapping(BridgeConfig, {"pistol_index": pistol_index, **(bridge or {})}),
        power_module=from_mapping(PowerModuleConfig, power_module or {}),
        session=from_mapping(SessionConfig, session or {}),
        timing=timing,
    )
