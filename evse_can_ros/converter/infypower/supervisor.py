"""The decisions of the InfyPower backend as a pure, clock-driven object (no bus, no threads).

:class:`ModuleSupervisor` takes the frames the modules send (:meth:`~ModuleSupervisor.on_frame`)
and the caller's clock (``now``) and returns the frames to send. The backend
(:mod:`.backend`) only moves frames between it and the bus; tests drive it with frame
transcripts. What it decides (digest sections in brackets):

* **Discovery** (§4.3). Fixed addressing: the configured addresses. Group addressing: a
  module-count read (device 0x0B) to the group every poll round; the group master's count
  ``n`` adds the addresses ``0 .. n-1``. Replies from other sources are ignored (§1.5).
* **Start-up** (§7.3): every known module is commanded off before anything is switched on.
* **Polling = keep-alive** (§4.1, §4.2): every poll round reads status (0x04), V/I (0x03) and
  the after-diode V (0x0C) of every module, the rating (0x0A) and barcode (0x0B) until known.
  Reads are paced ``frame_spacing`` apart. Each module is addressed individually at least once
  per poll period, whichever frames re-arm its 10 s cut-off (unknown, §9).
* **Liveness** (§4.1): a module is *online* while it answers status reads. One that leaves them
  unanswered for ``reply_timeout`` becomes *stale*: it is commanded off (it may still hear us)
  and no longer switched on, but it still counts in the current split, so the others do not
  take its share yet. After ``offline_timeout`` (> the 10 s cut-off + ``reply_timeout``) it is
  surely off, by our command or its own cut-off: it is taken out and the current re-split (the
  others increase). A module that answers again rejoins; the others decrease first.
* **Sharing** (§4.4): one voltage for all, the total current split equally (or in proportion to
  the ratings), one 0x1C per module, never to a group or broadcast address. The total is at
  least ``min_current`` (pitfall 9); no module gets more than its own rating (pitfall 20).
  Decreases are sent at once, raises at most every ``setpoint_period``, and everything is
  re-sent every poll period while the output is on.
* **Faults** (§3): status bits through :data:`~.protocol.STATUS_BITS`. An error switches every
  module off at once and is reported in the measurement; on-commands are refused while it lasts.
  Also errors: a rejected setpoint (error code in a reply), an off command not confirmed by a
  status (B6.0) *and* a current reading within ``off_confirm_timeout``, and fewer than
  ``min_modules`` online while awake after having been ready (capacity gone). Warnings are
  logged once.
* **Measurement**: voltage = the highest after-diode voltage of the online modules (the
  conservative reading), current = the sum of their 0x03 currents, temperatures = the highest /
  lowest module temperature (B4). No online module while a status read has been unanswered for
  ``reply_timeout``: :class:`ModuleCommunicationError`. An impossible module reading:
  :class:`ModuleReadingError`. Before any module has ever answered (start-up, at most
  ``reply_timeout``): zeros with ``ready = False``.
"""

from __future__ import annotations

import collections
import enum
import logging
import math
from dataclasses import dataclass, field

from evse_can_ros.converter.infypower.params import InfyPowerParams
from evse_can_ros.converter.infypower.protocol import (
    Command,
    ErrorCode,
    InfyId,
    InfyPowerProtocolError,
    ModuleFault,
    ModuleRating,
    ModuleStatus,
    Severity,
    decode_after_diode,
    decode_barcode,
    decode_capabilities,
    decode_module_count,
    decode_status,
    decode_vi,
    error_label,
    faults_of,
    module_count_request,
    on_off_request,
    read_request,
    set_vi_request,
)
from evse_can_ros.core.power_stage import (
    NO_CAPABILITIES,
    OFF,
    Capabilities,
    Measurement,
    Mode,
    Setpoint,
)
from evse_can_ros.protocol.frame import CanFrame

log = logging.getLogger(__name__)

OFF_CURRENT = 1.0
"""A: a module's current at or below this (after an off command) confirms "off"."""
READING_MARGIN = 0.10
"""Relative margin above a module's rating before a reading counts as impossible."""
READING_NOISE_V = 10.0
READING_NOISE_A = 5.0


class ModuleCommunicationError(RuntimeError):
    """No module answers: no measurement can be made (the output must go off)."""


class ModuleReadingError(ValueError):
    """A module reported a value it cannot have (NaN, beyond its rating)."""


