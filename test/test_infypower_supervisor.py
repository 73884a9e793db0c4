"""Transcript tests of the InfyPower backend's decisions (ModuleSupervisor, pure).

Frames in, frames out, on a clock the test drives: discovery, start-up, sharing, the filters of
§1.5, status bits -> faults, the off confirmation, measurement validity, parameter checks.
"""

from __future__ import annotations

import math

import pytest

from evse_can_ros.config import ConfigError
from evse_can_ros.converter.infypower.params import InfyPowerParams, parse_addresses
from evse_can_ros.converter.infypower.protocol import (
    Command,
    Device,
    ErrorCode,
    InfyId,
    ModuleRating,
    ModuleStatus,
    decode_on_off,
    decode_set_vi,
    encode_after_diode,
    encode_capabilities,
    encode_module_count,
    encode_status,
    encode_vi,
    frame,
)
from evse_can_ros.converter.infypower.supervisor import (
    Link,
    ModuleCommunicationError,
    ModuleReadingError,
    ModuleSupervisor,
)
from evse_can_ros.core.power_stage import OFF, Mode, Setpoint
from evse_can_ros.protocol.frame import CanFrame

RATING = ModuleRating(1000.0, 150.0, 50.0, 30000.0)
FAST = {"poll_period": 0.2, "frame_spacing": 0.0, "reply_timeout": 1.0, "offline_timeout": 11.5}


def params(**kw: object) -> InfyPowerParams:
    return InfyPowerParams(**{**FAST, **kw})  # type: ignore[arg-type]


def reply(command: int, source: int, data: bytes, error: int = 0, device: int = 0x0A) -> CanFrame:
    return frame(InfyId(command, 0xF0, source, device, error), data)


def status_frame(
    address: int, on: bool = False, bits: tuple[tuple[int, int], ...] = ()
) -> CanFrame:
    s = ModuleStatus(0, 30, 0, 0, 0).with_bits(*bits)
    if not on:
        s = s.with_bits((6, 0))
    return reply(Command.READ_STATUS, address, encode_status(s))


def decoded(frames: list[CanFrame]) -> list[tuple[int, int, int, bytes]]:
    out = []
    for f in frames:
        i = InfyId.decode(f.arbitration_id)
        out.append((i.command, i.device, i.destination, f.data))
    return out


def commands(frames: list[CanFrame], command: int) -> dict[int, bytes]:
    return {dst: data for cmd, _dev, dst, data in decoded(frames) if cmd == command}


class Modules:
    """Answers the supervisor's reads like healthy modules (a tiny transcript responder)."""

    def __init__(self, sup: ModuleSupervisor, rating: dict[int, ModuleRating] | None = None):
        self.sup = sup
        self.on: dict[int, bool] = {}
        self.silent: set[int] = set()
        self.current: dict[int, float] = {}
        self.rating = rating or {}
        self.bits: dict[int, tuple[tuple[int, int], ...]] = {}
        self.ignore_off: set[int] = set()
        self.sent: list[CanFrame] = []

    def answer(self, frames: list[CanFrame], now: float) -> None:
        self.sent += frames
        for cmd, _dev, dst, data in decoded(frames):
            if dst in self.silent:
                continue
            if cmd == Command.SET_ON_OFF and not (dst in self.ignore_off and data[0] == 1):
                self.on[dst] = decode_on_off(data)
            elif cmd == Command.READ_STATUS:
                self.sup.on_frame(
                    status_frame(dst, self.on.get(dst, False), self.bits.get(dst, ())), now
                )
            elif cmd == Command.READ_VI:
                i = self.current.get(dst, 0.0) if self.on.get(dst) else 0.0
                self.sup.on_frame(reply(cmd, dst, encode_vi(400.0, i)), now)
            elif cmd == Command.READ_VI_AFTER_DIODE:
                self.sup.on_frame(reply(cmd, dst, encode_after_diode(400.0 + dst, 50.0)), now)
            elif cmd == Command.READ_CAPABILITIES:
                rating = self.rating.get(dst, RATING)
                self.sup.on_frame(reply(cmd, dst, encode_capabilities(rating)), now)

    def run(self, t0: float, seconds: float, dt: float = 0.02) -> float:
        t = t0
        while t < t0 + seconds - 1e-9:
            t = round(t + dt, 6)
            self.answer(self.sup.step(t), t)
        return t


