"""A pytest suite that every converter backend must pass: the contract of :mod:`.base`.

For backend authors (also third parties who ``pip install`` this package). Write a
:class:`BackendHarness` that creates your backend and drives its plant (the hardware emulator
or a test rig), then subclass :class:`ConverterContract`; pytest collects the inherited tests::

    # test/test_acme_contract.py
    from evse_can_ros.converter.testkit import BackendHarness, ConverterContract, Fault

    class AcmeHarness(BackendHarness):
        def make_backend(self, setpoint_timeout, watchdog_thread):
            return AcmeConverter(AcmeParams(port=self.emulator.port), setpoint_timeout,
                                 watchdog_thread=watchdog_thread)
        def advance(self, now):            # move the emulator to ``now``, deliver its frames
            self.emulator.step(now)
        def plant_output_on(self):         # the hardware's truth, not the backend's view
            return self.emulator.output_on
        def plant_current_limit(self):     # current the hardware may deliver now [A]
            return self.emulator.current_limit
        def inject(self, fault, on=True):  # optional: unsupported faults skip their test
            ...

    class TestAcmeContract(ConverterContract):
        def make_harness(self):
            return AcmeHarness()

The suite drives time explicitly (``now`` in steps of :attr:`BackendHarness.dt`), so it is
deterministic; only the watchdog-thread test waits on the wall clock (short timeouts, generous
waits). What it checks, per the base-class contract:

* capability reporting (finite, ordered, ready after :meth:`~.base.ConverterBackend.wake`);
* setpoint clamping (the plant never gets more than the clamped setpoint; below
  ``min_voltage`` means off);
* ``stop()`` never raises (before open, after close, from another thread while a call holds
  the lock, with the hardware unreachable) and switches the plant off;
* the output watchdog, on the caller's clock in ``read`` and as a thread when nobody calls;
* measurement validity (every measurement finite and plausible; garbage -> ConverterFault);
* fault reporting (hardware fault, over-temperature: reported, output off);
* communication loss and reconnect (ConverterFault, output off, then usable again).

Worked examples: ``test/test_converter_contract.py`` (``simulated`` and ``infypower``).
"""

from __future__ import annotations

import enum
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from evse_can_ros.converter.base import (
    OFF,
    Capabilities,
    ConverterBackend,
    ConverterFault,
    Measurement,
    Mode,
    Setpoint,
)
from evse_can_ros.core.power_stage import implausible


class Fault(enum.Enum):
    """Faults a harness may be able to inject into its plant."""

    COMMUNICATION_LOSS = "communication loss"  # the hardware stops answering
    HARDWARE_FAULT = "hardware fault"  # a module trips
    OVER_TEMPERATURE = "over-temperature"
    MEASUREMENT_GARBAGE = "measurement garbage"  # the hardware reports NaN / impossible values


