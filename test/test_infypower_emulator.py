"""The InfyPower module emulator (pure): the behaviour the digest asks of it (§7.2)."""

from __future__ import annotations

import math

import pytest

from evse_can_ros.config import ConfigError
from evse_can_ros.converter.infypower.emulator import EmulatorParams, ModuleEmulator
from evse_can_ros.converter.infypower.protocol import (
    Command,
    Device,
    ErrorCode,
    InfyId,
    decode_after_diode,
    decode_capabilities,
    decode_module_count,
    decode_status,
    decode_vi,
    frame,
    module_count_request,
    on_off_request,
    read_request,
    set_vi_request,
)
from evse_can_ros.core.battery import Battery, BatteryParams, VehicleInlet
from evse_can_ros.protocol.frame import CanFrame


def emulator(**params: object) -> ModuleEmulator:
    params.setdefault("modules", 3)
    return ModuleEmulator(EmulatorParams(**params), VehicleInlet(plugged_in=True))  # type: ignore[arg-type]


def status(emu: ModuleEmulator, address: int, now: float) -> tuple[int, ...]:
    (reply,) = emu.receive(read_request(Command.READ_STATUS, address), now)
    s = decode_status(reply.data)
    return s.byte5, s.byte6, s.byte7


def run(emu: ModuleEmulator, t0: float, seconds: float, keep_alive: bool = True) -> float:
    """Advance in 10 ms steps, polling every module's status every 0.5 s (keep-alive)."""
    t = t0
    while t < t0 + seconds - 1e-9:
        t = round(t + 0.01, 6)
        emu.advance(t)
        if keep_alive and round(t * 100) % 50 == 0:
            for a in emu.modules:
                emu.receive(read_request(Command.READ_STATUS, a), t)
    return t


def switch_on(emu: ModuleEmulator, volts: float, amps_each: float, now: float) -> None:
    for a in emu.modules:
        emu.receive(set_vi_request(a, volts, amps_each), now)
        emu.receive(on_off_request(a, True), now)


# --- addressing and reads ---------------------------------------------------------------------


def test_reply_swaps_addresses_keeps_command_dlc_8() -> None:
    emu = emulator()
    (reply,) = emu.receive(read_request(Command.READ_VI, 2), 0.0)
    ident = InfyId.decode(reply.arbitration_id)
    assert (ident.command, ident.source, ident.destination, ident.device, ident.error) == (
        Command.READ_VI,
        2,
        0xF0,
        Device.MODULE,
        0,
    )
    assert reply.is_extended_id and len(reply.data) == 8
    assert emu.receive(read_request(Command.READ_VI, 9), 0.0) == []  # nobody at 9


def test_group_master_answers_the_module_count_once() -> None:
    emu = emulator(modules=4, group=1)
    replies = emu.receive(module_count_request(1), 0.0)
    assert len(replies) == 1
    ident = InfyId.decode(replies[0].arbitration_id)
    assert (ident.source, ident.device) == (0, Device.GROUP)  # lowest address, echoed device
    assert decode_module_count(replies[0].data) == 4
    assert emu.receive(module_count_request(2), 0.0) == []  # another group
    emu.inject(0, "no_reply")
    (reply,) = emu.receive(module_count_request(1), 0.1)
    assert InfyId.decode(reply.arbitration_id).source == 1  # the next module answers


def test_reply_device_is_0x0a_without_echo() -> None:
    emu = emulator(group=1, echo_device=False)
    (reply,) = emu.receive(module_count_request(1), 0.0)
    assert InfyId.decode(reply.arbitration_id).device == Device.MODULE


def test_reads_carry_the_rating_and_output() -> None:
    emu = emulator(max_voltage=750.0, min_voltage=200.0, max_current=40.0, rated_power=20000.0)
    (caps,) = emu.receive(read_request(Command.READ_CAPABILITIES, 1), 0.0)
    r = decode_capabilities(caps.data)
    assert (r.max_voltage, r.min_voltage, r.rated_power) == (750.0, 200.0, 20000.0)
    assert r.max_current == pytest.approx(40.0)
    (diode,) = emu.receive(read_request(Command.READ_VI_AFTER_DIODE, 1), 0.0)
    assert decode_after_diode(diode.data) == (0.0, pytest.approx(40.0))
    assert status(emu, 1, 0.0) == (0, 0x01, 0)  # DC side off


def test_short_read_and_unknown_command_get_error_codes() -> None:
    emu = emulator(short_read_error=3)
    short = CanFrame(read_request(Command.READ_STATUS, 0).arbitration_id, bytes(4))
    (reply,) = emu.receive(short, 0.0)
    assert InfyId.decode(reply.arbitration_id).error == ErrorCode.DATA_INVALID
    (reply,) = emu.receive(frame(InfyId(0x06, 0, 0xF0)), 0.0)
    assert InfyId.decode(reply.arbitration_id).error == ErrorCode.COMMAND_INVALID


