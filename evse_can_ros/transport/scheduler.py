"""One transmit thread for the periodic work of several pistols, each at its own deadline.

A client registers ``tick(now) -> next deadline`` (monotonic seconds) with :meth:`TxScheduler.add`
and gets a :class:`Scheduled` handle; ``wake()`` runs the tick as soon as possible (a state
change to report, a command to send). The thread sleeps until the earliest deadline, so an idle
pistol costs one wake-up per deadline it asks for, and N pistols cost one thread instead of N.

Contract for ``tick``: return QUICKLY (it delays the other clients' deadlines) and never block on
the executor. An exception is logged and the client is called again after ``error_backoff``
(a client that must reach a safe state on an error guards its own tick).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

Tick = Callable[[float], float]


class Scheduled:
    """A registered tick: :meth:`wake` it now, :meth:`cancel` it (both thread-safe)."""

    def __init__(self, scheduler: TxScheduler, tick: Tick, name: str) -> None:
        self.name = name
        self.tick = tick
        self.deadline = -math.inf  # the first tick runs at once
        self.running = False
        self.woken = False
        self._scheduler = scheduler

    def wake(self) -> None:
        """Run the tick as soon as possible (again, if it is running now)."""
        self._scheduler._wake(self)

    def cancel(self) -> None:
        """Never run the tick again (idempotent); waits for a tick that is running to end."""
        self._scheduler._cancel(self)


class TxScheduler:
    """See module docstring. The thread starts with the first :meth:`add`."""

    def __init__(
        self,
        name: str = "can-tx",
        *,
        clock: Callable[[], float] = time.monotonic,
        error_backoff: float = 0.01,
    ) -> None:
        self.name = name
        self.errors = 0
        self._clock = clock
        self._error_backoff = error_backoff
        self._cond = threading.Condition()
        self._entries: list[Scheduled] = []
        self._closed = False
        self._thread: threading.Thread | None = None

    def add(self, tick: Tick, name: str = "") -> Scheduled:
        """Register ``tick``; it runs at once, then at the deadlines it returns."""
        entry = Scheduled(self, tick, name or getattr(tick, "__qualname__", "tick"))
        with self._cond:
            if self._closed:
                raise RuntimeError(f"scheduler {self.name} is closed")
            self._entries.append(entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify()
        return entry

    @property
    def clients(self) -> int:
        """Number of registered ticks."""
        return len(self._entries)

    def close(self) -> None:
        """Stop the thread after the tick that runs now (idempotent)."""
        with self._cond:
            self._closed = True
            self._entries.clear()
            self._cond.notify()
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)

    def _wake(self, entry: Scheduled) -> None:
        with self._cond:
            if entry.running:
                entry.woken = True
            else:
                entry.deadline = -math.inf
                self._cond.notify()

    def _cancel(self, entry: Scheduled) -> None:
        with self._cond:
            if entry in self._entries:
                self._entries.remove(entry)
            while entry.running and threading.current_thread() is not self._thread:
                self._cond.wait(0.1)

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                if self._closed:
                    return
                now = self._clock()
                due = [e for e in self._entries if e.deadline <= now]
                if not due:
                    nearest = min((e.deadline for e in self._entries), default=math.inf)
                    cond.wait(None if math.isinf(nearest) else nearest - now)
                    continue
                due.sort(key=lambda e: e.deadline)
                for e in due:
                    e.running, e.woken = True, False
            for e in due:
                now = self._clock()
                try:
                    deadline = e.tick(now)
                except Exception:  # the thread serves every pistol: it must survive
                    self.errors += 1
                    log.exception("transmit tick %s failed", e.name)
                    deadline = now + self._error_backoff
                with cond:
                    e.running = False
                    e.deadline = -math.inf if e.woken else deadline
                    cond.notify_all()
