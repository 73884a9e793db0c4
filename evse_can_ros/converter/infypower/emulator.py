"""An emulator of N InfyPower modules on one bus: pure (frames and ``now`` in, frames out).

It reproduces what the digest asks of a module emulator (§7.2) and is the plant of the
InfyPower backend's tests, of ``evse-can-ros simulate-modules`` and of
``evse-can-ros sim --converter-backend infypower``:

* **Addressing**: requests with device 0x0A to its address, device 0x0B to its group (every
  module of the group applies a group setpoint in full: the hazard of pitfall 1), broadcast 0x3F
  (and address 0 with ``address_zero_is_broadcast``). Replies: source and destination swapped,
  same command, DLC 8, the request's device number (``echo_device``; unknown, §9).
* **Group master**: the lowest address that can answer replies to 0x02 with the group size;
  addresses are ``first_address .. first_address + modules - 1``.
* **Reads** 0x03, 0x04, 0x0A, 0x0B, 0x0C with the layouts of §2.2; a read shorter than 8 bytes
  is answered with error code ``short_read_error``; an unknown command with error 2.
* **Setpoints**: 0x1A on/off (reflected in B6.0), 0x1C for this module only; invalid data (a
  voltage above the rating, an on/off byte other than 0/1) is answered with error 3; valid ones
  are acknowledged only with ``ack_setpoints`` (unknown, §9).
* **Cut-off**: ``cutoff`` (10 s) without a controller frame (``cutoff_rearm``: frames addressed
  to the module, or any controller frame) switches the output off and sets B6.7, cleared when
  a frame is heard again.
* **Output model**: the modules in parallel on one output with the charger's passive bleed and
  the cable capacitance, or a battery (``OCV(SoC) + I R``) when the vehicle's contactors are
  closed (a shared :class:`~evse_can_ros.core.battery.VehicleInlet`). The highest voltage
  setpoint of the modules that are on is followed at ``voltage_slope``; the current is limited
  by the sum of their current limits (each capped by its rating and power) and shared in
  proportion to those limits; it rises at ``current_slope`` and falls at once. Temperatures
  follow the losses (first order). The emulator integrates the battery only when it owns it
  (``battery``); with a shared inlet the vehicle model does (energy counted once).
* **Faults** (per module, :meth:`ModuleEmulator.inject`, or scheduled by the parameters):
  ``drop_out`` (deaf and mute: its own cut-off switches it off), ``no_reply`` (hears, obeys,
  never answers), ``over_temperature`` (B6.4, output off), ``ac_input_fault`` (B5.5 input
  under-voltage + B5.7 PFC off, output off), ``hardware_fault`` (B6.1, output off),
  ``nan_reading`` (0x03 reports NaN), ``starting`` (reads answered with error 7);
  :meth:`ModuleEmulator.silence` mutes the whole bus; ``internal_noise`` emits the modules'
  internal 0x17 frames to 0xF8.
* **Timing check**: gaps between the controller's frames are counted (``gaps_below``).
"""

from __future__ import annotations

import collections
import logging
import math
from dataclasses import dataclass, field

from evse_can_ros.config import ConfigError, check, param
from evse_can_ros.converter.infypower.protocol import (
    BROADCAST_ADDRESS,
    CONTROLLER_ADDRESSES,
    INTERNAL_CONTROLLER_ADDRESS,
    MODULE_CUTOFF,
    READ_COMMANDS,
    Command,
    Device,
    ErrorCode,
    InfyId,
    InfyPowerProtocolError,
    ModuleRating,
    ModuleStatus,
    decode_on_off,
    decode_set_vi,
    encode_after_diode,
    encode_barcode,
    encode_capabilities,
    encode_module_count,
    encode_status,
    encode_vi,
    frame,
)
from evse_can_ros.core.battery import Battery, BatteryParams, VehicleInlet
from evse_can_ros.protocol.frame import CanFrame

log = logging.getLogger(__name__)

FAULTS: tuple[str, ...] = (
    "drop_out",
    "no_reply",
    "over_temperature",
    "ac_input_fault",
    "hardware_fault",
    "nan_reading",
    "starting",
)
"""Injectable faults of one module (see module docstring)."""
PROTECTIONS = frozenset({"over_temperature", "ac_input_fault", "hardware_fault"})
"""Faults that switch the module's output off and keep it off."""
CHARGING_CURRENT = 5.0
"""A: "the output delivers current" for ``fault_at = charging``."""
_MAX_SUBSTEP = 0.005