def test_setpoints_are_not_acknowledged_unless_asked() -> None:
    emu = emulator()
    assert emu.receive(set_vi_request(0, 400.0, 10.0), 0.0) == []
    assert emu.receive(on_off_request(0, True), 0.0) == []
    acked = emulator(ack_setpoints=True)
    (ack,) = acked.receive(set_vi_request(0, 400.0, 10.0), 0.0)
    assert InfyId.decode(ack.arbitration_id).error == 0
    (nak,) = emulator().receive(set_vi_request(0, 2000.0, 10.0), 0.0)  # above the rating
    assert InfyId.decode(nak.arbitration_id).error == ErrorCode.DATA_INVALID


def test_frames_from_modules_and_internal_traffic_are_ignored() -> None:
    emu = emulator(internal_noise=True)
    noise = emu.advance(0.0)
    assert noise and all(f.arbitration_id & 0x1FFFFF00 == 0x0757F800 for f in noise)
    for f in noise:
        assert emu.receive(f, 0.01) == []


# --- output -----------------------------------------------------------------------------------


def test_on_off_is_reflected_in_b6_0_and_the_voltage_ramps() -> None:
    emu = emulator(voltage_slope=1000.0)
    switch_on(emu, 500.0, 5.0, 0.0)
    assert status(emu, 0, 0.0)[1] & 0x01 == 0
    t = run(emu, 0.0, 0.25)
    assert emu.voltage == pytest.approx(250.0, abs=15.0)
    run(emu, t, 0.5)
    assert emu.voltage == pytest.approx(500.0, abs=1.0)
    (vi,) = emu.receive(read_request(Command.READ_VI, 1), 1.0)
    assert decode_vi(vi.data)[0] == pytest.approx(500.0, abs=1.0)
    emu.receive(on_off_request(1, False), 1.0)
    assert status(emu, 1, 1.0)[1] & 0x01 == 1


def test_battery_current_is_shared_in_proportion_to_the_limits() -> None:
    inlet = VehicleInlet(Battery(BatteryParams(initial_soc=50.0)), True, True)
    emu = ModuleEmulator(EmulatorParams(modules=2, current_slope=0.0, voltage_slope=0.0), inlet)
    emu.receive(set_vi_request(0, 500.0, 30.0), 0.0)
    emu.receive(set_vi_request(1, 500.0, 10.0), 0.0)
    for a in (0, 1):
        emu.receive(on_off_request(a, True), 0.0)
    emu.advance(0.1)
    assert emu.current == pytest.approx(40.0)  # (500 - OCV) / R is far above 40 A
    assert emu.modules[0].current == pytest.approx(30.0)
    assert emu.modules[1].current == pytest.approx(10.0)
    assert emu.voltage == pytest.approx(inlet.battery.ocv() + 40.0 * 0.08)
    assert inlet.battery.energy_charged_wh == 0.0  # a shared battery is the vehicle's to count


def test_group_setpoint_makes_every_module_deliver_the_full_current() -> None:
    """Pitfall 1: a backend that addresses a group would multiply the current."""
    emu = emulator(modules=3, group=1)
    emu.receive(
        frame(InfyId(Command.SET_VI, 1, 0xF0, Device.GROUP), set_vi_request(0, 400, 30).data), 0
    )
    for a in emu.modules:
        emu.receive(on_off_request(a, True), 0.0)
    assert emu.current_limit() == pytest.approx(90.0)
    assert all(m.group_setpoints == 1 for m in emu.modules.values())


def test_broadcast_and_address_zero() -> None:
    emu = emulator(modules=2)
    emu.receive(frame(InfyId(Command.SET_ON_OFF, 0x3F, 0xF0), bytes(8)), 0.0)
    assert emu.output_on and all(m.on for m in emu.modules.values())
    zero = emulator(modules=2, first_address=1, address_zero_is_broadcast=True)
    zero.receive(on_off_request(0, True), 0.0)
    assert all(m.on for m in zero.modules.values())


def test_own_battery_is_charged() -> None:
    emu = ModuleEmulator(EmulatorParams(modules=1, battery=True, initial_soc=50.0))
    switch_on(emu, 450.0, 50.0, 0.0)
    run(emu, 0.0, 2.0)
    assert emu.inlet.battery.energy_charged_wh > 0
    assert emu.current == pytest.approx(50.0)


# --- cut-off and faults -----------------------------------------------------------------------


def test_cutoff_after_10_s_of_silence_and_resume() -> None:
    emu = emulator(modules=2)
    switch_on(emu, 400.0, 5.0, 0.0)
    t = run(emu, 0.0, 9.9, keep_alive=False)
    assert all(m.on for m in emu.modules.values())
    t = run(emu, t, 0.2, keep_alive=False)
    assert not emu.output_on
    # the first frame it hears again clears B6.7 (the reply already shows it cleared)
    _, b6, _ = status(emu, 0, t)
    assert b6 & 0x80 == 0 and b6 & 0x01 == 1
    assert emu.modules[1].comm_alarm  # still silent