def ready_rig(**kw: object) -> tuple[ModuleSupervisor, Modules, float]:
    sup = ModuleSupervisor(params(**kw))
    mods = Modules(sup)
    sup.wake()
    t = mods.run(0.0, 1.0)
    assert sup.ready, sup.events
    return sup, mods, t


# --- start-up and discovery -------------------------------------------------------------------


def test_startup_switches_every_module_off_before_anything_else() -> None:
    sup = ModuleSupervisor(
        params(module_addresses="0-2", frame_spacing=0.05, poll_period=0.6, reply_timeout=1.2)
    )
    first = decoded(sup.step(0.0))
    offs = [(cmd, dst, data[0]) for cmd, _dev, dst, data in first if cmd == Command.SET_ON_OFF]
    assert offs == [(Command.SET_ON_OFF, a, 1) for a in range(3)]
    assert first.index((Command.READ_STATUS, 0x0A, 0, bytes(8))) > 2  # reads after the offs
    # reads are paced: one per frame_spacing
    assert len(sup.step(0.02)) == 0
    assert len(sup.step(0.05)) == 1


def test_group_discovery_uses_the_count_of_the_group_master() -> None:
    sup = ModuleSupervisor(params(addressing="group", group_address=1, module_count=3))
    out = decoded(sup.step(0.0))
    assert out[0] == (Command.READ_MODULE_COUNT, Device.GROUP, 1, bytes(8))  # G3
    assert sup.modules == {}
    sup.on_frame(reply(Command.READ_MODULE_COUNT, 0, encode_module_count(3)), 0.01)  # G4
    assert sorted(sup.modules) == [0, 1, 2]
    offs = commands(sup.step(0.02), Command.SET_ON_OFF)
    assert offs == {a: bytes([1]) + bytes(7) for a in range(3)}  # all off first
    # the echoed device number (0x0B) is accepted too
    sup.on_frame(reply(Command.READ_MODULE_COUNT, 0, encode_module_count(4), device=0x0B), 0.3)
    assert sorted(sup.modules) == [0, 1, 2, 3]


def test_frames_not_for_us_do_not_change_state() -> None:
    sup = ModuleSupervisor(params(module_addresses="0,1"))
    sup.step(0.0)
    ignored = [
        frame(InfyId(0x17, 0xF8, 0x00, 0x0D, 1), bytes(8)),  # internal traffic (G16)
        status_frame(7),  # an unconfigured module on a shared bus
        frame(InfyId(Command.READ_STATUS, 0xF1, 0), encode_status(ModuleStatus())),  # other ctrl
        CanFrame(status_frame(0).arbitration_id, bytes(7)),  # short
        CanFrame(0x123, bytes(8), is_extended_id=False),
    ]
    for f in ignored:
        sup.on_frame(f, 0.01)
    assert all(m.link is Link.UNKNOWN for m in sup.modules.values())
    assert sup.foreign_frames == 1


# --- sharing ----------------------------------------------------------------------------------


def test_setpoint_split_equal_one_frame_per_module_never_a_group() -> None:
    sup, _mods, t = ready_rig(module_addresses="0-2")
    out = sup.command(Setpoint(Mode.REGULATE, 400.0, 150.0), t)
    vi = {a: decode_set_vi(d) for a, d in commands(out, Command.SET_VI).items()}
    assert vi == {a: (400.0, 50.0) for a in range(3)}  # G13
    assert commands(out, Command.SET_ON_OFF) == {a: bytes(8) for a in range(3)}
    assert all(dev == Device.MODULE for _c, dev, _d, _x in decoded(out))
    # setpoints before on-commands
    kinds = [c for c, *_ in decoded(out) if c in (Command.SET_VI, Command.SET_ON_OFF)]
    assert kinds == [Command.SET_VI] * 3 + [Command.SET_ON_OFF] * 3