@dataclass(frozen=True)
class EmulatorParams:
    """Parameters of the module emulator (``evse-can-ros simulate-modules --help``)."""

    modules: int = param(4, "number of modules", min=1, max=60)
    first_address: int = param(0, "address of the first module (the others follow)", min=0, max=62)
    group: int = param(0, "group number of every module (dial)", min=0, max=60)
    max_voltage: float = param(
        1000.0, "module maximum output voltage (illustrative rating)", unit="V", min=1, max=6553
    )
    min_voltage: float = param(150.0, "module minimum output voltage", unit="V", min=0, max=6553)
    max_current: float = param(50.0, "module maximum current", unit="A", min=0.1, max=6553)
    rated_power: float = param(30000.0, "module rated power", unit="W", min=10.0, max=655350.0)
    cutoff: float = param(
        MODULE_CUTOFF, "output off after this long without controller frames", unit="s", min=0.1
    )
    cutoff_rearm: str = param(
        "addressed",
        "frames that re-arm the cut-off: addressed (to the module, its group or broadcast) or "
        "any controller frame",
        choices=("addressed", "any"),
    )
    ack_setpoints: bool = param(False, "acknowledge valid 0x1A / 0x1C (error code 0)")
    echo_device: bool = param(True, "replies carry the request's device number (else 0x0A)")
    short_read_error: int = param(
        ErrorCode.COMMAND_INVALID,
        "error code of the reply to a read with fewer than 8 bytes",
        min=1,
        max=7,
    )
    address_zero_is_broadcast: bool = param(False, "address 0 acts as a broadcast address")
    voltage_slope: float = param(
        1000.0, "output voltage slew rate (0 = instantaneous)", unit="V/s", min=0.0, max=1e9
    )
    current_slope: float = param(
        1000.0, "output current rise rate (0 = instantaneous)", unit="A/s", min=0.0, max=1e9
    )
    output_capacitance: float = param(
        1e-4, "output + cable capacitance", unit="F", min=1e-7, max=1.0
    )
    bleed_resistance: float = param(
        2000.0, "the charger's passive output bleed resistor", unit="Ohm", min=1.0, max=1e9
    )
    ambient_temperature: float = param(25.0, "ambient temperature", unit="degC", min=-40, max=80)
    temperature_rise: float = param(
        30.0, "module temperature rise at rated power", unit="K", min=0.0, max=150.0
    )
    thermal_time_constant: float = param(
        60.0, "module thermal time constant", unit="s", min=0.001, max=1e5
    )
    internal_noise: bool = param(False, "emit the modules' internal 0x17 frames to 0xF8")
    battery: bool = param(
        False, "standalone: a battery of its own is connected to the output (else a cable)"
    )
    initial_soc: float = param(20.0, "standalone battery: initial SoC", unit="%", min=0, max=100)
    fault: str = param("none", "scheduled fault of fault_module", choices=("none", *FAULTS))
    fault_module: int = param(-1, "address of the faulty module (-1 = the last one)", min=-1)
    fault_at: str = param(
        "charging",
        "fault_delay counts from: start (of the emulator) or charging (first > 5 A)",
        choices=("start", "charging"),
    )
    fault_delay: float = param(0.0, "delay of the scheduled fault", unit="s", min=0.0)
    fault_duration: float = param(
        0.0, "the scheduled fault clears after this long (0 = never)", unit="s", min=0.0
    )

    def __post_init__(self) -> None:
        check(self)
        name = type(self).__name__
        last = self.first_address + self.modules - 1
        if last > 62:
            raise ConfigError(f"{name}: addresses {self.first_address}..{last} exceed 62")
        if self.min_voltage >= self.max_voltage:
            raise ConfigError(f"{name}: min_voltage must be below max_voltage")
        if self.address_zero_is_broadcast and self.first_address == 0:
            raise ConfigError(f"{name}: address 0 is broadcast: start at first_address 1")
        if self.fault_module >= 0 and not self.first_address <= self.fault_module <= last:
            raise ConfigError(
                f"{name}: fault_module {self.fault_module} is not one of "
                f"{self.first_address}..{last}"
            )

    @property
    def addresses(self) -> range:
        """Addresses of the emulated modules."""
        return range(self.first_address, self.first_address + self.modules)

    @property
    def rating(self) -> ModuleRating:
        """The rating every module reports (0x0A)."""
        return ModuleRating(self.max_voltage, self.min_voltage, self.max_current, self.rated_power)