@pytest.mark.parametrize(("rearm", "stays_on"), [("addressed", False), ("any", True)])
def test_which_frames_rearm_the_cutoff(rearm: str, stays_on: bool) -> None:
    emu = emulator(modules=2, cutoff_rearm=rearm)
    switch_on(emu, 400.0, 5.0, 0.0)
    t = 0.0
    while t < 15.0:  # only module 0 is addressed
        t = round(t + 0.5, 6)
        emu.receive(read_request(Command.READ_STATUS, 0), t)
    assert emu.modules[0].on
    assert emu.modules[1].on is stays_on


def test_kept_alive_modules_stay_on() -> None:
    emu = emulator()
    switch_on(emu, 400.0, 5.0, 0.0)
    run(emu, 0.0, 30.0)
    assert all(m.on for m in emu.modules.values())


@pytest.mark.parametrize(
    ("fault", "bits"),
    [
        ("over_temperature", (6, 0x10)),
        ("hardware_fault", (6, 0x02)),
        ("ac_input_fault", (5, 0xA0)),
    ],
)
def test_protections_switch_off_and_set_their_bits(fault: str, bits: tuple[int, int]) -> None:
    emu = emulator()
    switch_on(emu, 400.0, 5.0, 0.0)
    emu.inject(1, fault)
    b5, b6, _ = status(emu, 1, 0.1)
    byte, mask = bits
    assert (b5 if byte == 5 else b6) & mask == mask
    assert b6 & 0x01  # output off
    emu.receive(on_off_request(1, True), 0.2)
    assert not emu.modules[1].on  # refuses while protected
    emu.inject(1, fault, on=False)
    emu.receive(on_off_request(1, True), 0.3)
    assert emu.modules[1].on


def test_over_temperature_shows_in_the_temperature_byte() -> None:
    emu = emulator()
    emu.inject(0, "over_temperature")
    (reply,) = emu.receive(read_request(Command.READ_STATUS, 0), 0.0)
    assert decode_status(reply.data).temperature == 85


def test_drop_out_is_deaf_and_mute_and_cuts_itself_off() -> None:
    emu = emulator()
    switch_on(emu, 400.0, 5.0, 0.0)
    emu.inject(2, "drop_out")
    assert emu.receive(read_request(Command.READ_STATUS, 2), 0.1) == []
    emu.receive(on_off_request(2, False), 0.2)
    assert emu.modules[2].on  # did not hear the off
    run(emu, 0.2, 10.5)
    assert not emu.modules[2].on and emu.modules[0].on


def test_no_reply_module_hears_and_obeys() -> None:
    emu = emulator()
    switch_on(emu, 400.0, 5.0, 0.0)
    emu.inject(2, "no_reply")
    assert emu.receive(read_request(Command.READ_STATUS, 2), 0.1) == []
    run(emu, 0.1, 12.0)
    assert emu.modules[2].on  # its cut-off never fires: it hears us
    emu.receive(on_off_request(2, False), 12.2)
    assert not emu.modules[2].on


def test_nan_reading_and_starting() -> None:
    emu = emulator()
    emu.inject(0, "nan_reading")
    (reply,) = emu.receive(read_request(Command.READ_VI, 0), 0.0)
    assert math.isnan(decode_vi(reply.data)[0])
    emu.inject(1, "starting")
    (reply,) = emu.receive(read_request(Command.READ_STATUS, 1), 0.0)
    assert InfyId.decode(reply.arbitration_id).error == ErrorCode.STARTING
    with pytest.raises(ValueError, match="unknown module fault"):
        emu.inject(0, "gremlins")


def test_silence_mutes_the_whole_bus() -> None:
    emu = emulator()
    emu.silence()
    assert emu.receive(read_request(Command.READ_STATUS, 0), 0.0) == []
    assert emu.receive(module_count_request(0), 0.0) == []
    emu.silence(False)
    assert len(emu.receive(read_request(Command.READ_STATUS, 0), 0.1)) == 1


def test_scheduled_drop_out_after_charging_starts_and_returns() -> None:
    inlet = VehicleInlet(Battery(BatteryParams(initial_soc=50.0)), True, True)
    p = EmulatorParams(
        modules=2, fault="drop_out", fault_delay=1.0, fault_duration=2.0, current_slope=0.0
    )
    emu = ModuleEmulator(p, inlet)
    run(emu, 0.0, 5.0)
    assert "drop_out" not in emu.modules[1].faults  # no current yet: not armed
    switch_on(emu, 500.0, 20.0, 5.0)
    run(emu, 5.0, 1.5)
    assert "drop_out" in emu.modules[1].faults and p.fault_module == -1
    run(emu, 6.5, 2.0)
    assert "drop_out" not in emu.modules[1].faults


def test_timing_statistics() -> None:
    emu = emulator()
    for t in (0.0, 0.01, 0.1, 0.5):
        emu.receive(read_request(Command.READ_STATUS, 0), t)
    assert emu.gaps == {"< 50 ms": 1, "50-200 ms": 1, "> 200 ms": 1}


def test_bad_parameters_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="exceed 62"):
        EmulatorParams(modules=10, first_address=60)
    with pytest.raises(ConfigError, match="first_address 1"):
        EmulatorParams(address_zero_is_broadcast=True)
    with pytest.raises(ConfigError, match="fault_module 9"):
        EmulatorParams(modules=2, fault="drop_out", fault_module=9)
