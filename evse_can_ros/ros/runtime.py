"""How a node process runs: which rclpy executor spins it, and its garbage collector.

Both chosen by measurement (docs/performance.md, ``bench/``).

Executor:

* ``events`` (default where the main thread spins: ``evse-can-ros run``, every node executable):
  rclpy's EventsExecutor. An idle wake-up costs a fraction of the SingleThreadedExecutor's, which
  rebuilds the wait set of every entity on each one (parameter, lifecycle and action services
  included). The rclpy 9.1.2 wheels' EventsExecutor hung when spun from a secondary thread, so it
  is only used in the main thread.
* ``single``: the SingleThreadedExecutor, for a spin in a secondary thread (``sim``, tests) and as
  the fallback (``EVSE_CAN_ROS_EXECUTOR=single``).

The MultiThreadedExecutor of these wheels busy-spins and drops messages: never used.

Garbage collector (:func:`settle_gc`, once start-up is done): everything that exists then is
frozen (``gc.freeze``: never scanned again, so a full collection only walks what was created
since), and the young generation is collected after ``YOUNG_THRESHOLD`` net allocations instead
of 700 (fewer collections; each stays well under a millisecond, since most objects of the receive
path die young by reference counting).

No safety path depends on the executor: an emergency stop and a lost heartbeat reach the
converter driver on the bridge's threads (:class:`~evse_can_ros.ros.common.LocalSafetyLink`), and
the backend's output watchdog thread switches off if the executor stops.
"""

from __future__ import annotations

import gc
import os

from rclpy.context import Context
from rclpy.executors import Executor, SingleThreadedExecutor
from rclpy.task import Future

YOUNG_THRESHOLD = 5000
EXECUTORS = ("events", "single")
ENV = "EVSE_CAN_ROS_EXECUTOR"


def executor_kind(default: str = "events") -> str:
    """Return the executor to use: ``EVSE_CAN_ROS_EXECUTOR`` if set, else ``default``."""
    kind = os.environ.get(ENV, "").strip() or default
    if kind not in EXECUTORS:
        raise ValueError(f"{ENV} must be one of {', '.join(EXECUTORS)}, got {kind!r}")
    return kind


def create_executor(context: Context | None = None, kind: str | None = None) -> Executor:
    """Return the executor of ``kind`` (default :func:`executor_kind`) for ``context``.

    Spin an ``events`` executor in the main thread only (see module docstring).
    """
    kind = kind or executor_kind()
    if kind == "events":
        from rclpy.experimental import EventsExecutor

        return EventsExecutor(context=context)
    return SingleThreadedExecutor(context=context)


def spin_slice(executor: Executor, seconds: float) -> None:
    """Spin ``executor`` for up to ``seconds`` (a loop of these replaces ``spin_once``).

    Not ``spin_once``: with a coroutine pending (the charge server's goal awaits its result for
    the whole charge), each ``spin_once`` of the rclpy 9.1.2 EventsExecutor resumes it at once
    instead of waiting: a loop of them busy-spins a core for as long as a goal runs (measured:
    97 % of a core, against 1 % with this; bench/spin.py). ``spin_until_future_complete`` on a
    future that never completes waits for work like ``spin`` does, and returns after
    ``seconds`` so the caller can check its stop condition.
    """
    executor.spin_until_future_complete(Future(), timeout_sec=seconds)


def settle_gc() -> None:
    """Freeze the start-up objects and set the collection thresholds (see module docstring)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
