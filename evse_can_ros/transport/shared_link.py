"""One bus, one link: every pistol a process serves on a CAN bus shares one :class:`CanLink`.

A depot runs several pistols on one controller bus; the pistol index is bits 28..24 of the
identifier. :class:`SharedLink` opens the bus once, with one receive thread that hands each
frame to the consumer of its pistol index (error frames go to every pistol), and one
:class:`~evse_can_ros.transport.scheduler.TxScheduler` thread that runs every pistol's transmit
work at the deadline that pistol asks for. Its receive filters are the pistols attached
(one ``pistol_filter`` each): on SocketCAN the kernel drops the frames of pistols served
elsewhere, so they never wake the process.

:meth:`SharedLink.attach` returns a :class:`PistolLink`, which has the methods of a
:class:`CanLink` that a bridge uses (open, start, close, send, describe, up, last_error, stats),
plus :meth:`PistolLink.schedule`. The bus opens with the first pistol's :meth:`PistolLink.open`
and closes with the last pistol's :meth:`PistolLink.close`. :class:`LinkPool` keeps the shared
links of a process, one per bus (interface and channel).

The consumer runs on the receive thread, one frame at a time for all the pistols of the bus: it
must return QUICKLY (decode, publish, hand safety events on). A consumer's exception is counted
in its pistol's ``handler_errors`` and never reaches another pistol.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace

from evse_can_ros.protocol import CanFrame, check_pistol_index, pistol_filter
from evse_can_ros.protocol.ids import PISTOL_SHIFT
from evse_can_ros.transport.can_link import (
    BusFactory,
    CanLink,
    LinkConfig,
    LinkConfigError,
    LinkStats,
)
from evse_can_ros.transport.scheduler import Scheduled, Tick, TxScheduler

log = logging.getLogger(__name__)

FrameHandler = Callable[[CanFrame, float], None]
LinkHandler = Callable[[bool, str], None]


class PistolLink:
    """One pistol's view of a :class:`SharedLink` (see module docstring)."""

    def __init__(
        self, shared: SharedLink, pistol: int, on_frame: FrameHandler, on_link: LinkHandler
    ) -> None:
        self.shared = shared
        self.pistol = pistol
        self.on_frame = on_frame
        self.on_link = on_link
        self._stats = LinkStats()  # rx/tx of this pistol; bus-wide counters come from the link

    @property
    def config(self) -> LinkConfig:
        """The bus configuration."""
        return self.shared.config

    @property
    def up(self) -> bool:
        """True while the bus is open and not bus-off."""
        return self.shared.link.up

    @property
    def last_error(self) -> str:
        """Why the bus went down last."""
        return self.shared.link.last_error

    @property
    def stats(self) -> LinkStats:
        """Frames and handler errors of this pistol; failures and reconnects of the bus."""
        bus = self.shared.link.stats
        return replace(
            self._stats,
            rx_failures=bus.rx_failures,
            bus_off_events=bus.bus_off_events,
            reconnects=bus.reconnects,
        )

    def describe(self) -> str:
        """Return ``interface:channel`` for logs."""
        return self.shared.link.describe()

    def open(self) -> None:
        """Serve this pistol; opens the bus for the first one (LinkConfigError if it cannot)."""
        self.shared._open_port(self)

    def start(self) -> None:
        """Start the bus's receive thread (once for all pistols)."""
        self.shared.link.start()

    def close(self) -> None:
        """Stop serving this pistol; the last one closes the bus (idempotent)."""
        self.shared._close_port(self)

    def send(self, frame: CanFrame) -> bool:
        """Send one frame on the shared bus (thread-safe); False if it could not be sent."""
        ok = self.shared.link.send(frame)
        if ok:
            self._stats.tx_frames += 1
        else:
            self._stats.tx_failures += 1
        return ok

    def schedule(self, tick: Tick, name: str = "") -> Scheduled:
        """Run ``tick(now) -> next deadline`` on the bus's one transmit thread."""
        return self.shared.scheduler.add(tick, name or f"pistol {self.pistol}")

    def _deliver(self, frame: CanFrame, now: float) -> None:
        self._stats.rx_frames += 1
        try:
            self.on_frame(frame, now)
        except Exception:  # one pistol's bug must not cost another pistol its frames
            self._stats.handler_errors += 1
            log.exception("frame handler of pistol %d failed for %s", self.pistol, frame)


