"""Generate docs/parameters.md: every parameter of every node, from the config dataclasses.

``python -m evse_can_ros.ros.paramdoc > docs/parameters.md``; test/test_docs.py checks that the
file is current, so the reference cannot drift from the code.
"""

from __future__ import annotations

from typing import Any

from evse_can_ros.config import describe
from evse_can_ros.converter.infypower.params import InfyPowerParams
from evse_can_ros.converter.simulated import SimulatedConverterParams
from evse_can_ros.core.bridge import BridgeConfig
from evse_can_ros.core.charge_session import SessionConfig
from evse_can_ros.core.controller_sim import ControllerSimConfig, Scenario
from evse_can_ros.core.power_module import PowerModuleConfig
from evse_can_ros.core.vehicle import VehicleParams
from evse_can_ros.ros.controller_sim_node import SimLinkConfig
from evse_can_ros.ros.converter_driver_node import DriverConfig
from evse_can_ros.ros.params import InterfaceConfig
from evse_can_ros.transport import LinkConfig

EXTRA = {  # parameters declared directly by a node (not from a config dataclass)
    "database_path": (
        "",
        "CAN database (.dbc/.kcd); empty = the packaged database of protocol_version",
    ),
    "publish_raw_frames": (False, "publish every received/sent frame on can_rx / can_tx"),
    "charge_server.pistol_index": (1, "pistol index (for charger_availability)"),
}

NODES: tuple[tuple[str, str, tuple[tuple[str, Any], ...], tuple[str, ...]], ...] = (
    (
        "can_bridge",
        "The CAN bridge of one pistol.",
        (("", BridgeConfig), ("", InterfaceConfig), ("can_", LinkConfig)),
        ("database_path", "publish_raw_frames"),
    ),
    (
        "converter_driver",
        "Power modules. `simulated.*` exist with `converter_backend: simulated`; the four fault "
        "flags can be changed at run time (`ros2 param set`), the others are read-only. "
        "`infypower.*` exist with `converter_backend: infypower` (read-only; README, Converter "
        "backends).",
        (
            ("", DriverConfig),
            ("", PowerModuleConfig),
            ("", InterfaceConfig),
            ("simulated.", SimulatedConverterParams),
            ("infypower.", InfyPowerParams),
        ),
        (),
    ),
    (
        "charge_server",
        "The Charge action of one pistol.",
        (("", SessionConfig), ("", InterfaceConfig)),
        ("charge_server.pistol_index",),
    ),
    (
        "controller_simulator",
        "The Advantics controller and a vehicle (simulation only).",
        (
            ("", InterfaceConfig),
            ("", ControllerSimConfig),
            ("can_", SimLinkConfig),
            ("vehicle.", VehicleParams),
            ("scenario.", Scenario),
        ),
        ("database_path",),
    ),
)


def _cell(value: Any) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return f"`{text}`" if text != "" else '`""`'


def _range(entry: dict[str, Any]) -> str:
    if entry.get("choices"):
        return ", ".join(str(c) for c in entry["choices"])
    lo, hi = entry.get("min"), entry.get("max")
    if lo is None and hi is None:
        return ""
    return f"{'' if lo is None else lo} .. {'' if hi is None else hi}"


def markdown() -> str:
    """Return the whole parameter reference."""
    out = [
        "# Node parameters",
        "",
        "Generated from the code by `python -m evse_can_ros.ros.paramdoc` (do not edit; "
        "`test/test_docs.py` checks it is current). Units are SI unless stated. Values outside "
        "the range are refused at start with a one-line error (exit code 2).",
    ]
    for node, about, groups, extra in NODES:
        out += ["", f"## `{node}`", "", about, ""]
        out += ["| Parameter | Default | Unit | Range | Description |", "|---|---|---|---|---|"]
        for prefix, cls in groups:
            for e in describe(cls):
                out.append(
                    f"| `{prefix}{e['name']}` | {_cell(e['default'])} | {e.get('unit') or ''} "
                    f"| {_range(e)} | {e.get('description', '')} |"
                )
        for key in extra:
            default, text = EXTRA[key]
            out.append(f"| `{key.rsplit('.', 1)[-1]}` | {_cell(default)} |  |  | {text} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
