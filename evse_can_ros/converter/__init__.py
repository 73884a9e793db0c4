"""DC/DC converter backends: the interface, the registry and the simulated converter."""

from evse_can_ros.converter.base import (
    OFF,
    Capabilities,
    ConverterBackend,
    ConverterError,
    ConverterFault,
    FaultInjection,
    FollowsControllerState,
    Measurement,
    Mode,
    OutputWatchdog,
    Setpoint,
    SharesVehicleInlet,
)
from evse_can_ros.converter.registry import (
    ENTRY_POINT_GROUP,
    BackendLoadError,
    UnknownBackendError,
    available_backends,
    backend_class,
    create_backend,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "OFF",
    "BackendLoadError",
    "Capabilities",
    "ConverterBackend",
    "ConverterError",
    "ConverterFault",
    "FaultInjection",
    "FollowsControllerState",
    "Measurement",
    "Mode",
    "OutputWatchdog",
    "Setpoint",
    "SharesVehicleInlet",
    "UnknownBackendError",
    "available_backends",
    "backend_class",
    "create_backend",
]