class SharedLink:
    """One bus for several pistols (see module docstring)."""

    def __init__(
        self,
        config: LinkConfig,
        *,
        bus_factory: BusFactory | None = None,
        receive_timeout: float = 0.05,
    ) -> None:
        self.config = config
        self.link = CanLink(
            config,
            self._dispatch,
            self._link_changed,
            bus_factory=bus_factory,
            receive_timeout=receive_timeout,
        )
        self.unrouted = 0  # frames of no pistol served here (interfaces filtering in software)
        self._lock = threading.Lock()
        self._routes: dict[int, PistolLink] = {}  # replaced, never mutated: read without lock
        self._scheduler: TxScheduler | None = None

    @property
    def pistols(self) -> tuple[int, ...]:
        """The pistol indices served, in ascending order."""
        return tuple(sorted(self._routes))

    @property
    def scheduler(self) -> TxScheduler:
        """The bus's transmit thread (created on first use)."""
        with self._lock:
            if self._scheduler is None:
                self._scheduler = TxScheduler(f"can-tx {self.link.describe()}")
            return self._scheduler

    def attach(self, pistol: int, on_frame: FrameHandler, on_link: LinkHandler) -> PistolLink:
        """Return the link of ``pistol`` (frames flow after its :meth:`PistolLink.open`)."""
        check_pistol_index(pistol)
        return PistolLink(self, pistol, on_frame, on_link)

    def close(self) -> None:
        """Close the bus and the transmit thread whatever is still attached (idempotent)."""
        with self._lock:
            self._routes = {}
            scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            scheduler.close()
        self.link.close()

    # --- ports ------------------------------------------------------------------------------

    def _open_port(self, port: PistolLink) -> None:
        with self._lock:
            other = self._routes.get(port.pistol)
            if other is port:
                return
            if other is not None:
                raise LinkConfigError(
                    f"pistol {port.pistol} is already served on {self.link.describe()} "
                    "in this process"
                )
            first = not self._routes
            routes = {**self._routes, port.pistol: port}
            self.link.set_filters([pistol_filter(p) for p in sorted(routes)])
            self._routes = routes
        if first:
            try:
                self.link.open()
            except LinkConfigError:
                with self._lock:
                    self._routes = {}
                raise
        elif self.link.up:
            port.on_link(True, f"{self.link.describe()} up")

    def _close_port(self, port: PistolLink) -> None:
        with self._lock:
            if self._routes.get(port.pistol) is not port:
                return
            routes = {p: r for p, r in self._routes.items() if p != port.pistol}
            self._routes = routes
            if routes:
                self.link.set_filters([pistol_filter(p) for p in sorted(routes)])
                return
        self.close()

    # --- receive thread ---------------------------------------------------------------------

    def _dispatch(self, frame: CanFrame, now: float) -> None:
        routes = self._routes
        if frame.is_error_frame:  # bus-wide: every pistol counts it
            for port in routes.values():
                port._deliver(frame, now)
            return
        target = routes.get(frame.arbitration_id >> PISTOL_SHIFT) if frame.is_extended_id else None
        if target is None:
            self.unrouted += 1
            return
        target._deliver(frame, now)

    def _link_changed(self, up: bool, reason: str) -> None:
        for port in self._routes.values():
            try:
                port.on_link(up, reason)
            except Exception:
                log.exception("link handler of pistol %d failed", port.pistol)


class LinkPool:
    """The shared links of a process, one per bus (``interface:channel``)."""

    def __init__(self, *, bus_factory: BusFactory | None = None) -> None:
        self._bus_factory = bus_factory
        self._lock = threading.Lock()
        self._links: dict[tuple[str, str], SharedLink] = {}

    def attach(
        self, config: LinkConfig, pistol: int, on_frame: FrameHandler, on_link: LinkHandler
    ) -> PistolLink:
        """Return ``pistol``'s link on the bus of ``config`` (LinkConfigError on a conflict)."""
        key = (config.interface, str(config.channel))
        with self._lock:
            shared = self._links.get(key)
            if shared is None:
                shared = SharedLink(config, bus_factory=self._bus_factory)
                self._links[key] = shared
            elif shared.config != config:
                raise LinkConfigError(
                    f"bus {key[0]}:{key[1]} configured differently for pistol {pistol} "
                    f"({config}) than for pistols {list(shared.pistols)} ({shared.config})"
                )
        return shared.attach(pistol, on_frame, on_link)

    @property
    def links(self) -> list[SharedLink]:
        """The shared links, one per bus."""
        return list(self._links.values())

    def close(self) -> None:
        """Close every bus (idempotent)."""
        with self._lock:
            links, self._links = list(self._links.values()), {}
        for shared in links:
            shared.close()
