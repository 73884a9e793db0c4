"""``evse-can-ros plot``: a PNG of a charge session from its CAN frames (no rclpy).

The frames, from a bag or a CAN log (see transport.sessionlog), are decoded with the codec:
``Power_Modules_Status`` gives the measured voltage and current, ``Charging_Loop`` the requests
and the SoC, ``Advantics_Controller_Status`` the controller state (coloured bands).
``Emergency_Stop``, ``Charge_Session_Finished`` (Rushed_Stop), heartbeat gaps and
``System_Enable`` drops are marked as faults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from evse_can_ros.protocol import (
    AdvanticsControllerStatus,
    ChargeSessionFinished,
    ChargingLoop,
    Codec,
    ControllerState,
    DcPowerControl,
    EmergencyStop,
    EvInformationBattery,
    NewChargeSession,
    NewChargeSessionV3,
    Permission,
    PowerFunction,
    PowerModulesStatus,
    ProtocolError,
    SessionEnd,
)
from evse_can_ros.transport.sessionlog import Session

HEARTBEAT_GAP = 0.2  # s (spec 6.13)

STATE_COLOURS = {
    ControllerState.INITIALISING: "#d9d9d9",
    ControllerState.WAITING_FOR_PEV: "#f0f0f0",
    ControllerState.NEGOTIATING_CONNECTION: "#c6dbef",
    ControllerState.CONNECTED_WITH_FULL_INFO: "#9ecae1",
    ControllerState.INSULATION_TEST: "#fdd0a2",
    ControllerState.PRECHARGE: "#fdae6b",
    ControllerState.WAITING_FOR_CHARGE: "#c7e9c0",
    ControllerState.CHARGING: "#a1d99b",
    ControllerState.ENDING_CHARGE: "#dadaeb",
    ControllerState.WELDING_DETECTION: "#bcbddc",
    ControllerState.CLOSING_COMMUNICATION: "#9e9ac8",
    ControllerState.CCS_AUTHORISATION_PROCESS: "#fff7bc",
    ControllerState.NOT_AVAILABLE: "#bdbdbd",
    ControllerState.CHARGE_PAUSE: "#e5f5e0",
}


@dataclass
class Series:
    """Decoded time series of one pistol (times in seconds from the first frame)."""

    pistol: int
    t_status: list[float] = field(default_factory=list)
    voltage: list[float] = field(default_factory=list)
    current: list[float] = field(default_factory=list)
    t_request: list[float] = field(default_factory=list)
    target_voltage: list[float] = field(default_factory=list)
    target_current: list[float] = field(default_factory=list)
    target_current_min: list[float] = field(default_factory=list)  # v3 Range_Mode lower end
    t_soc: list[float] = field(default_factory=list)
    soc: list[float] = field(default_factory=list)
    states: list[tuple[float, float, ControllerState]] = field(default_factory=list)
    faults: list[tuple[float, str]] = field(default_factory=list)
    protocol: str = ""
    session_end: str = ""
    undecodable: int = 0

    @property
    def energy_kwh(self) -> float:
        """Energy delivered to the vehicle, trapezoidal integral of V*I > 0 [kWh]."""
        return self._energy(1.0)

    @property
    def energy_exported_kwh(self) -> float:
        """Energy taken from the vehicle (v3 V2G), <= 0 [kWh]."""
        return -self._energy(-1.0)

    def _energy(self, sign: float) -> float:
        e = 0.0
        for i in range(1, len(self.t_status)):
            dt = self.t_status[i] - self.t_status[i - 1]
            p = (self.voltage[i] * self.current[i] + self.voltage[i - 1] * self.current[i - 1]) / 2
            e += max(sign * p, 0.0) * dt
        return e / 3.6e6

    @property
    def duration(self) -> float:
        """Seconds between the first and the last decoded frame."""
        times = self.t_status + self.t_request + [s[1] for s in self.states]
        return max(times) if times else 0.0


def decode_series(
    session: Session, pistol: int | None = None, codec: Codec | None = None
) -> Series:
    """Decode the session's frames of ``pistol`` (default: the most frequent index).

    Long: one pass over the frames, one branch per message the plot shows.
    """
    codec = codec or session.codec()
    frames = [
        tf for tf in session.frames if tf.frame.is_extended_id and not tf.frame.is_error_frame
    ]
    if pistol is None:
        pistol = session.main_pistol()
    s = Series(pistol)
    t0 = frames[0].t if frames else 0.0
    state: ControllerState | None = None
    state_start = 0.0
    last_hb: float | None = None
    last_enable: Permission | None = None
    in_estop = False
    last_estop = -math.inf
    for tf in frames:
        if tf.frame.arbitration_id >> 24 != pistol:
            continue
        t = tf.t - t0
        try:
            msg = codec.decode(tf.frame, pistol)
        except ProtocolError:
            s.undecodable += 1
            continue
        if isinstance(msg, PowerModulesStatus):
            s.t_status.append(t)
            s.voltage.append(msg.present_voltage)
            s.current.append(msg.present_current)
            if (
                last_enable == Permission.ALLOWED
                and msg.system_enable != Permission.ALLOWED
                and state not in (None, ControllerState.WAITING_FOR_PEV)
                and not s.session_end  # the session is over: the power side stands down
            ):
                s.faults.append((t, "System_Enable 0"))
            last_enable = msg.system_enable
        elif isinstance(msg, ChargingLoop):
            s.t_request.append(t)
            s.target_voltage.append(msg.target_voltage)
            s.target_current.append(max(msg.target_current, 0.0))
            s.target_current_min.append(max(msg.target_current, 0.0))
            if not msg.is_standby:
                s.t_soc.append(t)
                s.soc.append(float(msg.state_of_charge))
        elif isinstance(msg, DcPowerControl):  # v3: signed, the range's upper end
            if msg.power_function == PowerFunction.POWER_TRANSFER:
                s.t_request.append(t)
                s.target_voltage.append(msg.target_voltage)
                s.target_current.append(msg.current_range_max)
                s.target_current_min.append(msg.current_range_min)
        elif isinstance(msg, EvInformationBattery) and msg.present_state_of_charge:
            s.t_soc.append(t)
            s.soc.append(float(msg.present_state_of_charge))
        elif isinstance(msg, NewChargeSessionV3):
            s.protocol = msg.communication_protocol.label
            s.session_end = ""
        elif isinstance(msg, NewChargeSession):
            s.protocol = msg.communication_protocol.label
            s.session_end = ""
            if not s.soc:
                s.t_soc.append(t)
                s.soc.append(float(msg.state_of_charge))
        elif isinstance(msg, AdvanticsControllerStatus):
            if last_hb is not None and t - last_hb > HEARTBEAT_GAP:
                s.faults.append((last_hb + HEARTBEAT_GAP, "heartbeat lost"))
            last_hb = t
            if msg.state != state:
                if state is not None:
                    s.states.append((state_start, t, state))
                state, state_start = msg.state, t
        elif isinstance(msg, EmergencyStop):
            if not in_estop or t - last_estop > 0.5:
                s.faults.append((t, f"Emergency_Stop {msg.origin.label}"))
            in_estop, last_estop = True, t
        elif isinstance(msg, ChargeSessionFinished):
            s.session_end = msg.state.label
            if msg.state == SessionEnd.RUSHED_STOP:
                s.faults.append((t, "Rushed_Stop"))
    if state is not None:
        end = max(state_start, s.duration)
        s.states.append((state_start, end, state))
    return s


def plot_session(
    session: Session, output: str | Path, pistol: int | None = None, title: str | None = None
) -> Series:
    """Write the session plot to ``output`` (PNG); return the decoded series.

    Long: matplotlib calls for the four panels, in drawing order.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    s = decode_series(session, pistol)
    fig, axes = plt.subplots(
        3, 1, figsize=(12, 8.5), sharex=True, gridspec_kw={"height_ratios": [3, 3, 2]}
    )
    ax_v, ax_i, ax_soc = axes
    for ax in axes:
        for start, end, state in s.states:
            ax.axvspan(start, end, color=STATE_COLOURS.get(state, "#ffffff"), alpha=0.6, lw=0)
        for t, _ in s.faults:
            ax.axvline(t, color="#d62728", lw=1.2, ls="--")
        ax.grid(True, alpha=0.3)
    for ax, name, unit, color, measured, requested in (
        (ax_v, "voltage", "V", "#1f77b4", s.voltage, s.target_voltage),
        (ax_i, "current", "A", "#ff7f0e", s.current, s.target_current),
    ):
        ax.plot(s.t_status, measured, color=color, lw=1.5, label=f"measured {name}")
        if s.t_request:
            ax.step(
                s.t_request, requested, where="post", color=color, lw=0.8, ls=":",
                label=f"requested {name}",
            )  # fmt: skip
        ax.set_ylabel(f"{name} [{unit}]")
    if s.t_request and s.target_current_min != s.target_current:  # a v3 range: the band
        ax_i.fill_between(
            s.t_request, s.target_current_min, s.target_current, step="post", color="#ff7f0e",
            alpha=0.12, lw=0, label="requested range",
        )  # fmt: skip
    ax_p = ax_i.twinx()
    ax_p.plot(
        s.t_status,
        [v * i / 1000 for v, i in zip(s.voltage, s.current, strict=True)],
        color="#2ca02c",
        lw=1.0,
        alpha=0.8,
        label="power",
    )
    ax_p.set_ylabel("power [kW]")
    ax_soc.plot(s.t_soc, s.soc, color="#9467bd", lw=1.8, marker=".", ms=3, label="state of charge")
    ax_soc.set_ylabel("SoC [%]")
    ax_soc.set_ylim(0, 100)
    ax_soc.set_xlabel("time [s]")
    for t, text in s.faults:
        ax_v.annotate(
            text,
            (t, 1.0),
            xycoords=("data", "axes fraction"),
            rotation=90,
            va="top",
            ha="right",
            fontsize=8,
            color="#d62728",
        )
    ax_v.legend(loc="upper left", fontsize=8)
    lines = ax_i.get_legend_handles_labels()
    more = ax_p.get_legend_handles_labels()
    ax_i.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left", fontsize=8)
    seen = [state for _, _, state in s.states]
    bands = [
        Patch(color=STATE_COLOURS.get(st, "#ffffff"), alpha=0.6, label=st.label)
        for st in dict.fromkeys(seen)
    ]
    if bands:
        fig.legend(
            handles=bands,
            loc="lower center",
            ncol=min(len(bands), 6),
            fontsize=8,
            title="controller state",
            title_fontsize=8,
            frameon=False,
        )
    heading = title or f"{Path(session.path).name}: pistol {s.pistol}"
    details = [s.protocol or "protocol unknown", f"{s.energy_kwh:.2f} kWh", f"{s.duration:.0f} s"]
    if s.energy_exported_kwh:
        details.insert(2, f"{s.energy_exported_kwh:.2f} kWh exported")
    if s.session_end:
        details.append(s.session_end)
    fig.suptitle(f"{heading}\n{', '.join(details)}", fontsize=11)
    fig.tight_layout(rect=(0, 0.07 if bands else 0, 1, 1))
    fig.savefig(str(output), dpi=110)
    plt.close(fig)
    return s
