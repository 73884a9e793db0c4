"""Running the module emulator: in memory on a simulated clock, or on a real-time bus.

* :class:`EmulatorLink`: the backend's transport seam connected straight to a
  :class:`~.emulator.ModuleEmulator`; the caller moves both to ``now`` (tests, whole charges on
  a simulated clock). Deterministic: no threads.
* :class:`ModuleEmulatorRunner`: the emulator on a python-can bus (``virtual`` in-process,
  ``loopback`` between processes, or a real interface) in a thread, on the monotonic clock:
  ``evse-can-ros simulate-modules`` and ``evse-can-ros sim --converter-backend infypower``.
* :func:`start_module_emulators`: one runner per InfyPower backend of a simulated charger.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import can
import yaml

from evse_can_ros.config import ConfigError, from_mapping
from evse_can_ros.converter.infypower.emulator import EmulatorParams, ModuleEmulator
from evse_can_ros.converter.infypower.params import InfyPowerParams
from evse_can_ros.core.battery import VehicleInlet
from evse_can_ros.protocol.frame import CanFrame
from evse_can_ros.text import one_line

log = logging.getLogger(__name__)

EMULATOR_SECTION = "module_emulator"
"""Name of the params-file entry with :class:`EmulatorParams` (``/**/module_emulator``)."""
SIMULATED_INTERFACES = ("virtual", "loopback")
"""Interfaces on which the charger's simulation starts a module emulator (never real buses)."""


class EmulatorLink:
    """In-memory module bus between a backend and an emulator (the backend's transport).

    Frames the backend sends wait until :meth:`advance` hands them to the emulator at ``now``;
    the replies are delivered to the backend at once (it processes them at its next call).
    """

    def __init__(self, emulator: ModuleEmulator) -> None:
        self.emulator = emulator
        self.broken = False  # sends fail (adapter unplugged)
        self.sent: list[CanFrame] = []  # everything the backend sent
        self._pending: list[CanFrame] = []
        self._on_frame: Callable[[CanFrame, float], None] | None = None

    def open(self, on_frame: Callable[[CanFrame, float], None]) -> None:
        """Connect the backend."""
        self._on_frame = on_frame

    def send(self, frame: CanFrame) -> bool:
        """Queue one frame for the emulator (False while ``broken`` or closed)."""
        if self.broken or self._on_frame is None:
            return False
        self.sent.append(frame)
        self._pending.append(frame)
        return True

    def close(self) -> None:
        """Disconnect the backend."""
        self._on_frame = None

    def describe(self) -> str:
        """Return a name for logs."""
        return "in-memory emulator link"

    def advance(self, now: float) -> None:
        """Deliver the backend's frames to the emulator at ``now``, move the plant, reply."""
        pending, self._pending = self._pending, []
        replies: list[CanFrame] = []
        for frame in pending:
            replies += self.emulator.receive(frame, now)
        replies += self.emulator.advance(now)
        if self._on_frame is not None:
            for reply in replies:
                self._on_frame(reply, now)


