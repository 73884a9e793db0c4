"""The charger in one process: the node set of :mod:`evse_can_ros.nodeset`, one executor.

``evse-can-ros run`` and ``sim`` use this; ``launch/charger.launch.py`` starts the same nodes
with the same parameters as separate processes.

Executor: one ``SingleThreadedExecutor`` for every node. The MultiThreadedExecutor of the rclpy
wheels used here busy-spins and drops messages (see docs/performance.md); the time-critical paths
do not need it anyway (the bridge receives and publishes on its CAN thread and hands an
emergency stop to the converter driver directly, the simulator steps on its own thread).

Safety on the way out and on errors: :meth:`Charger.destroy` first commands every converter
output off, then destroys the nodes one by one; an exception in one node's destroy never skips
the others. An exception that escapes a callback into the executor switches every output off
(latched) and is counted; the executor goes on. If the executor hangs, each backend's output
watchdog thread switches its output off within ``setpoint_timeout``.

With ``sim``, each pistol's simulated converter and simulated vehicle share one
:class:`~evse_can_ros.core.battery.VehicleInlet` (the battery is counted once).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

import rclpy
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter

from evse_can_ros.config import ConfigError
from evse_can_ros.core.battery import VehicleInlet
from evse_can_ros.nodeset import ChargerOptions, NodeSpec, node_set, pistol_namespace
from evse_can_ros.ros.common import forward_core_logs, stop_core_log_forwarding
from evse_can_ros.ros.converter_driver_node import ConverterDriverNode
from evse_can_ros.ros.dds import dds_summary, new_context
from evse_can_ros.ros.runtime import create_executor, executor_kind, settle_gc, spin_slice
from evse_can_ros.transport import LinkPool

log = logging.getLogger(__name__)

SHARED_INLET = ("converter_driver", "controller_simulator")


class ChargerError(Exception):
    """The charger cannot start (bad parameter, unknown backend ...): one line."""


def ros_args(options: ChargerOptions) -> list[str]:
    """Return the ``--ros-args`` that a launch file would give every node process."""
    args = ["--ros-args", "--log-level", options.log_level]
    if options.params_file:
        args += ["--params-file", options.params_file]
    return args


def load_factory(path: str) -> Callable[..., Node]:
    """Import ``"module:Class"``."""
    module, _, name = path.partition(":")
    factory: Callable[..., Node] = getattr(importlib.import_module(module), name)
    return factory


class Charger:
    """Every node of ``options`` created in ``context`` and added to one executor."""

    def __init__(
        self, options: ChargerOptions, context: Context, executor: str = "single"
    ) -> None:
        self.options = options
        self.context = context
        self.executor = create_executor(context, executor)
        self.links = LinkPool()  # the bridges of one bus share one link
        self.nodes: list[Node] = []
        self.inlets: dict[int, VehicleInlet] = {}
        self.executor_errors = 0
        self.plants: list[Any] = []  # module emulators of InfyPower backends (sim)
        self._converters: list[tuple[Node, int]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            for spec in node_set(options):
                self._add(spec)
            if options.sim:
                self.plants = self._start_module_emulators()
        except BaseException:
            self.destroy()
            raise

    def _add(self, spec: NodeSpec) -> None:
        kwargs: dict[str, Any] = {
            "namespace": spec.namespace,
            "context": self.context,
            "parameter_overrides": [Parameter(k, value=v) for k, v in spec.parameters.items()],
        }
        if self.options.sim and spec.executable in SHARED_INLET:
            kwargs["inlet"] = self.inlets.setdefault(spec.pistol_index, VehicleInlet())
        if spec.executable == "can_bridge":
            kwargs["links"] = self.links
        try:
            node = load_factory(spec.factory)(spec.name, **kwargs)
        except (ConfigError, ValueError) as exc:
            raise ChargerError(f"{spec.namespace}/{spec.name}: {exc}") from None
        except Exception as exc:  # the nodes' own NodeConfigError types
            if type(exc).__name__ in ("NodeConfigError", "UnknownBackendError"):
                raise ChargerError(f"{spec.namespace}/{spec.name}: {exc}") from None
            raise
        self.nodes.append(node)
        self.executor.add_node(node)
        if spec.executable == "converter_driver":
            self._converters.append((node, spec.pistol_index))

    def _start_module_emulators(self) -> list[Any]:
        """Sim: an InfyPower module emulator on each InfyPower backend's in-process bus."""
        from evse_can_ros.converter.infypower.sim import start_module_emulators

        pairs = [(getattr(n, "backend", None), self.inlets.get(i)) for n, i in self._converters]
        try:
            return start_module_emulators(pairs, self.options.params_file)
        except ConfigError as exc:
            raise ChargerError(str(exc)) from None

    def spin_in_thread(self) -> threading.Thread:
        """Spin the executor on a daemon thread (for ``sim`` and tests); see :meth:`destroy`."""
        thread = threading.Thread(target=self._spin, name="charger-executor", daemon=True)
        thread.start()
        self._thread = thread
        return thread

    def _spin(self) -> None:
        while self.context.ok() and not self._stop.is_set():
            try:
                spin_slice(self.executor, 0.1)
            except (ExternalShutdownException, KeyboardInterrupt):
                return
            except Exception as exc:
                if not self.context.ok():
                    return
                self.executor_errors += 1
                log.exception("callback failed in the executor: every output off (latched)")
                self.fail_safe(exc)

    def drivers(self) -> list[ConverterDriverNode]:
        """Return the converter driver nodes."""
        return [n for n in self.nodes if isinstance(n, ConverterDriverNode)]

    def fail_safe(self, exc: BaseException) -> None:
        """Latch every converter output off after an unguarded error (never raises)."""
        for node in self.drivers():
            try:
                node.fail_safe("executor", exc)
            except Exception:
                log.exception("fail-safe of %s failed", node.get_name())

    def destroy(self) -> None:
        """Every converter output off first, then every node destroyed (errors never skip any)."""
        for driver in self.drivers():
            try:
                driver.output_off("shutdown")
            except Exception:
                log.exception("output off failed for %s", driver.get_name())
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        for node in reversed(self.nodes):
            with contextlib.suppress(Exception):  # tearing down anyway
                self.executor.remove_node(node)
            try:
                node.destroy_node()
            except Exception:  # (the name is gone with the handle: the type tells which)
                log.exception("destroying a %s failed", type(node).__name__)
        self.nodes.clear()
        for plant in self.plants:  # after the converter drivers have switched them off
            try:
                plant.close()
            except Exception:
                log.exception("closing a module emulator failed")
        self.plants.clear()
        self.links.close()  # each bridge released its pistol; this closes what is left