def test_total_current_never_below_the_minimum() -> None:
    sup, _mods, t = ready_rig(module_addresses="0-1")
    out = sup.command(Setpoint(Mode.REGULATE, 500.0, 0.0), t)
    assert {a: decode_set_vi(d) for a, d in commands(out, Command.SET_VI).items()} == {
        0: (500.0, 0.5),
        1: (500.0, 0.5),
    }  # G14: 1 A total over 2 modules


def test_rated_sharing_respects_each_module_rating() -> None:
    small = ModuleRating(750.0, 200.0, 20.0, 15000.0)
    sup = ModuleSupervisor(params(module_addresses="0-1", current_sharing="rated"))
    mods = Modules(sup, {1: small})
    sup.wake()
    t = mods.run(0.0, 1.0)
    caps = sup.capabilities()
    assert (caps.min_voltage, caps.max_voltage, caps.max_current) == (200.0, 750.0, 70.0)
    out = sup.command(Setpoint(Mode.REGULATE, 400.0, 70.0), t)
    vi = {a: decode_set_vi(d) for a, d in commands(out, Command.SET_VI).items()}
    assert vi == {0: (400.0, 50.0), 1: (400.0, 20.0)}
    equal = ModuleSupervisor(params(module_addresses="0-1"))
    Modules(equal, {1: small}).run(0.0, 1.0)
    assert equal.capabilities().max_current == 40.0  # equal split: 2 x the smaller rating


def test_decreases_at_once_raises_at_most_every_setpoint_period() -> None:
    sup, _mods, t = ready_rig(module_addresses="0-1", setpoint_period=0.1)
    sup.command(Setpoint(Mode.REGULATE, 400.0, 20.0), t)
    up = sup.command(Setpoint(Mode.REGULATE, 400.0, 30.0), t + 0.02)
    assert commands(up, Command.SET_VI) == {}  # too soon
    down = sup.command(Setpoint(Mode.REGULATE, 400.0, 10.0), t + 0.04)
    assert {a: decode_set_vi(d)[1] for a, d in commands(down, Command.SET_VI).items()} == {
        0: 5.0,
        1: 5.0,
    }
    later = sup.command(Setpoint(Mode.REGULATE, 400.0, 30.0), t + 0.12)
    assert {a: decode_set_vi(d)[1] for a, d in commands(later, Command.SET_VI).items()} == {
        0: 15.0,
        1: 15.0,
    }


def test_no_output_before_wake_or_below_min_voltage() -> None:
    sup = ModuleSupervisor(params(module_addresses="0"))
    mods = Modules(sup)
    t = mods.run(0.0, 1.0)
    assert not sup.ready
    assert commands(sup.command(Setpoint(Mode.REGULATE, 400.0, 10.0), t), Command.SET_VI) == {}
    sup.wake()
    assert sup.module_targets() != {}
    sup.command(Setpoint(Mode.REGULATE, 100.0, 10.0), t)  # below the modules' 150 V
    assert sup.module_targets() == {}


# --- faults -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bit", "name"),
    [
        ((6, 4), "OVER_TEMPERATURE"),
        ((6, 1), "HARDWARE_FAULT"),
        ((5, 5), "UNDER_VOLTAGE_AC"),
        ((5, 6), "OVER_VOLTAGE_AC"),
        ((6, 5), "OVER_VOLTAGE_DC"),
        ((7, 0), "OVER_CURRENT"),
    ],
)
def test_an_error_bit_switches_every_module_off(bit: tuple[int, int], name: str) -> None:
    sup, mods, t = ready_rig(module_addresses="0-2")
    mods.answer(sup.command(Setpoint(Mode.REGULATE, 400.0, 30.0), t), t)
    assert all(mods.on.values())
    mods.bits[1] = (bit,)
    t = mods.run(t, 0.3)
    assert not any(mods.on.values())
    m = sup.measurement(t)
    assert "module 1:" in m.fault and f"[{name}]" in m.fault and not m.ready
    mods.answer(sup.command(Setpoint(Mode.REGULATE, 400.0, 30.0), t), t)
    assert not any(mods.on.values())  # refused while the error lasts
    mods.bits[1] = ()
    t = mods.run(t, 0.3)
    assert sup.measurement(t).fault == "" and sup.ready