@dataclass
class EmulatedModule:
    """One emulated module."""

    address: int
    group: int
    rating: ModuleRating
    temperature: float
    on: bool = False
    v_set: float = 0.0
    i_set: float = 0.0
    current: float = 0.0  # its share of the output current
    last_heard: float | None = None
    comm_alarm: bool = False
    faults: set[str] = field(default_factory=set)
    group_setpoints: int = 0  # 0x1C received through a group or broadcast address

    @property
    def deaf(self) -> bool:
        """Hears nothing (drop-out)."""
        return "drop_out" in self.faults

    @property
    def mute(self) -> bool:
        """Answers nothing."""
        return "drop_out" in self.faults or "no_reply" in self.faults

    @property
    def protected(self) -> bool:
        """A protection holds the output off."""
        return bool(self.faults & PROTECTIONS)

    def status(self) -> ModuleStatus:
        """Present 0x04 content."""
        s = ModuleStatus(self.group, round(self.reported_temperature()), 0, 0, 0)
        bits: list[tuple[int, int]] = []
        if not self.on:
            bits.append((6, 0))
        if "hardware_fault" in self.faults:
            bits.append((6, 1))
        if "over_temperature" in self.faults:
            bits.append((6, 4))
        if self.comm_alarm:
            bits.append((6, 7))
        if "ac_input_fault" in self.faults:
            bits += [(5, 5), (5, 7)]
        return s.with_bits(*bits)

    def reported_temperature(self) -> float:
        """Temperature in B4 (over_temperature adds 60 K)."""
        return self.temperature + (60.0 if "over_temperature" in self.faults else 0.0)


