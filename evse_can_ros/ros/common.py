"""Helpers every node uses (no node file imports another node file).

* :class:`NodeConfigError`: a node cannot start with its parameters (one line, exit code 2).
* :func:`start_link`: open and start a node's CAN link.
* :class:`Guard`: run a callback on a safety path; an exception is counted, logged once per
  kind, and handed to the node's safe-state reaction, never lost.
* :class:`LocalSafetyLink`: the in-process fast path from a bridge to the converter driver of the
  same pistol (emergency stop, controller lost). In separate processes the topics carry the same
  events; here the driver acts on the bridge's receive thread, independent of executor load.
* :func:`forward_core_logs`: the pure cores' Python ``logging`` goes to an rclpy logger (console,
  ``~/.ros/log`` and, for a node's logger, ``/rosout``) through a queue and a thread, so a log
  call never blocks a safety path.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import threading
from collections.abc import Callable
from typing import Any, ClassVar

from rclpy.node import Node

from evse_can_ros.text import one_line
from evse_can_ros.transport import CanLink, LinkConfigError

log = logging.getLogger(__name__)


class NodeConfigError(Exception):
    """The node cannot start with its parameters (printed as one line, exit code 2)."""


def start_link(node: Node, link: CanLink) -> None:
    """Open and start a node's CAN link; a configuration error destroys the node.

    Raises NodeConfigError (one line) for an interface python-can does not know or a bad
    channel; a bus that exists but cannot be opened yet is retried by the link itself.
    """
    try:
        link.open()
    except LinkConfigError as exc:
        node.destroy_node()
        raise NodeConfigError(str(exc)) from None
    link.start()


class Guard:
    """Runs safety-path callbacks; an exception goes to ``on_error(where, exc)``, counted.

    ``on_error`` must bring the node to its safe state (e.g. the converter driver latches the
    output off, the bridge reports the controller lost). It runs inside the guard; if it raises
    too, that is logged and swallowed (the caller's thread must survive).
    """

    def __init__(self, node: Node, on_error: Callable[[str, BaseException], None]) -> None:
        self._node = node
        self._on_error = on_error
        self.errors = 0
        self.last_error = ""

    def __call__(self, where: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Call ``fn(*args)``; on an exception react and return None."""
        try:
            return fn(*args)
        except Exception as exc:
            self.errors += 1
            self.last_error = f"{where}: {type(exc).__name__}: {one_line(exc)}"
            try:
                self._on_error(where, exc)
            except Exception:
                if self._node.context.ok():
                    log.exception("safe-state reaction failed after an error in %s", where)
                else:  # its report could not be published: the context is shut down
                    log.debug("safe-state report after %s not published (shutting down)", where)
            if self._node.context.ok():
                self._node.get_logger().error(
                    f"internal error in {self.last_error} (safe state entered, "
                    f"{self.errors} so far)"
                )
            else:  # e.g. Ctrl-C shut the context down under a receive thread: going away
                log.debug("error while shutting down in %s", self.last_error)
            return None

    def wrap(self, where: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Return ``fn`` guarded (for subscriptions: the message is passed on)."""
        return lambda *args: self(where, fn, *args)

    def wrap_timer(self, where: str, fn: Callable[[], Any]) -> Callable[[], Any]:
        """Return ``fn`` guarded, without arguments (for timers).

        The callback takes no argument, so no executor passes it a ``TimerInfo`` (the
        EventsExecutor does to any callback that accepts one).
        """
        return lambda: self(where, fn)


class LocalSafetyLink:
    """In-process safety events from a bridge to the converter driver of its namespace.

    Keyed by (rclpy context, namespace): nodes of different contexts (tests) never meet.
    ``publish`` calls the subscribers synchronously on the caller's thread.
    """

    _lock: ClassVar[threading.Lock] = threading.Lock()
    _subscribers: ClassVar[dict[tuple[int, str], list[Callable[[str, Any], None]]]] = {}

    @classmethod
    def subscribe(cls, node: Node, callback: Callable[[str, Any], None]) -> None:
        """Receive ``(kind, payload)`` events published in ``node``'s namespace and context."""
        with cls._lock:
            cls._subscribers.setdefault(cls._key(node), []).append(callback)

    @classmethod
    def unsubscribe(cls, node: Node, callback: Callable[[str, Any], None]) -> None:
        """Stop receiving (idempotent; also once rclpy has destroyed the node's handle)."""
        with cls._lock:
            for subs in cls._subscribers.values():
                if callback in subs:
                    subs.remove(callback)

    @classmethod
    def publish(cls, node: Node, kind: str, payload: Any) -> None:
        """Hand ``(kind, payload)`` to every subscriber of the namespace (never raises)."""
        with cls._lock:
            subs = list(cls._subscribers.get(cls._key(node), ()))
        for callback in subs:
            try:
                callback(kind, payload)
            except Exception:  # the subscriber guards itself; never break the publisher
                log.exception("local safety subscriber failed on %s", kind)

    @staticmethod
    def _key(node: Node) -> tuple[int, str]:
        return (id(node.context), node.get_namespace())


class _RclpyHandler(logging.Handler):
    def __init__(self, logger: Any) -> None:
        super().__init__()
        self._logger = logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = f"[{record.name.rsplit('.', 1)[-1]}] {record.getMessage()}"
            if record.levelno >= logging.ERROR:
                self._logger.error(text)
            elif record.levelno >= logging.WARNING:
                self._logger.warning(text)
            elif record.levelno >= logging.INFO:
                self._logger.info(text)
            else:
                self._logger.debug(text)
        except Exception:  # logging must never raise into the caller
            self.handleError(record)


_forwarding: list[tuple[logging.Handler, logging.handlers.QueueListener]] = []


def forward_core_logs(rclpy_logger: Any, level: int = logging.INFO) -> None:
    """Send the package's Python ``logging`` to ``rclpy_logger`` (once per process).

    Records go into a queue (non-blocking for the caller) and a listener thread writes them to
    the rclpy logger. Call :func:`stop_core_log_forwarding` at shutdown.
    """
    if _forwarding:
        return
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    handler = logging.handlers.QueueHandler(records)
    listener = logging.handlers.QueueListener(records, _RclpyHandler(rclpy_logger))
    package = logging.getLogger("evse_can_ros")
    package.addHandler(handler)
    package.setLevel(level)
    package.propagate = False
    listener.start()
    _forwarding.append((handler, listener))


def stop_core_log_forwarding() -> None:
    """Flush and stop the forwarding (idempotent)."""
    if not _forwarding:
        return
    handler, listener = _forwarding.pop()
    logging.getLogger("evse_can_ros").removeHandler(handler)
    logging.getLogger("evse_can_ros").propagate = True
    listener.stop()