class BackendHarness(ABC):
    """A backend's plant for the contract suite (see module docstring).

    Times are plant seconds on the suite's clock; override them to match your hardware.
    """

    dt: float = 0.02
    """Control period of the suite [s]."""
    ready_within: float = 3.0
    """open() + wake() to ``ready``."""
    fault_within: float = 2.0
    """An injected fault to its report (ConverterFault or ``Measurement.fault``)."""
    plant_off_within: float = 0.2
    """A stop (or a reported fault and the caller's OFF) to the plant's output off."""
    cutoff_within: float = 1.0
    """Communication lost: the plant's own protection switches it off within this."""
    recover_within: float = 3.0
    """Communication back to a fault-free measurement."""
    test_voltage: float = 400.0
    """Voltage the suite regulates (inside every backend's window)."""
    test_current: float = 20.0

    @abstractmethod
    def make_backend(self, setpoint_timeout: float, watchdog_thread: bool) -> ConverterBackend:
        """Return a new backend connected to this plant (not opened)."""

    def advance(self, now: float) -> None:  # noqa: B027 - optional hook
        """Move the plant to ``now`` and deliver what the backend sent (default: nothing)."""

    @abstractmethod
    def plant_output_on(self) -> bool:
        """Return True while the plant's output is on (the hardware's truth)."""

    @abstractmethod
    def plant_current_limit(self) -> float:
        """Return the current the plant is allowed to deliver now [A] (0 when off)."""

    def inject(self, fault: Fault, on: bool = True) -> None:
        """Switch a plant fault on or off (NotImplementedError: the test is skipped)."""
        raise NotImplementedError(fault.value)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the plant."""


@dataclass
class Driver:
    """The suite's control loop: one backend, one harness, one clock."""

    harness: BackendHarness
    backend: ConverterBackend
    t: float = 0.0
    faults: list[str] = field(default_factory=list)
    last: Measurement | None = None
    applied: Setpoint = OFF  # what the last apply() returned

    def tick(self, setpoint: Setpoint | None = None) -> Measurement | None:
        """One control period: advance, read (validated), apply ``setpoint`` if given."""
        h, b = self.harness, self.backend
        self.t = round(self.t + h.dt, 9)
        h.advance(self.t)
        m: Measurement | None
        try:
            m = b.read(self.t)
        except ConverterFault as exc:
            self.faults.append(str(exc))
            m = None
        else:
            assert implausible(m, b.rated) == "", f"implausible measurement {m}"
            if m.fault:
                self.faults.append(m.fault)
        self.last = m
        if setpoint is not None:
            try:
                self.applied = b.apply(setpoint, self.t)
            except ConverterFault as exc:
                self.faults.append(str(exc))
                self.applied = OFF
        return m

    def run(self, seconds: float, setpoint: Setpoint | None = None) -> None:
        """Tick for ``seconds`` of plant time."""
        for _ in range(max(1, round(seconds / self.harness.dt))):
            self.tick(setpoint)

    def run_until(
        self, seconds: float, setpoint: Setpoint | None, what: str, cond: object
    ) -> float:
        """Tick until ``cond()`` holds; fail naming ``what`` after ``seconds``."""
        assert callable(cond)
        start = self.t
        while self.t - start < seconds + 1e-9:
            self.tick(setpoint)
            if cond():
                return self.t - start
        pytest.fail(f"{what}: not within {seconds:g} s (faults: {self.faults[-3:]})")

    def settle_off(self) -> None:
        """Let the plant take a stop (no further commands)."""
        self.run_until(
            self.harness.plant_off_within,
            None,
            "plant output off",
            lambda: not self.harness.plant_output_on(),
        )