def test_fan_fault_is_a_warning_only(caplog: pytest.LogCaptureFixture) -> None:
    sup, mods, t = ready_rig(module_addresses="0-1")
    mods.answer(sup.command(Setpoint(Mode.REGULATE, 400.0, 10.0), t), t)
    mods.bits[0] = ((6, 3),)
    t = mods.run(t, 0.5)
    assert sup.measurement(t).fault == "" and all(mods.on.values())
    assert caplog.text.count("fan fault") == 1  # logged once


def test_rejected_setpoint_is_a_vendor_error() -> None:
    sup, mods, t = ready_rig(module_addresses="0-1")
    mods.answer(sup.command(Setpoint(Mode.REGULATE, 400.0, 10.0), t), t)
    sup.on_frame(CanFrame(0x0E9CF001, bytes(8)), t)  # G15: error 3 to 0x1C from module 1
    mods.answer(sup.step(t + 0.02), t + 0.02)
    assert "SET_VI rejected (data invalid)" in sup.measurement(t).fault
    assert not any(mods.on.values())
    sup.sleep()
    sup.wake()  # a new session forgets it
    sup.step(t + 0.04)
    assert sup.fault_text() == ""


def test_off_must_be_confirmed_by_status_and_current() -> None:
    sup, mods, t = ready_rig(module_addresses="0-1", off_confirm_timeout=0.5)
    mods.current = {0: 10.0, 1: 10.0}
    mods.answer(sup.command(Setpoint(Mode.REGULATE, 400.0, 20.0), t), t)
    mods.ignore_off.add(1)  # module 1 stays on whatever we say
    mods.answer(sup.stop(), t)
    t = mods.run(t, 0.3)
    m0, m1 = sup.modules[0], sup.modules[1]
    assert m0.confirmed_off() and not m1.confirmed_off()
    assert sup.measurement(t).fault == ""  # not yet: within off_confirm_timeout
    t = mods.run(t, 0.4)
    assert "module 1: output not confirmed off" in sup.measurement(t).fault
    resent = [d for c, _v, dst, d in decoded(mods.sent) if c == Command.SET_ON_OFF and dst == 1]
    assert len(resent) >= 3  # the off is repeated


def test_module_starting_is_not_usable() -> None:
    sup = ModuleSupervisor(params(module_addresses="0"))
    sup.wake()
    sup.step(0.0)
    sup.on_frame(reply(Command.READ_STATUS, 0, bytes(8), error=ErrorCode.STARTING), 0.01)
    sup.on_frame(reply(Command.READ_CAPABILITIES, 0, encode_capabilities(RATING)), 0.01)
    assert sup.modules[0].link is Link.ONLINE and not sup.ready
    assert sup.capabilities().max_current == 0.0


# --- measurement ------------------------------------------------------------------------------


def test_measurement_highest_voltage_sum_of_currents() -> None:
    sup, mods, t = ready_rig(module_addresses="0-2")
    mods.current = {0: 10.0, 1: 11.0, 2: 12.0}
    mods.answer(sup.command(Setpoint(Mode.REGULATE, 400.0, 33.0), t), t)
    t = mods.run(t, 0.5)
    m = sup.measurement(t)
    assert m.voltage == pytest.approx(402.0, abs=0.05)  # the highest after-diode voltage
    assert m.current == pytest.approx(33.0)
    assert m.output_enabled and m.ready
    assert m.insulation_resistance_ohm == 0.0  # insulation_monitor none: never "good"


def test_external_insulation_monitor_reports_good() -> None:
    sup, _mods, t = ready_rig(module_addresses="0", insulation_monitor="external_pass_fail")
    assert sup.measurement(t).insulation_resistance_ohm == math.inf