class Link(enum.Enum):
    """What we know about a module's communication."""

    UNKNOWN = "unknown"  # never answered
    ONLINE = "online"  # answers status reads
    STALE = "stale"  # status reads unanswered for reply_timeout: commanded off, still counted
    OFFLINE = "offline"  # unanswered for offline_timeout: taken out of the split


@dataclass
class Module:
    """Bookkeeping of one module (all times on the caller's clock)."""

    address: int
    link: Link = Link.UNKNOWN
    rating: ModuleRating | None = None
    barcode: str = ""
    status: ModuleStatus | None = None
    status_time: float = -math.inf
    starting: bool = False  # last status reply carried error 7 ("in start processing")
    vi: tuple[float, float] | None = None
    vi_time: float = -math.inf
    external: tuple[float, float] | None = None  # after-diode V, available A
    unanswered_since: float | None = None  # first unanswered status read
    commanded_on: bool = False
    commanded_vi: tuple[int, int] | None = None  # mV, mA last sent
    off_since: float | None = None  # first off command since it was last wanted on
    off_sent_at: float = -math.inf
    rejected: str = ""  # a setpoint reply with an error code
    warnings: set[str] = field(default_factory=set)

    @property
    def usable(self) -> bool:
        """Online, rated, status known, not starting: may be switched on."""
        return (
            self.link is Link.ONLINE
            and self.rating is not None
            and self.status is not None
            and not self.starting
        )

    @property
    def counted(self) -> bool:
        """In the current split and the capabilities (online or stale, rated)."""
        return self.rating is not None and (
            self.link is Link.STALE or (self.link is Link.ONLINE and not self.starting)
        )

    def confirmed_off(self) -> bool:
        """Return True if a status (B6.0) and a current reading since the off command show off."""
        since = self.off_since
        return (
            since is not None
            and self.status is not None
            and self.status_time > since
            and self.status.dc_off
            and self.vi is not None
            and self.vi_time > since
            and abs(self.vi[1]) <= OFF_CURRENT
        )