class ModuleEmulatorRunner:
    """The emulator on a python-can bus, in a thread, on the monotonic clock."""

    def __init__(
        self,
        emulator: ModuleEmulator,
        interface: str,
        channel: str,
        bitrate: int = 0,
        period: float = 0.01,
    ) -> None:
        self.emulator = emulator
        self.interface = interface
        self.channel = channel
        self.bitrate = bitrate
        self.period = period
        self.lock = threading.Lock()  # held while the emulator runs (for readers of its state)
        self._bus: can.BusABC | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ModuleEmulatorRunner:
        """Open the bus (ConfigError if it cannot be opened) and start the thread."""
        from evse_can_ros.transport.can_link import open_bus

        kwargs: dict[str, Any] = {"interface": self.interface, "channel": self.channel}
        if self.bitrate:
            kwargs["bitrate"] = self.bitrate
        try:
            self._bus = open_bus(**kwargs)
        except Exception as exc:  # python-can raises many types; one line for the user
            raise ConfigError(
                f"module emulator: cannot open {self.interface}:{self.channel}: {one_line(exc)}"
            ) from None
        self._thread = threading.Thread(target=self._run, name="infypower-emulator", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the thread and release the bus (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.shutdown()

    def _run(self) -> None:
        bus = self._bus
        assert bus is not None
        next_step = time.monotonic()
        while not self._stop.is_set():
            try:
                msg = bus.recv(timeout=max(0.0, min(self.period, next_step - time.monotonic())))
            except (can.CanError, OSError, ValueError) as exc:
                log.error("module emulator: receive failed: %s", one_line(exc))
                self._stop.wait(0.5)
                continue
            now = time.monotonic()
            out: list[CanFrame] = []
            with self.lock:
                if msg is not None:
                    frame = CanFrame(
                        msg.arbitration_id,
                        bytes(msg.data),
                        now,
                        bool(msg.is_extended_id),
                        bool(msg.is_remote_frame),
                        bool(msg.is_error_frame),
                    )
                    out += self.emulator.receive(frame, now)
                if now >= next_step:
                    next_step = now + self.period
                    out += self.emulator.advance(now)
            for frame in out:
                try:
                    bus.send(
                        can.Message(
                            arbitration_id=frame.arbitration_id,
                            data=frame.data,
                            is_extended_id=True,
                        ),
                        timeout=0.01,
                    )
                except (can.CanError, OSError, ValueError) as exc:
                    log.debug("module emulator: send failed: %s", exc)


def emulator_section(params_file: str) -> dict[str, Any]:
    """Return the ``module_emulator`` parameters of a ROS params file ({} if none)."""
    if not params_file:
        return {}
    try:
        data = yaml.safe_load(Path(params_file).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {params_file}: {one_line(exc)}") from None
    out: dict[str, Any] = {}
    for key, value in (data or {}).items():
        if str(key).rstrip("/").rsplit("/", 1)[-1] == EMULATOR_SECTION and isinstance(value, dict):
            out.update(value.get("ros__parameters") or {})
    return out


def emulator_params_for(backend: InfyPowerParams, overrides: Mapping[str, Any]) -> EmulatorParams:
    """Emulator parameters that match a backend's addressing, then ``overrides`` (a params file).

    Fixed addressing needs contiguous addresses (the emulated modules are numbered in a row).
    """
    derived: dict[str, Any] = {"group": backend.group_address}
    if backend.addressing == "fixed":
        addresses = sorted(backend.addresses())
        if addresses != list(range(addresses[0], addresses[0] + len(addresses))):
            raise ConfigError(
                f"module emulator: fixed addresses {backend.module_addresses!r} are not "
                "contiguous; set module_emulator.first_address and modules"
            )
        derived.update(first_address=addresses[0], modules=len(addresses))
    else:
        derived.update(first_address=0, modules=backend.module_count or 4)
    return from_mapping(EmulatorParams, {**derived, **overrides})


def start_module_emulators(
    converters: Iterable[tuple[object, VehicleInlet | None]], params_file: str = ""
) -> list[ModuleEmulatorRunner]:
    """Start a module emulator for every InfyPower backend of a simulated charger.

    ``converters`` pairs each converter driver's backend with the vehicle inlet of its pistol
    (the battery the vehicle model charges). Backends of other types are skipped, and so are
    InfyPower backends on a real interface (never emulate modules on a real bus). Emulator
    parameters come from the ``module_emulator`` entry of ``params_file``. Raises ConfigError
    (one line), e.g. for two backends on one module bus.
    """
    from evse_can_ros.converter.infypower.backend import InfyPowerConverter

    overrides = emulator_section(params_file)
    runners: list[ModuleEmulatorRunner] = []
    buses: set[tuple[str, str]] = set()
    try:
        for backend, inlet in converters:
            if not isinstance(backend, InfyPowerConverter):
                continue
            p = backend.params
            bus = (p.can_interface, p.can_channel)
            if p.can_interface not in SIMULATED_INTERFACES:
                log.warning(
                    "InfyPower backend on %s:%s: no module emulator on a real interface",
                    *bus,
                )
                continue
            if bus in buses:
                raise ConfigError(
                    f"module emulator: two InfyPower backends share {bus[0]}:{bus[1]}; give "
                    "each pistol its own infypower.can_channel"
                )
            buses.add(bus)
            emulator = ModuleEmulator(emulator_params_for(p, overrides), inlet)
            runner = ModuleEmulatorRunner(emulator, p.can_interface, p.can_channel)
            runners.append(runner.start())
            log.info(
                "module emulator: %d InfyPower module(s) on %s:%s",
                emulator.params.modules,
                *bus,
            )
    except BaseException:
        for r in runners:
            r.close()
        raise
    return runners