def init_context(options: ChargerOptions) -> Context:
    """Create a new rclpy context with the launch-equivalent ``--ros-args`` (local DDS only)."""
    return new_context(["evse-can-ros", *ros_args(options)])


def run_charger(options: ChargerOptions) -> int:
    """``evse-can-ros run``: start the node set and spin until Ctrl-C / SIGTERM."""
    context = init_context(options)
    charger: Charger | None = None

    def on_signal(*_: Any) -> None:
        # end the spin loop, do not shut the context down here: the handler runs between two
        # bytecodes of whatever the main thread does, often inside a node's callback, and the
        # context's shutdown would destroy the nodes under it. destroy() below turns every
        # output off first, then destroys the nodes. Nor raise KeyboardInterrupt there once
        # running: inside the executor's C++ code it can come out as another error (node_main).
        if charger is None:
            raise KeyboardInterrupt  # still starting: like Ctrl-C
        charger._stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        charger = Charger(options, context, executor_kind())  # spun in this (the main) thread
        forward_core_logs(
            rclpy.logging.get_logger("evse_can_ros"), logging.getLogger().getEffectiveLevel()
        )
        names = ", ".join(f"{n.get_namespace()}/{n.get_name()}" for n in charger.nodes)
        print(f"charger running ({len(charger.nodes)} nodes: {names}); Ctrl-C to stop", flush=True)
        print(dds_summary(), flush=True)
        settle_gc()  # start-up objects never scanned again: short collections under load
        charger._spin()
    except KeyboardInterrupt:
        pass
    finally:
        if charger is not None:
            charger.destroy()  # (a signal meanwhile only sets the stop flag again)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        stop_core_log_forwarding()
        _shutdown(context)
    return 0


def run_sim(options: ChargerOptions, goal: dict[str, Any], out: TextIO = sys.stdout) -> int:
    """``evse-can-ros sim``: the simulated charger in one process and one charge per pistol.

    Every pistol of ``options`` gets the same goal; with one pistol the progress is live (Ctrl-C
    cancels the charge), with several the goals run concurrently and each result is printed.
    Returns 0 when every charge ended without error.
    """
    from evse_can_ros.ros.charge_client import ChargeRequest, format_result, run_charge

    context = init_context(options)
    charger: Charger | None = None
    started = time.monotonic()
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        charger = Charger(options, context)
        settle_gc()
        charger.spin_in_thread()
        out.write(
            f"simulated charger up in {time.monotonic() - started:.1f} s: "
            f"{len(options.pistols)} pistol(s) on {options.can_interface}:{options.can_channel}, "
            f"{len(charger.nodes)} nodes in one process\n"
        )
        out.flush()
        namespaces = [pistol_namespace(options.namespace, p) for p in options.pistols]
        if len(namespaces) == 1:
            code, _ = run_charge(ChargeRequest(namespaces[0], goal), out=out, context=context)
            return code
        results: dict[str, tuple[int, Any]] = {}

        def charge(ns: str) -> None:
            results[ns] = run_charge(ChargeRequest(ns, goal), out=io.StringIO(), context=context)

        threads = [threading.Thread(target=charge, args=(ns,), daemon=True) for ns in namespaces]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for ns in namespaces:
            code, result = results.get(ns, (1, None))
            text = format_result(result) if result is not None else "no result"
            out.write(f"--- {ns}\n{text}\n")
        return max(code for code, _ in results.values()) if results else 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        if charger is not None:
            charger.destroy()
        _shutdown(context)
        out.write(f"done in {time.monotonic() - started:.1f} s\n")


def _shutdown(context: Context) -> None:
    """Shut the context down; a node that failed to destroy itself must not raise again here."""
    try:
        rclpy.try_shutdown(context=context)
    except Exception:
        log.exception("rclpy shutdown failed (the outputs are already off)")


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    """SIGTERM ends ``sim`` like Ctrl-C: the charge is cancelled, every output commanded off."""
    raise KeyboardInterrupt