class ModuleEmulator:
    """N modules on one bus (see module docstring). ``now`` in seconds, any monotonic clock."""

    def __init__(self, params: EmulatorParams | None = None, inlet: VehicleInlet | None = None):
        self.params = p = params or EmulatorParams()
        self.owns_inlet = inlet is None
        if inlet is None:
            battery = Battery(BatteryParams(initial_soc=p.initial_soc))
            inlet = VehicleInlet(battery, plugged_in=p.battery, contactors_closed=p.battery)
        self.inlet = inlet
        self.modules: dict[int, EmulatedModule] = {
            a: EmulatedModule(a, p.group, p.rating, p.ambient_temperature) for a in p.addresses
        }
        self.voltage = 0.0  # output (cable) voltage
        self.current = 0.0  # total output current
        self.silent = False  # whole-bus silence
        self.record = False  # keep every controller frame in ``received`` (tests)
        self.received: list[tuple[float, CanFrame]] = []
        self.replies = 0
        self.gaps: collections.Counter[str] = collections.Counter()
        self._last_rx: float | None = None
        self._v_ref = 0.0
        self._t: float | None = None
        self._started: float | None = None
        self._charging_since: float | None = None
        self._fault_state = "pending" if p.fault != "none" else "none"
        self._next_noise = 0.0

    # --- bus -----------------------------------------------------------------------------------

    def receive(self, request: CanFrame, now: float) -> list[CanFrame]:
        """Take one frame from the bus at ``now``; return the modules' replies."""
        self._advance(now)
        if not request.is_extended_id or request.is_remote_frame or request.is_error_frame:
            return []
        ident = InfyId.decode(request.arbitration_id)
        if ident.source not in CONTROLLER_ADDRESSES:
            return []  # another module's reply or internal traffic
        self._note_gap(now)
        if self.record:
            self.received.append((now, request))
        if self.params.cutoff_rearm == "any":
            for m in self.modules.values():
                if not m.deaf and not self.silent:
                    self._heard(m, now)
        replies: list[CanFrame] = []
        targets = self._targets(ident)
        if ident.command == Command.READ_MODULE_COUNT and ident.device == Device.GROUP:
            replies += self._count_reply(ident, targets, request, now)
            self.replies += len(replies)
            return replies
        for m in targets:
            if m.deaf or self.silent:
                continue
            self._heard(m, now)
            reply = self._handle(m, ident, request.data, single=ident.device == Device.MODULE)
            if reply is not None and not m.mute:
                replies.append(reply)
        self.replies += len(replies)
        return replies

    def advance(self, now: float) -> list[CanFrame]:
        """Move the plant to ``now``; return unsolicited frames (internal noise)."""
        self._advance(now)
        out: list[CanFrame] = []
        if self.params.internal_noise and not self.silent and now >= self._next_noise:
            self._next_noise = now + 0.1
            for m in self.modules.values():
                ident = InfyId(0x17, INTERNAL_CONTROLLER_ADDRESS, m.address, 0x0D, 1)
                out.append(frame(ident, bytes([0x11, m.address, 0, 0, 0, 0, 0, 0])))
        return out

    # --- fault injection -----------------------------------------------------------------------

    def inject(self, address: int, fault: str, on: bool = True) -> None:
        """Switch ``fault`` (one of :data:`FAULTS`) of module ``address`` on or off."""
        if fault not in FAULTS:
            raise ValueError(f"unknown module fault {fault!r}; known: {', '.join(FAULTS)}")
        m = self.modules.get(address)
        if m is None:
            raise ValueError(f"no emulated module at address {address}")
        if (fault in m.faults) != on:
            log.warning("emulated module %d: %s %s", address, fault, "on" if on else "cleared")
        if on:
            m.faults.add(fault)
            if fault in PROTECTIONS:
                m.on = False
        else:
            m.faults.discard(fault)

    def silence(self, on: bool = True) -> None:
        """Mute (and deafen) every module: the whole bus goes quiet."""
        self.silent = on

    # --- observations --------------------------------------------------------------------------

    def current_limit(self) -> float:
        """Sum of the current limits of the modules that are on (what the output may deliver)."""
        return sum(self._limit(m) for m in self.modules.values() if m.on)

    @property
    def output_on(self) -> bool:
        """True while any module's output is on."""
        return any(m.on for m in self.modules.values())

    # --- request handling ----------------------------------------------------------------------

    def _targets(self, ident: InfyId) -> list[EmulatedModule]:
        mods = [self.modules[a] for a in sorted(self.modules)]
        if ident.device == Device.GROUP:
            return [m for m in mods if m.group == ident.destination]
        if ident.device != Device.MODULE:
            return []
        if ident.destination == BROADCAST_ADDRESS or (
            ident.destination == 0 and self.params.address_zero_is_broadcast
        ):
            return mods
        m = self.modules.get(ident.destination)
        return [m] if m is not None else []

    def _count_reply(
        self, ident: InfyId, group: list[EmulatedModule], request: CanFrame, now: float
    ) -> list[CanFrame]:
        for m in group:
            if not m.deaf and not self.silent:
                self._heard(m, now)
        if len(request.data) != 8:
            return []
        master = next((m for m in group if not m.mute and not self.silent), None)
        if master is None:
            return []
        reply = self._reply_id(ident, master)
        return [frame(reply, encode_module_count(len(group)))]

    def _handle(
        self, m: EmulatedModule, ident: InfyId, data: bytes, single: bool
    ) -> CanFrame | None:
        p = self.params
        reply = self._reply_id(ident, m)
        try:
            command = Command(ident.command)
        except ValueError:
            return self._error(reply, ErrorCode.COMMAND_INVALID) if single else None
        if command in READ_COMMANDS:
            if len(data) != 8:
                return self._error(reply, p.short_read_error) if single else None
            if "starting" in m.faults:
                return self._error(reply, ErrorCode.STARTING)
            return frame(reply, self._read(m, command))
        try:
            if command is Command.SET_ON_OFF:
                on = decode_on_off(data)
                m.on = on and not m.protected
            elif command is Command.SET_VI:
                v, i = decode_set_vi(data)
                if v > m.rating.max_voltage:
                    raise InfyPowerProtocolError(f"{v} V above the rating")
                m.v_set, m.i_set = v, i
                if not single or ident.destination != m.address:
                    m.group_setpoints += 1
        except InfyPowerProtocolError:
            return self._error(reply, ErrorCode.DATA_INVALID)
        return frame(reply, bytes(data)) if p.ack_setpoints else None

    def _read(self, m: EmulatedModule, command: Command) -> bytes:
        if command is Command.READ_VI:
            v = self.voltage if m.on else 0.0
            if "nan_reading" in m.faults:
                v = math.nan
            return encode_vi(v, m.current)
        if command is Command.READ_STATUS:
            return encode_status(m.status())
        if command is Command.READ_CAPABILITIES:
            return encode_capabilities(m.rating)
        if command is Command.READ_BARCODE:
            return encode_barcode("V", bytes([0x13, 0x0C, 0x15, 0xA3, 0xFB, 0x06, m.address]))
        if command is Command.READ_VI_AFTER_DIODE:
            available = 0.0 if m.protected else m.rating.max_current
            return encode_after_diode(max(0.0, min(self.voltage, 6553.5)), available)
        raise InfyPowerProtocolError(f"{command.name} is not a module read")

    def _reply_id(self, ident: InfyId, m: EmulatedModule) -> InfyId:
        device = ident.device if self.params.echo_device else Device.MODULE
        return InfyId(ident.command, ident.source, m.address, device)

    @staticmethod
    def _error(reply: InfyId, code: int) -> CanFrame:
        return frame(InfyId(reply.command, reply.destination, reply.source, reply.device, code))

    def _heard(self, m: EmulatedModule, now: float) -> None:
        m.last_heard = now
        m.comm_alarm = False

    def _note_gap(self, now: float) -> None:
        if self._last_rx is not None:
            gap = now - self._last_rx
            self.gaps["< 50 ms" if gap < 0.05 else "50-200 ms" if gap <= 0.2 else "> 200 ms"] += 1
        self._last_rx = now

    # --- plant ---------------------------------------------------------------------------------

    def _advance(self, now: float) -> None:
        if self._t is None:
            self._t = self._started = now
            for m in self.modules.values():
                m.last_heard = now  # powered up with the emulator
        t = self._t
        while t < now:
            h = min(_MAX_SUBSTEP, now - t)
            t += h
            self._step(h, t)
        self._t = max(self._t, now)

    def _step(self, h: float, t: float) -> None:
        self._cut_off_silent_modules(t)
        self._schedule(t)
        on = [m for m in self.modules.values() if m.on]
        limits = {m.address: self._limit(m) for m in on}
        total_limit = sum(limits.values())
        self._electrical_step(h, on, total_limit)
        self._share_and_heat(h, limits, total_limit)
        if self.current > CHARGING_CURRENT and self._charging_since is None:
            self._charging_since = t
        inlet = self.inlet
        if self.owns_inlet and inlet.battery_connected and self.current > 0:
            inlet.battery.charge(self.current, h)

    def _cut_off_silent_modules(self, t: float) -> None:
        p = self.params
        for m in self.modules.values():
            if m.last_heard is not None and t - m.last_heard > p.cutoff:
                if m.on:
                    log.warning(
                        "emulated module %d: no controller frame for %.1f s: output off (cut-off)",
                        m.address,
                        t - m.last_heard,
                    )
                m.on = False
                m.comm_alarm = True

    def _electrical_step(self, h: float, on: list[EmulatedModule], total_limit: float) -> None:
        p = self.params
        inlet = self.inlet
        c, rb = p.output_capacitance, p.bleed_resistance
        if on and total_limit > 0:
            target = max(m.v_set for m in on)
            if p.voltage_slope == 0:
                self._v_ref = target
            else:
                step = p.voltage_slope * h
                self._v_ref = (
                    min(target, self._v_ref + step)
                    if self._v_ref < target
                    else max(target, self._v_ref - step)
                )
            if inlet.battery_connected:
                battery = inlet.battery
                r = battery.params.internal_resistance
                ocv = battery.ocv()
                want = max(0.0, min(total_limit, (self._v_ref - ocv) / r))
                if want < self.current or p.current_slope == 0:
                    self.current = want
                else:
                    self.current = min(want, self.current + p.current_slope * h)
                self.voltage = ocv + self.current * r
            else:
                need = c * (self._v_ref - self.voltage) / h + self.voltage / rb
                self.current = max(0.0, min(need, total_limit))
                self.voltage = max(0.0, self.voltage + (self.current - self.voltage / rb) * h / c)
        else:
            self.current = 0.0
            if inlet.battery_connected:
                self.voltage = inlet.battery.ocv()
            else:
                self.voltage *= math.exp(-h / (rb * c))
            self._v_ref = self.voltage

    def _share_and_heat(self, h: float, limits: dict[int, float], total_limit: float) -> None:
        p = self.params
        for m in self.modules.values():
            if m.address in limits and total_limit > 0:
                m.current = self.current * limits[m.address] / total_limit
            else:
                m.current = 0.0
            power = max(0.0, self.voltage * m.current)
            target_t = p.ambient_temperature + p.temperature_rise * power / m.rating.rated_power
            m.temperature += (target_t - m.temperature) * (
                1 - math.exp(-h / p.thermal_time_constant)
            )

    def _limit(self, m: EmulatedModule) -> float:
        power_limit = m.rating.rated_power / max(self.voltage, 1.0)
        return max(0.0, min(m.i_set, m.rating.max_current, power_limit))

    def _schedule(self, t: float) -> None:
        p = self.params
        if self._fault_state in ("none", "cleared"):
            return
        origin = self._started if p.fault_at == "start" else self._charging_since
        if origin is None:
            return
        address = p.fault_module if p.fault_module >= 0 else p.addresses[-1]
        start = origin + p.fault_delay
        if self._fault_state == "pending" and t >= start:
            self._fault_state = "active"
            self.inject(address, p.fault, True)
        if (
            self._fault_state == "active"
            and p.fault_duration > 0
            and t >= start + p.fault_duration
        ):
            self._fault_state = "cleared"
            self.inject(address, p.fault, False)
