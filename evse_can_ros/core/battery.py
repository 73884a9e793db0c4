"""Traction battery and vehicle inlet: the physical plant shared by the simulators.

One :class:`VehicleInlet` object is the single source of truth for what is connected to the
charger output when the simulated converter and the simulated vehicle run in one process: the
vehicle model opens and closes its contactors on it, the simulated converter sees the battery
through it. Pure model: no clock, ``dt`` is an argument.

Sign convention (v3 digest 4.1, 5.1): a current is positive when it flows into the battery
(charge, energy imported by the vehicle) and negative when it flows out of it (discharge, energy
exported to the charger). Charged and discharged energy are counted separately.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

# Normalised open-circuit voltage of a Li-ion (NMC) pack: (SoC %, fraction of min..max voltage).
_OCV_SHAPE: tuple[tuple[float, float], ...] = (
    (0.0, 0.0),
    (5.0, 0.12),
    (10.0, 0.20),
    (20.0, 0.32),
    (30.0, 0.42),
    (40.0, 0.50),
    (50.0, 0.57),
    (60.0, 0.65),
    (70.0, 0.74),
    (80.0, 0.83),
    (90.0, 0.92),
    (100.0, 1.0),
)


@dataclass(frozen=True)
class BatteryParams:
    """Electrical parameters of a traction battery (defaults: a 400 V class, 60 kWh pack)."""

    capacity_kwh: float = 60.0
    ocv_min: float = 317.0  # V, open-circuit voltage at 0 % SoC
    ocv_max: float = 403.0  # V, open-circuit voltage at 100 % SoC
    internal_resistance: float = 0.08  # Ohm
    initial_soc: float = 20.0  # %

    def __post_init__(self) -> None:
        if not self.capacity_kwh > 0:
            raise ValueError(f"battery capacity must be > 0 kWh, got {self.capacity_kwh}")
        if not 0 < self.ocv_min < self.ocv_max:
            raise ValueError(f"need 0 < ocv_min < ocv_max, got {self.ocv_min}, {self.ocv_max}")
        if not self.internal_resistance > 0:
            raise ValueError(f"internal resistance must be > 0, got {self.internal_resistance}")
        if not 0 <= self.initial_soc <= 100:
            raise ValueError(f"initial SoC must be 0..100 %, got {self.initial_soc}")


class Battery:
    """A battery with OCV(SoC), internal resistance and energy-based SoC integration.

    Both directions: :meth:`charge` with a negative current discharges it (the SoC falls).
    """

    def __init__(self, params: BatteryParams | None = None) -> None:
        self.params = params or BatteryParams()
        self.soc: float = self.params.initial_soc
        self.energy_charged_wh: float = 0.0  # into the terminals since creation (>= 0)
        self.energy_discharged_wh: float = 0.0  # out of the terminals since creation (>= 0)

    @property
    def net_energy_wh(self) -> float:
        """Energy into the terminals since creation, minus the energy out of them [Wh]."""
        return self.energy_charged_wh - self.energy_discharged_wh

    def ocv(self) -> float:
        """Open-circuit voltage [V] at the present SoC (piecewise-linear curve)."""
        socs = [p[0] for p in _OCV_SHAPE]
        s = min(max(self.soc, 0.0), 100.0)
        i = max(1, bisect.bisect_left(socs, s))
        (s0, f0), (s1, f1) = _OCV_SHAPE[i - 1], _OCV_SHAPE[i]
        frac = f0 + (f1 - f0) * (s - s0) / (s1 - s0)
        p = self.params
        return p.ocv_min + frac * (p.ocv_max - p.ocv_min)

    def set_ocv(self, voltage: float) -> None:
        """Set the SoC whose open-circuit voltage is ``voltage`` (clamped to the curve)."""
        lo, hi = 0.0, 100.0
        for _ in range(40):  # the curve is monotonic: bisection to far below 0.01 %
            self.soc = (lo + hi) / 2.0
            if self.ocv() < voltage:
                lo = self.soc
            else:
                hi = self.soc

    def terminal_voltage(self, current: float) -> float:
        """Terminal voltage [V] while ``current`` [A] flows into the battery (< 0: out of it)."""
        return self.ocv() + current * self.params.internal_resistance

    def current_at(self, terminal_voltage: float) -> float:
        """Return the current [A] into the battery with its terminals at ``terminal_voltage``."""
        return (terminal_voltage - self.ocv()) / self.params.internal_resistance

    def charge(self, current: float, dt: float) -> float:
        """Integrate ``current`` [A] for ``dt`` [s] (time-scaled already); return energy [Wh].

        The energy is signed like the current: a negative current (discharge) returns a
        negative energy, lowers the SoC and adds to :attr:`energy_discharged_wh`. The SoC stays
        within 0..100 %.
        """
        energy_wh = self.terminal_voltage(current) * current * dt / 3600.0
        if energy_wh >= 0:
            self.energy_charged_wh += energy_wh
        else:
            self.energy_discharged_wh -= energy_wh
        self.soc = min(100.0, max(0.0, self.soc + energy_wh / (self.params.capacity_kwh * 10.0)))
        return energy_wh


@dataclass
class VehicleInlet:
    """What sits behind the charger's output connector.

    ``plugged_in`` and ``contactors_closed`` are set by the vehicle model; the battery is only
    seen by the charger output while both are true.
    """

    battery: Battery = field(default_factory=Battery)
    plugged_in: bool = False
    contactors_closed: bool = False

    @property
    def battery_connected(self) -> bool:
        """True if the battery is electrically connected to the charger output."""
        return self.plugged_in and self.contactors_closed