class ConverterContract:
    """Subclass with ``make_harness``; pytest collects these tests (see module docstring)."""

    setpoint_timeout = 0.5

    def make_harness(self) -> BackendHarness:
        """Return the harness of the backend under test."""
        raise NotImplementedError

    # --- fixtures ------------------------------------------------------------------------------

    @pytest.fixture
    def harness(self) -> Iterator[BackendHarness]:
        """One plant per test."""
        h = self.make_harness()
        yield h
        h.close()

    @pytest.fixture
    def driver(self, harness: BackendHarness) -> Iterator[Driver]:
        """Return an opened, woken, ready backend (no watchdog thread: the suite owns time)."""
        backend = harness.make_backend(self.setpoint_timeout, False)
        backend.open()
        d = Driver(harness, backend)
        try:
            backend.wake()
            d.run_until(harness.ready_within, None, "ready after wake()", lambda: _ready(d))
            yield d
        finally:
            backend.close()

    @staticmethod
    def _on(h: BackendHarness) -> Setpoint:
        return Setpoint(Mode.REGULATE, h.test_voltage, h.test_current)

    def _inject(self, h: BackendHarness, fault: Fault, on: bool = True) -> None:
        try:
            h.inject(fault, on)
        except NotImplementedError:
            pytest.skip(f"the harness cannot inject {fault.value}")

    # --- capabilities --------------------------------------------------------------------------

    def test_capabilities_are_finite_ordered_and_rated(self, driver: Driver) -> None:
        """Capabilities are finite, min < max, within the rating; ready after wake()."""
        b = driver.backend
        caps = b.capabilities(driver.t)
        values = (caps.min_voltage, caps.max_voltage, caps.max_current, caps.max_power)
        assert all(math.isfinite(v) and v >= 0 for v in values), caps
        assert caps.min_voltage < caps.max_voltage and caps.max_current > 0 and caps.max_power > 0
        assert b.rated is not None
        assert caps.max_voltage <= b.rated.max_voltage and caps.max_current <= b.rated.max_current
        h = driver.harness
        assert caps.min_voltage <= h.test_voltage <= caps.max_voltage, "adjust test_voltage"
        m = driver.tick()
        assert m is not None and m.ready and not m.fault

    # --- setpoints -----------------------------------------------------------------------------

    def test_setpoints_are_clamped_and_the_plant_follows(self, driver: Driver) -> None:
        """apply() clamps to the capabilities; the plant never gets more; below min: off."""
        b, h = driver.backend, driver.harness
        caps = b.capabilities(driver.t)
        huge = Setpoint(Mode.REGULATE, caps.max_voltage * 10, caps.max_current * 10)
        applied = b.apply(huge, driver.t)
        assert applied.mode is Mode.REGULATE
        assert applied.voltage <= caps.max_voltage
        assert applied.current_limit <= caps.current_limit_at(applied.voltage) + 1e-9
        previous = applied
        for _ in range(round(1.0 / h.dt)):
            driver.tick(huge)
            # the plant may still act on the previous setpoint (one period of latency); backends
            # may hold a minimum current (e.g. 1 A: modules misbehave at 0 A)
            limit = max(previous.current_limit, driver.applied.current_limit, 1.0)
            assert h.plant_current_limit() <= limit * 1.01 + 0.01
            previous = driver.applied
        assert h.plant_output_on()
        low = Setpoint(Mode.REGULATE, caps.min_voltage * 0.5, 10.0)
        assert b.apply(low, driver.t) == OFF  # cannot regulate below min_voltage: off
        driver.settle_off()
        for bad in (math.nan, -math.inf):
            assert b.apply(Setpoint(Mode.REGULATE, bad, 10.0), driver.t) == OFF

    def test_the_output_follows_a_regulate_setpoint(self, driver: Driver) -> None:
        """A REGULATE setpoint switches the plant on and the measurement says so."""
        h = driver.harness
        driver.run_until(1.0, self._on(h), "plant output on", h.plant_output_on)
        driver.run(0.5, self._on(h))
        assert driver.last is not None and driver.last.output_enabled
        assert driver.faults == []

    # --- stop ----------------------------------------------------------------------------------

    def test_stop_switches_the_plant_off_and_never_raises(self, driver: Driver) -> None:
        """stop() (idempotent) switches the plant off; the measurement shows it."""
        b, h = driver.backend, driver.harness
        driver.run_until(1.0, self._on(h), "plant output on", h.plant_output_on)
        b.stop()
        b.stop()  # idempotent
        assert b.setpoint == OFF
        driver.settle_off()
        m = driver.tick()
        assert m is not None and not m.output_enabled

    def test_stop_before_open_and_after_close(self, harness: BackendHarness) -> None:
        """stop() and close() never raise, whatever the state."""
        b = harness.make_backend(self.setpoint_timeout, False)
        b.stop()
        b.close()
        b.open()
        b.close()
        b.stop()
        b.close()
        assert not b.is_open

    def test_stop_acts_while_another_call_holds_the_lock(self, driver: Driver) -> None:
        """stop() does not wait for a stuck call (the emergency path)."""
        b, h = driver.backend, driver.harness
        driver.run_until(1.0, self._on(h), "plant output on", h.plant_output_on)
        held, release = threading.Event(), threading.Event()

        def stuck_call() -> None:
            with b._lock:
                held.set()
                release.wait(5.0)

        t = threading.Thread(target=stuck_call)
        t.start()
        try:
            assert held.wait(5.0)
            started = time.monotonic()
            b.stop()
            assert time.monotonic() - started < 1.0, "stop() waited for the stuck call"
        finally:
            release.set()
            t.join()
        driver.settle_off()

    def test_stop_never_raises_without_communication(self, driver: Driver) -> None:
        """stop() and close() with the hardware unreachable: no exception."""
        h = driver.harness
        driver.run_until(1.0, self._on(h), "plant output on", h.plant_output_on)
        self._inject(h, Fault.COMMUNICATION_LOSS)
        driver.backend.stop()
        driver.backend.close()
        driver.backend.stop()

    def test_close_switches_the_output_off(self, driver: Driver) -> None:
        """close() leaves the output off."""
        h = driver.harness
        driver.run_until(1.0, self._on(h), "plant output on", h.plant_output_on)
        driver.backend.close()
        assert not driver.backend.is_open
        start = driver.t
        while h.plant_output_on():
            driver.t = round(driver.t + h.dt, 9)
            h.advance(driver.t)
            assert driver.t - start <= h.plant_off_within, "close() left the output on"

    # --- watchdog ------------------------------------------------------------------------------

    def test_read_time_watchdog_on_the_callers_clock(self, driver: Driver) -> None:
        """No apply() for setpoint_timeout on the caller's clock: read() reports it, off."""
        b, h = driver.backend, driver.harness
        driver.run_until(1.0, self._on(h), "plant output on", h.plant_output_on)
        faults = len(driver.faults)
        driver.run(self.setpoint_timeout * 0.5)  # reads only: no setpoint
        assert len(driver.faults) == faults
        driver.run(self.setpoint_timeout * 0.5 + 2 * h.dt)
        assert any(f.startswith("setpoint watchdog") for f in driver.faults[faults:])
        assert b.setpoint == OFF
        driver.settle_off()

    def test_watchdog_thread_stops_the_output_when_nobody_calls(
        self, harness: BackendHarness
    ) -> None:
        """The watchdog thread switches off when the caller is dead (plant clock frozen)."""
        timeout = 0.05
        b = harness.make_backend(timeout, True)
        b.open()
        try:
            d = Driver(harness, b)
            b.wake()
            d.run_until(harness.ready_within, None, "ready after wake()", lambda: _ready(d))
            d.run_until(1.0, None, "", lambda: True)
            on = self._on(harness)
            # feed the setpoint in real time until the plant is on, then stop calling
            deadline = time.monotonic() + 5.0
            while not harness.plant_output_on():
                assert time.monotonic() < deadline, "the plant did not switch on"
                d.tick(on)
                applied_at = time.monotonic()
                time.sleep(timeout / 5)
            frozen = d.t  # the plant clock stands still: its own protections cannot act
            deadline = applied_at + 5.0
            while harness.plant_output_on() and time.monotonic() < deadline:
                harness.advance(frozen)
                time.sleep(0.005)
            assert not harness.plant_output_on(), "the watchdog thread did not switch off"
            assert b.watchdog is not None and b.watchdog.trips >= 1
            assert time.monotonic() - applied_at >= timeout * 0.9
            m = b.read(frozen)
            assert m.fault.startswith("setpoint watchdog")
        finally:
            b.close()
        assert b.watchdog is None

    # --- measurements and faults ---------------------------------------------------------------

    def test_garbage_measurements_never_reach_the_caller(self, driver: Driver) -> None:
        """NaN/impossible hardware readings become ConverterFault, never a measurement."""
        h = driver.harness
        driver.run_until(1.0, self._on(h), "plant output on", h.plant_output_on)
        self._inject(h, Fault.MEASUREMENT_GARBAGE)
        faults = len(driver.faults)
        # Driver.tick asserts that every returned measurement is finite and plausible
        driver.run_until(
            h.fault_within, self._on(h), "garbage reported", lambda: len(driver.faults) > faults
        )
        driver.run(h.plant_off_within, OFF)
        assert not h.plant_output_on()

    @pytest.mark.parametrize("fault", [Fault.HARDWARE_FAULT, Fault.OVER_TEMPERATURE])
    def test_hardware_faults_are_reported_and_the_output_goes_off(
        self, driver: Driver, fault: Fault
    ) -> None:
        """Hardware faults are reported; with the caller's OFF the plant is off."""
        h = driver.harness
        driver.run_until(1.0, self._on(h), "plant output on", h.plant_output_on)
        self._inject(h, fault)
        faults = len(driver.faults)
        driver.run_until(
            h.fault_within,
            self._on(h),
            f"{fault.value} reported",
            lambda: len(driver.faults) > faults,
        )
        driver.run(h.plant_off_within, OFF)  # the control loop latches: OFF from now on
        assert not h.plant_output_on()
        m = driver.tick(OFF)
        assert m is None or m.fault or not m.ready

    def test_communication_loss_then_reconnect(self, driver: Driver) -> None:
        """Lost hardware: ConverterFault, output off; back: usable again."""
        b, h = driver.backend, driver.harness
        driver.run_until(1.0, self._on(h), "plant output on", h.plant_output_on)
        self._inject(h, Fault.COMMUNICATION_LOSS)
        faults = len(driver.faults)
        driver.run_until(
            h.fault_within,
            self._on(h),
            "communication loss reported",
            lambda: len(driver.faults) > faults,
        )
        # reported (ConverterFault or Measurement.fault): the control loop latches OFF
        driver.run_until(h.cutoff_within, OFF, "plant off", lambda: not h.plant_output_on())
        assert b.setpoint == OFF
        self._inject(h, Fault.COMMUNICATION_LOSS, on=False)
        driver.run_until(
            h.recover_within,
            OFF,
            "a fault-free measurement after reconnect",
            lambda: driver.last is not None and not driver.last.fault and driver.last.ready,
        )
        driver.run_until(1.0, self._on(h), "plant output on again", h.plant_output_on)


def _ready(d: Driver) -> bool:
    return d.last is not None and d.last.ready and not d.last.fault


__all__ = ["BackendHarness", "Capabilities", "ConverterContract", "Driver", "Fault"]