class ModuleSupervisor:
    """See module docstring."""

    def __init__(self, params: InfyPowerParams) -> None:
        self.params = params
        self.controller = params.controller_address
        self.modules: dict[int, Module] = {a: Module(a) for a in params.addresses()}
        self.group_count: int | None = None  # last module count reported by the group
        self.now: float | None = None
        self.awake = False
        self.desired: Setpoint = OFF
        self.errors: list[str] = []  # present errors (the output is held off)
        self.events: list[tuple[float, str]] = []  # for logs and tests
        self.foreign_frames = 0
        self._count_unanswered_since: float | None = None
        self._ready_since_wake = False
        self._queue: collections.deque[CanFrame] = collections.deque()
        self._next_round = -math.inf
        self._next_paced = -math.inf
        self._last_raise = -math.inf
        self._last_refresh = -math.inf
        self._resplit = False
        self._known_errors: set[str] = set()

    # --- inputs --------------------------------------------------------------------------------

    def on_frame(self, frame: CanFrame, now: float) -> None:
        """Take one received frame (anything on the bus; what is not for us is ignored)."""
        if not frame.is_extended_id or frame.is_remote_frame or frame.is_error_frame:
            return
        ident = InfyId.decode(frame.arbitration_id)
        if ident.destination != self.controller or len(frame.data) != 8:
            return  # not for us (also the modules' internal 0x17 traffic to 0xF8), or short
        try:
            command = Command(ident.command)
        except ValueError:
            return
        if command is Command.READ_MODULE_COUNT:
            self._on_count(ident, frame.data, now)
            return
        module = self.modules.get(ident.source)
        if module is None:
            self.foreign_frames += 1  # unconfigured source on a shared bus (§1.5)
            return
        try:
            self._on_reply(module, command, ident.error, frame.data, now)
        except InfyPowerProtocolError as exc:  # cannot happen with 8 bytes; defensive
            log.warning("module %d: undecodable %s reply: %s", module.address, command.name, exc)

    def wake(self) -> None:
        """Start a session: the modules may be switched on once ready."""
        self.awake = True
        self._ready_since_wake = False
        for m in self.modules.values():
            m.rejected = ""

    def sleep(self) -> None:
        """End the session: output off, no capacity check."""
        self.awake = False
        self._ready_since_wake = False
        for m in self.modules.values():
            m.rejected = ""

    def command(self, setpoint: Setpoint, now: float) -> list[CanFrame]:
        """Take a clamped setpoint (REGULATE; DISCHARGE and OFF switch the modules off).

        The modules have no active discharge: DISCHARGE leaves the output to the charger's
        passive bleed.
        """
        if setpoint.mode is not Mode.REGULATE:
            setpoint = OFF
        if setpoint != self.desired:
            self.desired = setpoint
        return self.step(now)

    def stop(self) -> list[CanFrame]:
        """Output off now: off commands to every module that may be on (any thread, via lock).

        Uses the last ``now`` (the emergency path has no clock); repeated calls send nothing
        new until :meth:`step` decides a repeat is due.
        """
        self.desired = OFF
        now = self.now if self.now is not None else 0.0
        out: list[CanFrame] = []
        for m in self.modules.values():
            if m.commanded_on or m.off_since is None:
                out += self._off(m, now)
        return out

    # --- the step ------------------------------------------------------------------------------

    def step(self, now: float) -> list[CanFrame]:
        """Advance to ``now``: liveness, faults, off/on commands, setpoints, paced reads."""
        if self.now is not None and now < self.now:
            now = self.now  # never run the clock backwards
        self.now = now
        out: list[CanFrame] = []
        self._update_links(now, out)
        self._update_errors(now)
        self._switch(now, out)
        self._poll(now, out)
        return out

    # --- read-outs -----------------------------------------------------------------------------

    @property
    def expected(self) -> int:
        """Number of modules expected (configured, or reported by the group)."""
        return len(self.modules)

    def online(self) -> list[Module]:
        """Modules answering status reads, by address."""
        return [m for m in self._sorted() if m.link is Link.ONLINE]

    def usable(self) -> list[Module]:
        """Modules that may be switched on now, by address."""
        return [m for m in self._sorted() if m.usable]

    @property
    def ready(self) -> bool:
        """Awake, no error, ``min_modules`` usable and no module still joining.

        Joining: answering but not rated yet, or expected and not yet asked for
        ``reply_timeout`` (start-up), so a session starts with the capabilities of every module
        that is there, not of the first one to answer.
        """
        return (
            self.awake
            and not self.errors
            and len(self.usable()) >= self.params.min_modules
            and not self.joining()
        )

    def joining(self) -> list[Module]:
        """Modules that may become usable soon (see :attr:`ready`)."""
        now = self.now if self.now is not None else 0.0
        out = []
        for m in self._sorted():
            if (m.link is Link.ONLINE and m.rating is None) or (
                m.link is Link.UNKNOWN
                and (
                    m.unanswered_since is None
                    or now - m.unanswered_since < self.params.reply_timeout
                )
            ):
                out.append(m)
        return out

    def capabilities(self) -> Capabilities:
        """Aggregate of the counted modules under the sharing policy (§4.5)."""
        mods = [m for m in self._sorted() if m.counted]
        if not mods:
            return NO_CAPABILITIES
        ratings = [m.rating for m in mods if m.rating is not None]
        weights = self._weights(ratings)
        v_min = max(r.min_voltage for r in ratings)
        v_max = min(r.max_voltage for r in ratings)
        if v_min >= v_max:
            return NO_CAPABILITIES  # no common voltage window: nothing can be regulated
        i_max = min(r.max_current / w for r, w in zip(ratings, weights, strict=True))
        p_max = min(r.rated_power / w for r, w in zip(ratings, weights, strict=True))
        return Capabilities(v_min, v_max, i_max, p_max)

    def measurement(self, now: float) -> Measurement:
        """Measurement from the online modules (see module docstring for the rules)."""
        insulation = math.inf if self.params.insulation_monitor == "external_pass_fail" else 0.0
        online = [m for m in self.online() if m.status is not None]
        if not online:
            silent = self._silence(now)
            if silent >= self.params.reply_timeout:
                raise ModuleCommunicationError(
                    f"no InfyPower module answers ({self.expected} expected; status reads "
                    f"unanswered for {silent:.1f} s)"
                )
            return Measurement(0.0, 0.0, 0.0, 0.0, insulation, False, False, self.fault_text())
        voltages, current = [], 0.0
        for m in online:
            self._check_readings(m)
            if m.external is not None:
                voltages.append(m.external[0])
            elif m.vi is not None:
                voltages.append(m.vi[0])
            if m.vi is not None:
                current += m.vi[1]
        temps = [float(m.status.temperature) for m in online if m.status is not None]
        return Measurement(
            voltage=max(voltages) if voltages else 0.0,
            current=current,
            module_temperature=max(temps),
            enclosure_temperature=min(temps),
            insulation_resistance_ohm=insulation,
            output_enabled=any(m.status is not None and not m.status.dc_off for m in online),
            ready=self.ready,
            fault=self.fault_text(),
        )

    def fault_text(self) -> str:
        """Return the present errors as one line ("" = none)."""
        if len(self.errors) <= 3:
            return "; ".join(self.errors)
        return "; ".join(self.errors[:3]) + f" (+{len(self.errors) - 3} more)"

    def module_targets(self) -> dict[int, tuple[int, int]]:
        """Per usable module (mV, mA) for the desired setpoint ({} = everything off)."""
        sp = self.desired
        if sp.mode is not Mode.REGULATE or self.errors or not self.awake:
            return {}
        counted = [m for m in self._sorted() if m.counted]
        targets = {m.address for m in counted if m.usable}
        if len(targets) < self.params.min_modules:
            return {}
        caps = self.capabilities()
        voltage = min(max(sp.voltage, caps.min_voltage), caps.max_voltage)
        if voltage <= 0 or sp.voltage < caps.min_voltage:
            return {}
        total = min(max(sp.current_limit, self.params.min_current), caps.current_limit_at(voltage))
        ratings = [m.rating for m in counted if m.rating is not None]
        out: dict[int, tuple[int, int]] = {}
        for m, w in zip(counted, self._weights(ratings), strict=True):
            if m.address in targets and m.rating is not None:
                share = min(total * w, m.rating.max_current)
                out[m.address] = (_milli(voltage), _milli(share))
        return out

    # --- receive -------------------------------------------------------------------------------

    def _on_count(self, ident: InfyId, data: bytes, now: float) -> None:
        if self.params.addressing != "group" or ident.error != ErrorCode.NORMAL:
            return
        self._count_unanswered_since = None
        count = decode_module_count(data)
        if count != self.group_count:
            self._event(now, f"group {self.params.group_address} reports {count} module(s)")
            expected = self.params.module_count
            if expected and count != expected:
                log.warning("InfyPower group reports %d modules, %d expected", count, expected)
        self.group_count = count
        for address in range(min(count, 63)):
            if address not in self.modules:
                self.modules[address] = Module(address)

    def _on_reply(self, m: Module, command: Command, error: int, data: bytes, now: float) -> None:
        if command in (Command.SET_ON_OFF, Command.SET_VI):
            if error != ErrorCode.NORMAL:  # acknowledgements are not expected (§9)
                text = f"module {m.address}: {command.name} rejected ({error_label(error)})"
                if m.rejected != text:
                    m.rejected = text
                    self._event(now, text)
            return
        if command is Command.READ_STATUS:
            if error not in (ErrorCode.NORMAL, ErrorCode.STARTING):
                self._warn(m, f"status read refused ({error_label(error)})")
                return
            m.starting = error == ErrorCode.STARTING
            m.status = decode_status(data)
            m.status_time = now
            m.unanswered_since = None
            if m.link is not Link.ONLINE:
                was = m.link
                m.link = Link.ONLINE
                if m.off_since is not None:
                    m.off_since = now  # it hears us again: the off confirmation starts now
                    for c in (Command.READ_STATUS, Command.READ_VI):
                        self._priority_read(c, m)
                self._event(now, f"module {m.address} online (was {was.value})")
                if was is Link.OFFLINE:
                    self._resplit = True
            return
        if error != ErrorCode.NORMAL:
            self._warn(m, f"{command.name} refused ({error_label(error)})")
            return
        if command is Command.READ_VI:
            m.vi = decode_vi(data)
            m.vi_time = now
        elif command is Command.READ_VI_AFTER_DIODE:
            m.external = decode_after_diode(data)
        elif command is Command.READ_CAPABILITIES:
            rating = decode_capabilities(data)
            if 0 < rating.min_voltage < rating.max_voltage and rating.max_current > 0:
                if m.rating != rating:
                    self._event(now, f"module {m.address} rating {_rating_text(rating)}")
                    self._resplit = True
                m.rating = rating
            else:
                self._warn(m, f"implausible rating {_rating_text(rating)} ignored")
        elif command is Command.READ_BARCODE:
            m.barcode = decode_barcode(data)

    # --- liveness ------------------------------------------------------------------------------

    def _update_links(self, now: float, out: list[CanFrame]) -> None:
        p = self.params
        for m in self._sorted():
            if m.unanswered_since is None:
                continue
            silent = now - m.unanswered_since
            if m.link is Link.ONLINE and silent >= p.reply_timeout:
                m.link = Link.STALE
                self._event(
                    now,
                    f"module {m.address} silent for {silent:.1f} s: commanded off, its share "
                    "kept until it is surely off",
                )
                out += self._off(m, now)
            elif m.link is Link.STALE and silent >= p.offline_timeout:
                m.link = Link.OFFLINE
                self._resplit = True
                self._event(
                    now, f"module {m.address} offline after {silent:.1f} s: current re-split"
                )

    def _silence(self, now: float) -> float:
        """Longest time a status read (or the group count) has been unanswered."""
        times = [
            m.unanswered_since for m in self.modules.values() if m.unanswered_since is not None
        ]
        if self._count_unanswered_since is not None and not self.modules:
            times.append(self._count_unanswered_since)
        return now - min(times) if times else 0.0

    # --- faults --------------------------------------------------------------------------------

    def _update_errors(self, now: float) -> None:
        p = self.params
        errors: list[str] = []
        wanted = self.desired.mode is Mode.REGULATE
        for m in self._sorted():
            if m.rejected:
                errors.append(m.rejected)
            if m.link is not Link.ONLINE or m.status is None:
                continue
            for fault in faults_of(m.address, m.status, wanted or m.commanded_on):
                if fault.severity is Severity.ERROR:
                    errors.append(str(fault))
                else:
                    self._warn(m, str(fault), fault)
            if (
                m.off_since is not None
                and now - m.off_since >= p.off_confirm_timeout
                and not m.confirmed_off()
            ):
                errors.append(
                    f"module {m.address}: output not confirmed off within "
                    f"{p.off_confirm_timeout:g} s of the off command [HARDWARE_FAULT]"
                )
        usable = len(self.usable())
        if self.awake and usable >= p.min_modules and not errors:
            self._ready_since_wake = True
        if self.awake and self._ready_since_wake and usable < p.min_modules:
            errors.append(
                f"only {usable} of {self.expected} InfyPower modules online "
                f"(min_modules {p.min_modules}) [COMMUNICATION_LOSS]"
            )
        for text in errors:
            if text not in self._known_errors:
                self._event(now, f"error: {text}: every module off")
        self._known_errors = set(errors)
        self.errors = errors

    def _warn(self, m: Module, text: str, fault: ModuleFault | None = None) -> None:
        if text not in m.warnings:
            m.warnings.add(text)
            log.warning("InfyPower %s", text if fault else f"module {m.address}: {text}")

    # --- output --------------------------------------------------------------------------------

    def _switch(self, now: float, out: list[CanFrame]) -> None:
        """Off where the output must be off, setpoints and on where it must be on."""
        p = self.params
        targets = self.module_targets()
        for m in self._sorted():
            if m.address in targets:
                continue
            if m.commanded_on or m.off_since is None:
                out += self._off(m, now)
            elif now - m.off_sent_at >= p.poll_period and not m.confirmed_off():
                out += self._off(m, now)  # repeat until confirmed (or for silent modules)
        if not targets:
            return
        due_raise = now - self._last_raise >= p.setpoint_period
        refresh = now - self._last_refresh >= p.poll_period
        lower: list[CanFrame] = []
        higher: list[CanFrame] = []
        switch_on: list[CanFrame] = []
        for address, (mv, ma) in sorted(targets.items()):
            m = self.modules[address]
            m.off_since = None
            last = m.commanded_vi
            frame = set_vi_request(address, mv / 1000.0, ma / 1000.0, self.controller)
            if last is None or mv > last[0] or ma > last[1]:
                higher.append(frame)
            elif (mv, ma) != last or refresh:
                lower.append(frame)
            if not m.commanded_on or refresh:
                switch_on.append(on_off_request(address, True, self.controller))
        raising = bool(higher) or any(not self.modules[a].commanded_on for a in targets)
        if raising and not (due_raise or refresh or self._resplit):
            higher, switch_on = [], []  # lowers now, raises at the next due step
        out += lower + higher + switch_on
        sent = {InfyId.decode(f.arbitration_id).destination for f in lower + higher}
        for address in sent:
            self.modules[address].commanded_vi = targets[address]
        for f in switch_on:
            self.modules[InfyId.decode(f.arbitration_id).destination].commanded_on = True
        if higher or switch_on:
            self._last_raise = now
            self._resplit = False
        if refresh and (higher or lower or switch_on):
            self._last_refresh = now

    def _off(self, m: Module, now: float) -> list[CanFrame]:
        if m.off_since is None:
            m.off_since = now
        m.commanded_on = False
        m.commanded_vi = None
        m.off_sent_at = now
        if m.link is Link.ONLINE:  # confirm by status and current as soon as possible
            for command in (Command.READ_STATUS, Command.READ_VI):
                self._priority_read(command, m)
        return [on_off_request(m.address, False, self.controller)]

    # --- polling -------------------------------------------------------------------------------

    def _poll(self, now: float, out: list[CanFrame]) -> None:
        p = self.params
        if now >= self._next_round and not self._queue:
            self._next_round = now + p.poll_period
            if p.addressing == "group":
                self._queue.append(module_count_request(p.group_address, self.controller))
            for m in self._sorted():
                reads = [Command.READ_STATUS]
                if m.link is Link.ONLINE:
                    reads += [Command.READ_VI, Command.READ_VI_AFTER_DIODE]
                    if m.rating is None:
                        reads.append(Command.READ_CAPABILITIES)
                    if not m.barcode:
                        reads.append(Command.READ_BARCODE)
                self._queue.extend(read_request(c, m.address, self.controller) for c in reads)
        while self._queue and now >= self._next_paced:
            frame = self._queue.popleft()
            out.append(frame)
            self._note_request(frame, now)
            self._next_paced = now + p.frame_spacing
            if p.frame_spacing > 0:
                break

    def _priority_read(self, command: Command, m: Module) -> None:
        frame = read_request(command, m.address, self.controller)
        if frame not in self._queue:
            self._queue.appendleft(frame)

    def _note_request(self, frame: CanFrame, now: float) -> None:
        ident = InfyId.decode(frame.arbitration_id)
        if ident.command == Command.READ_STATUS:
            m = self.modules.get(ident.destination)
            if m is not None and m.unanswered_since is None:
                m.unanswered_since = now
        elif ident.command == Command.READ_MODULE_COUNT and self._count_unanswered_since is None:
            self._count_unanswered_since = now

    # --- helpers -------------------------------------------------------------------------------

    def _sorted(self) -> list[Module]:
        return [self.modules[a] for a in sorted(self.modules)]

    def _weights(self, ratings: list[ModuleRating]) -> list[float]:
        if self.params.current_sharing == "rated":
            total = sum(r.max_current for r in ratings)
            return [r.max_current / total for r in ratings]
        return [1.0 / len(ratings)] * len(ratings)

    def _check_readings(self, m: Module) -> None:
        r = m.rating
        if m.vi is not None:
            v, i = m.vi
            if not (math.isfinite(v) and math.isfinite(i)):
                raise ModuleReadingError(f"module {m.address} reports V/I {v!r} V, {i!r} A")
            if r is not None and (
                abs(v) > r.max_voltage * (1 + READING_MARGIN) + READING_NOISE_V
                or abs(i) > r.max_current * (1 + READING_MARGIN) + READING_NOISE_A
            ):
                raise ModuleReadingError(
                    f"module {m.address} reports {v:.1f} V, {i:.1f} A: beyond its rating "
                    f"{_rating_text(r)}"
                )
        if (
            m.external is not None
            and r is not None
            and m.external[0] > r.max_voltage * (1 + READING_MARGIN) + READING_NOISE_V
        ):
            raise ModuleReadingError(
                f"module {m.address} reports {m.external[0]:.1f} V after its diode: beyond "
                f"its rating {_rating_text(r)}"
            )

    def _event(self, now: float, text: str) -> None:
        self.events.append((now, text))
        if text.startswith("error"):
            log.error("InfyPower %s", text)
        else:
            log.info("InfyPower %s", text)


def _milli(value: float) -> int:
    return max(0, math.floor(value * 1000.0 + 1e-6))


def _rating_text(r: ModuleRating) -> str:
    return (
        f"{r.min_voltage:g}-{r.max_voltage:g} V, {r.max_current:g} A, {r.rated_power / 1000:g} kW"
    )