@pytest.mark.parametrize(
    ("vi", "match"),
    [((math.nan, 1.0), "nan"), ((400.0, math.inf), "inf"), ((1500.0, 1.0), "beyond its rating")],
)
def test_impossible_readings_raise(vi: tuple[float, float], match: str) -> None:
    sup, _mods, t = ready_rig(module_addresses="0-1")
    sup.on_frame(reply(Command.READ_VI, 1, encode_vi(*vi)), t)
    with pytest.raises(ModuleReadingError, match=match):
        sup.measurement(t)


def test_start_up_grace_then_communication_loss() -> None:
    sup = ModuleSupervisor(params(module_addresses="0-1"))
    sup.step(0.0)
    m = sup.measurement(0.5)
    assert (m.voltage, m.current, m.ready) == (0.0, 0.0, False)
    sup.step(0.6)
    with pytest.raises(ModuleCommunicationError, match="no InfyPower module answers"):
        sup.measurement(1.1)


def test_all_modules_silent_is_a_communication_loss_then_recovery() -> None:
    sup, mods, t = ready_rig(module_addresses="0-1")
    mods.silent = {0, 1}
    t = mods.run(t, 1.1)
    assert all(m.link is Link.STALE for m in sup.modules.values())
    with pytest.raises(ModuleCommunicationError):
        sup.measurement(t)
    mods.silent = set()
    t = mods.run(t, 1.0)
    assert sup.measurement(t).ready


def test_a_pause_of_the_caller_is_not_a_module_fault() -> None:
    sup, mods, t = ready_rig(module_addresses="0-1")
    t += 30.0  # nobody called: no reads were sent, so nothing was left unanswered
    mods.answer(sup.step(t), t)
    assert all(m.link is Link.ONLINE for m in sup.modules.values())
    assert sup.measurement(t).fault == ""


# --- parameters -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"offline_timeout": 12.0, "reply_timeout": 3.0}, "must exceed the modules' 10 s"),
        ({"reply_timeout": 1.0, "poll_period": 1.0}, "two poll periods"),
        ({"min_modules": 5}, "exceeds the 4 expected"),
        ({"module_addresses": "0-3,63"}, "63 = 0x3F is the broadcast"),
        ({"module_addresses": "0,1,1"}, "repeat"),
        ({"module_addresses": "a,b"}, "must look like"),
        ({"module_addresses": ""}, "at least one address"),
        ({"address_zero_is_broadcast": True}, "address 0 is refused"),
        ({"addressing": "group", "address_zero_is_broadcast": True}, "includes 0"),
        ({"frame_spacing": 0.2, "poll_period": 1.0}, "poll round of 4 modules"),
        ({"controller_address": 0xF8}, "above the maximum"),
        ({"current_sharing": "random"}, "not one of"),
    ],
)
def test_unsafe_or_malformed_parameters_are_refused(kw: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        InfyPowerParams(**kw)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_address_lists() -> None:
    assert parse_addresses("0-3") == (0, 1, 2, 3)
    assert parse_addresses("0x10, 0x11,5") == (16, 17, 5)
    assert InfyPowerParams(module_addresses="1-2,5").addresses() == (1, 2, 5)
    assert InfyPowerParams(addressing="group").addresses() == ()


def test_off_commands_after_stop_until_confirmed_then_quiet() -> None:
    sup, mods, t = ready_rig(module_addresses="0-1")
    mods.answer(sup.command(Setpoint(Mode.REGULATE, 400.0, 10.0), t), t)
    out = sup.stop()
    assert commands(out, Command.SET_ON_OFF) == {
        0: bytes([1]) + bytes(7),
        1: bytes([1]) + bytes(7),
    }
    assert sup.stop() == []  # repeated stop() calls send nothing new
    mods.answer(out, t)
    assert not any(mods.on.values())
    t = mods.run(t, 1.0)
    assert all(m.confirmed_off() for m in sup.modules.values())
    n = len(mods.sent)
    t = mods.run(t, 2.0)
    assert commands(mods.sent[n:], Command.SET_ON_OFF) == {}  # confirmed: no repeats
    assert commands(sup.command(OFF, t), Command.SET_ON_OFF) == {}
