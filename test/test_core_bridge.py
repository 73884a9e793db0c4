"""Bridge core transcripts: frames in, frames out, on a fake clock (spec 6.1-6.5, 9-11)."""

from __future__ import annotations

import itertools
import math

import pytest

from evse_can_ros.config import ConfigError
from evse_can_ros.core.bridge import HOUSEKEEPING_PERIOD, BridgeConfig, BridgeCore, RxKind
from evse_can_ros.protocol import (
    AdmCsSeccOutputs,
    AdvanticsControllerStatus,
    ButtonState,
    CanFrame,
    ChargeSessionFinished,
    ChargingLoop,
    Codec,
    Completion,
    ControllerState,
    Permission,
    PowerModulesLimits,
    PowerModulesStatus,
    SequenceControl,
    SessionEnd,
    Validity,
)

S = ControllerState


def status(voltage: float = 400.0, enable: Permission = Permission.ALLOWED) -> PowerModulesStatus:
    return PowerModulesStatus(voltage, 10.0, 35.0, 30.0, enable, 510.0)


def hb(codec: Codec, state: ControllerState, pistol: int = 1) -> CanFrame:
    return codec.encode(AdvanticsControllerStatus(state), pistol)


def names(outgoing: list) -> list[str]:  # type: ignore[type-arg]
    return [o.message.NAME for o in outgoing]


def run(core: BridgeCore, t0: float, t1: float, dt: float = 0.001) -> list[tuple[float, object]]:
    """Poll like the node's transmit loop; return (time, message) of every frame sent."""
    sent = []
    t = t0
    while t <= t1 + 1e-9:
        out, _ = core.poll(t)
        sent += [(t, o.message) for o in out]
        t = round(t + dt, 6)
    return sent


@pytest.fixture
def core(codec: Codec) -> BridgeCore:
    return BridgeCore(codec, BridgeConfig(pistol_index=1))


# --- receive ------------------------------------------------------------------------------


def test_decodes_controller_messages_of_our_pistol(core: BridgeCore, codec: Codec) -> None:
    r = core.on_frame(0.0, codec.encode(ChargingLoop(410.5, 150.0, 63), 1))
    assert r.kind is RxKind.MESSAGE and r.message == ChargingLoop(410.5, 150.0, 63)


def test_foreign_pistol_frames_have_no_effect(core: BridgeCore, codec: Codec) -> None:  # PM-02
    r = core.on_frame(0.0, hb(codec, S.CHARGING, pistol=2))
    assert r.kind is RxKind.FOREIGN and core.controller_state is None and not core.alive
    assert core.counters.rx_foreign == 1 and core.counters.rx_messages == 0


@pytest.mark.parametrize(
    "frame",
    [
        CanFrame(0x01068005, b"\x07\x00"),  # too short (padding is accepted, spec D8)
        CanFrame(0x01068008, b"\x00"),  # unknown id
        CanFrame(0x009, b"\x07", is_extended_id=False),  # 11-bit
        CanFrame(0x01068009, b"", is_remote_frame=True),
    ],
)
def test_malformed_frames_are_counted_not_raised(core: BridgeCore, frame: CanFrame) -> None:
    r = core.on_frame(0.0, frame)
    assert r.kind is RxKind.MALFORMED and r.error and core.counters.rx_malformed == 1
    assert not core.alive  # a malformed heartbeat is no heartbeat


def test_error_frames_are_counted(core: BridgeCore) -> None:
    r = core.on_frame(0.0, CanFrame(0x20000004, bytes(8), is_error_frame=True))
    assert r.kind is RxKind.ERROR_FRAME and core.counters.rx_error_frames == 1


def test_our_own_message_ids_from_another_node_are_flagged(core: BridgeCore, codec: Codec) -> None:
    r = core.on_frame(0.0, codec.encode(status(), 1))
    assert r.kind is RxKind.UNEXPECTED and core.counters.rx_unexpected == 1


@pytest.mark.parametrize("raw", [13, 200])
def test_unknown_states_are_tolerated(core: BridgeCore, raw: int) -> None:  # PM-06
    r = core.on_frame(0.0, CanFrame(0x01068009, bytes([raw])))
    assert r.kind is RxKind.MESSAGE and int(core.controller_state) == raw and core.alive  # type: ignore[arg-type]


# --- heartbeat supervision ------------------------------------------------------------------


def test_pm07_heartbeat_loss_after_200_ms(core: BridgeCore, codec: Codec) -> None:
    core.on_frame(0.0, hb(codec, S.CHARGING))
    _, events = core.poll(0.0)
    assert [e.kind for e in events] == ["controller_alive", "state"]
    _, events = core.poll(0.200)
    assert core.alive and not events
    _, events = core.poll(0.2005)
    assert not core.alive and [e.kind for e in events] == ["controller_lost"]
    assert core.next_wakeup(0.1) <= 0.1 + HOUSEKEEPING_PERIOD
    core.on_frame(0.3, hb(codec, S.CHARGING))
    assert core.alive and core.counters.heartbeat_losses == 1


def test_next_wakeup_is_the_heartbeat_deadline(core: BridgeCore, codec: Codec) -> None:
    core.on_frame(1.0, hb(codec, S.WAITING_FOR_PEV))
    core.poll(1.0)
    assert core.next_wakeup(1.16) == pytest.approx(1.2001)


def test_pm44_link_down_counts_as_heartbeat_loss(core: BridgeCore, codec: Codec) -> None:
    core.on_frame(0.0, hb(codec, S.CHARGING))
    core.poll(0.0)
    core.link_down(0.05, "bus-off")
    _, events = core.poll(0.05)
    assert not core.alive and events[-1].kind == "controller_lost" and events[-1].text == "bus-off"


# --- Power_Modules_Status -------------------------------------------------------------------


def test_no_status_before_the_converter_reports(core: BridgeCore) -> None:
    assert run(core, 0.0, 1.0) == []


def test_pm09_status_every_100_ms(core: BridgeCore) -> None:
    core.set_power_status(0.0, status())
    sent = [t for t, m in run(core, 0.0, 2.0) if isinstance(m, PowerModulesStatus)]
    # the converter keeps reporting, as the node does; here the status would go stale, so refresh
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert len(sent) >= 4 and all(gap == pytest.approx(0.1, abs=1e-6) for gap in gaps)


def test_status_period_holds_with_fresh_status(core: BridgeCore) -> None:
    sent = []
    for i in range(0, 3001):
        t = i / 1000
        if i % 50 == 0:
            core.set_power_status(t, status())
        out, _ = core.poll(t)
        sent += [t for o in out if isinstance(o.message, PowerModulesStatus)]
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert len(sent) == 31 and max(gaps) == pytest.approx(0.1) and min(gaps) == pytest.approx(0.1)
    assert all(o.system_enable is Permission.ALLOWED for o in [core.power_status])


def test_stale_power_status_sends_system_enable_zero(core: BridgeCore) -> None:
    core.set_power_status(0.0, status(voltage=388.0))
    sent = run(core, 0.0, 1.0)
    enables = [
        (round(t, 3), m.system_enable) for t, m in sent if isinstance(m, PowerModulesStatus)
    ]
    assert enables[:4] == [  # power_status_timeout 0.2 s = two status periods
        (0.0, Permission.ALLOWED),
        (0.1, Permission.ALLOWED),
        (0.2, Permission.ALLOWED),
        (0.3, Permission.NOT_ALLOWED),
    ]
    assert all(e is Permission.NOT_ALLOWED for t, e in enables if t > 0.25)
    assert len(enables) == 11  # keeps going: the controller sees an explicit shutdown request
    last = [m for _, m in sent][-1]
    assert last.present_voltage == 388.0  # last measured value, never an invented 0 V
    core.set_power_status(1.05, status())
    _, events = core.poll(1.05)
    assert [e.kind for e in events] == ["power_status_fresh"]


def test_status_values_are_clamped_to_the_fields(core: BridgeCore, codec: Codec) -> None:
    core.set_power_status(
        0.0, PowerModulesStatus(400, 10, 300.0, -80.0, Permission.ALLOWED, math.inf)
    )
    out, _ = core.poll(0.0)
    frame = out[0].frame
    assert frame.data[4] == 255 and frame.data[5] == 0 and frame.data[7] == 255  # PM-12, PM-14
    assert frame.data[6] == 1  # PM-13


def test_non_finite_status_is_refused(core: BridgeCore) -> None:
    with pytest.raises(ValueError, match="present_voltage"):
        core.set_power_status(0.0, status(voltage=math.nan))
    assert core.power_status is None


def test_status_schedule_restarts_after_a_stall(core: BridgeCore) -> None:
    core.set_power_status(0.0, status())
    core.poll(0.0)
    core.set_power_status(1.0, status())
    out, _ = core.poll(1.0)  # 1 s late: one frame, not a burst of 10
    assert names(out) == ["Power_Modules_Status"]
    assert core.next_wakeup(1.0) == pytest.approx(1.0 + HOUSEKEEPING_PERIOD)  # housekeeping


# --- limits and sequence flags ----------------------------------------------------------------


def test_pm19_limits_before_charge_parameters_done(core: BridgeCore) -> None:
    core.set_limits(0.0, 500.0, 200.0)
    core.set_charge_parameters_done(0.0)
    out, _ = core.poll(0.0)
    assert names(out) == ["Power_Modules_Limits"]
    assert out[0].message == PowerModulesLimits(500.0, 200.0)
    out, _ = core.poll(0.0)  # the limits frame was sent: Done follows
    assert names(out) == ["Sequence_Control"]
    assert out[0].message.charge_parameters_done is Completion.DONE  # type: ignore[attr-defined]


def test_d4_done_waits_for_a_limits_frame_that_was_sent(core: BridgeCore) -> None:
    core.set_limits(0.0, 500.0, 200.0)
    core.set_charge_parameters_done(0.0)
    out, _ = core.poll(0.0)
    core.send_failed(out[0].message)  # the limits frame did not go out
    assert core.poll(0.0)[0] == []  # no Done (limits keep their 100 ms spacing)
    assert core.flags.charge_parameters_done is Completion.NOT_DONE
    out, _ = core.poll(0.1)
    assert names(out) == ["Power_Modules_Limits"]
    out, _ = core.poll(0.1)
    assert names(out) == ["Sequence_Control"]
    assert core.flags.charge_parameters_done is Completion.DONE


def test_d4_done_without_any_limits_is_refused(core: BridgeCore) -> None:
    with pytest.raises(ValueError, match="PM-19"):
        core.set_charge_parameters_done(0.0)


def test_pm20_limits_at_most_every_100_ms(core: BridgeCore) -> None:
    core.set_limits(0.0, 500.0, 200.0)
    core.poll(0.0)
    core.set_limits(0.02, 450.0, 150.0)
    core.set_limits(0.03, 400.0, 100.0)
    sent = [(t, m) for t, m in run(core, 0.02, 0.3) if isinstance(m, PowerModulesLimits)]
    assert sent == [(0.1, PowerModulesLimits(400.0, 100.0))]


@pytest.mark.parametrize(("v", "i"), [(-1.0, 10.0), (500.0, -5.0), (math.nan, 1.0), (7000.0, 1.0)])
def test_pm20_bad_limits_are_refused(core: BridgeCore, v: float, i: float) -> None:
    with pytest.raises(ValueError):
        core.set_limits(0.0, v, i)


def test_pm18_ccs_authorisation_valid_and_done_together(core: BridgeCore) -> None:
    core.set_ccs_authorisation(0.0, valid=True)
    out, _ = core.poll(0.0)
    assert out[0].frame.data == bytes.fromhex("00 03 00")
    core.set_ccs_authorisation(0.0, valid=False)
    out, _ = core.poll(0.0)
    assert out[0].frame.data == bytes.fromhex("00 01 00")


def test_pm17_button_pulse(core: BridgeCore) -> None:
    assert core.press_button(0.0, "user_stop_button")
    assert not core.press_button(0.05, "user_stop_button")  # one pulse at a time
    sent = [(t, m) for t, m in run(core, 0.0, 0.5) if isinstance(m, SequenceControl)]
    assert [(t, m.user_stop_button) for t, m in sent] == [
        (0.0, ButtonState.PRESSED),
        (0.2, ButtonState.NOT_PRESSED),
    ]
    assert core.press_button(0.6, "chademo_start_button")
    with pytest.raises(ValueError):
        core.press_button(0.6, "eject_button")


def test_pm15_flags_on_entry_into_not_available_and_waiting(
    core: BridgeCore, codec: Codec
) -> None:
    core.on_frame(0.0, hb(codec, S.INITIALISING))
    assert core.poll(0.0)[0] == []  # no flags in Initialising
    core.on_frame(0.1, hb(codec, S.NOT_AVAILABLE))
    out, _ = core.poll(0.1)
    assert names(out) == ["Sequence_Control"] and out[0].frame.data == bytes.fromhex("00 00 00")
    core.set_start_authorisation(0.15, True)
    out, _ = core.poll(0.15)
    assert out[0].frame.data == bytes.fromhex("01 00 00")
    core.on_frame(0.2, hb(codec, S.NOT_AVAILABLE))
    assert core.poll(0.2)[0] == []  # no change, no frame (PM-16)
    core.on_frame(0.3, hb(codec, S.WAITING_FOR_PEV))
    assert names(core.poll(0.3)[0]) == ["Sequence_Control"]


def test_start_authorisation_withheld_until_set(codec: Codec) -> None:
    core = BridgeCore(codec, BridgeConfig())
    core.on_frame(0.0, hb(codec, S.NOT_AVAILABLE))
    assert core.poll(0.0)[0][0].frame.data == bytes.fromhex("00 00 00")
    core.set_start_authorisation(0.1, True)
    assert core.poll(0.1)[0][0].frame.data == bytes.fromhex("01 00 00")


def test_pm21_per_session_flags_cleared_after_session(core: BridgeCore, codec: Codec) -> None:
    core.on_frame(0.0, hb(codec, S.CCS_AUTHORISATION_PROCESS))
    core.set_start_authorisation(0.0, True)
    core.set_ccs_authorisation(0.0, True)
    core.set_limits(0.0, 0.0, 0.0)
    core.set_charge_parameters_done(0.0)
    core.poll(0.0)
    core.poll(0.0)
    assert core.flags.charge_parameters_done is Completion.DONE
    core.on_frame(1.0, codec.encode(ChargeSessionFinished(SessionEnd.CLEAN_STOP), 1))
    out, events = core.poll(1.0)
    assert out[0].message == SequenceControl(Permission.ALLOWED)
    assert "flags_reset" in [e.kind for e in events]


def test_pm48_abort_without_session_finished_resets_flags(core: BridgeCore, codec: Codec) -> None:
    core.on_frame(0.0, hb(codec, S.CHARGING))
    core.set_start_authorisation(0.0, True)
    core.set_ccs_authorisation(0.0, True)
    core.poll(0.0)
    core.on_frame(0.1, hb(codec, S.WAITING_FOR_PEV))
    out, _ = core.poll(0.1)
    assert out[-1].message == SequenceControl(Permission.ALLOWED)
    assert core.flags.ccs_authorisation_valid is Validity.INVALID


def test_limits_resent_when_the_controller_comes_back(core: BridgeCore, codec: Codec) -> None:
    core.set_limits(0.0, 500.0, 200.0)
    core.poll(0.0)
    core.on_frame(5.0, hb(codec, S.INITIALISING))
    core.on_frame(5.1, hb(codec, S.WAITING_FOR_PEV))
    assert names(core.poll(5.1)[0]) == ["Power_Modules_Limits", "Sequence_Control"]


# --- outputs ---------------------------------------------------------------------------------


def test_pm47_outputs_every_second_while_enabled(core: BridgeCore) -> None:
    core.set_outputs(0.0, AdmCsSeccOutputs(digital_output1=True, led1=50))
    sent = [t for t, m in run(core, 0.0, 3.0, dt=0.01) if isinstance(m, AdmCsSeccOutputs)]
    assert sent == pytest.approx([0.0, 1.0, 2.0, 3.0])
    core.set_outputs(3.0, None)
    assert [m for _, m in run(core, 3.01, 5.0, dt=0.01)] == []
    with pytest.raises(ValueError):
        core.set_outputs(5.0, AdmCsSeccOutputs(led1=256))


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="pistol_index"):
        BridgeConfig(pistol_index=32)
    with pytest.raises(ConfigError, match="limits_min_interval"):
        BridgeConfig(limits_min_interval=0.05)


def test_vehicle_session_tracking(core: BridgeCore, codec: Codec) -> None:
    from evse_can_ros.protocol import (
        CommunicationProtocol,
        EvIdCcsPart2Din,
        NewChargeSession,
        PlugAndPins,
    )

    ncs = NewChargeSession(
        CommunicationProtocol.CCS_DIN_70121_2012_V2,
        PlugAndPins.CCS_DC_CORE,
        420.0,
        250.0,
        78.0,
        35,
    )
    core.on_frame(0.0, hb(codec, S.CONNECTED_WITH_FULL_INFO))
    core.on_frame(0.0, codec.encode(ncs, 1))
    assert core.session == ncs and core.soc == 35
    core.on_frame(0.1, codec.encode(EvIdCcsPart2Din(1, 2, 3, 4, 5, 6), 1))
    core.on_frame(0.2, codec.encode(ChargingLoop(0, 0, 0), 1))  # standby carries no SoC
    core.on_frame(0.3, codec.encode(ChargingLoop(410.0, 100.0, 36), 1))
    assert core.soc == 36 and core.ev_id == bytes([1, 2, 3, 4, 5, 6])
    core.on_frame(9.0, hb(codec, S.WAITING_FOR_PEV))
    assert core.session is None and core.soc is None and core.ev_id is None


def test_failed_flag_and_limit_frames_are_queued_again(core: BridgeCore) -> None:
    core.set_limits(0.0, 500.0, 100.0)
    core.set_start_authorisation(0.0, True)
    out, _ = core.poll(0.0)
    for o in out:
        core.send_failed(o.message)
    assert names(core.poll(0.0)[0]) == ["Sequence_Control"]  # flags at once
    assert names(core.poll(0.1)[0]) == ["Power_Modules_Limits"]  # limits keep their spacing


# --- conformance fixes (issue 13 D5, D8) and safety limits (issue 12) -------------------------


def test_d5_press_while_the_link_is_down_is_refused(core: BridgeCore) -> None:
    core.link_down(0.0, "bus-off")
    with pytest.raises(ValueError, match="CAN link down"):
        core.press_button(0.0, "user_stop_button")
    assert core.flags.user_stop_button is ButtonState.NOT_PRESSED


def test_d5_pulse_is_measured_from_the_frame_that_was_sent(core: BridgeCore) -> None:
    assert core.press_button(0.0, "user_stop_button")
    out, _ = core.poll(0.0)
    core.send_failed(out[0].message)  # the press did not reach the bus
    out, _ = core.poll(0.15)  # resent 150 ms later
    assert out[0].message.user_stop_button is ButtonState.PRESSED  # type: ignore[attr-defined]
    sent = [(t, m) for t, m in run(core, 0.151, 0.6) if isinstance(m, SequenceControl)]
    assert [(t, m.user_stop_button) for t, m in sent] == [(0.35, ButtonState.NOT_PRESSED)]


def test_d5_unsent_press_is_dropped_when_the_link_goes_down(core: BridgeCore) -> None:
    assert core.press_button(0.0, "chademo_start_button")
    core.link_down(0.01, "bus-off")
    assert core.flags.chademo_start_button is ButtonState.NOT_PRESSED


def test_d8_padded_controller_frames_are_decoded(core: BridgeCore, codec: Codec) -> None:
    frame = hb(codec, S.CHARGING)
    padded = CanFrame(frame.arbitration_id, frame.data + bytes(7))
    r = core.on_frame(0.0, padded)
    assert r.kind is RxKind.MESSAGE and core.controller_state is S.CHARGING
    assert core.counters.rx_padded == 1
    short = codec.encode(ChargingLoop(410.5, 150.0, 63), 1)
    r = core.on_frame(0.0, CanFrame(short.arbitration_id, short.data[:3]))
    assert r.kind is RxKind.MALFORMED and core.counters.rx_malformed == 1


def test_internal_error_loses_the_controller(core: BridgeCore, codec: Codec) -> None:
    core.on_frame(0.0, hb(codec, S.CHARGING))
    core.poll(0.0)
    core.internal_error(0.05, "transmit loop", "KeyError: 'x'")
    _, events = core.poll(0.05)
    assert [e.kind for e in events] == ["controller_lost"]
    assert "internal error" in events[0].text and core.counters.internal_errors == 1
    core.on_frame(0.1, hb(codec, S.CHARGING))  # the next heartbeat: alive again
    assert core.alive


@pytest.mark.parametrize(
    "kwargs",
    [
        {"heartbeat_timeout": 0.3},
        {"power_status_timeout": 0.25},
        {"status_period": 0.05, "power_status_timeout": 0.15},
    ],
)
def test_non_conforming_safety_timing_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        BridgeConfig(**kwargs)


def test_pm16_a_flags_frame_on_every_change_with_unused_bits_zero(core: BridgeCore) -> None:
    sent = []
    for t, action in (
        (0.0, lambda: core.set_start_authorisation(0.0, True)),
        (0.1, lambda: core.set_ccs_authorisation(0.1, True)),
        (0.2, lambda: core.set_start_authorisation(0.2, True)),  # no change: no frame
        (0.3, lambda: core.press_button(0.3, "user_stop_button")),
    ):
        action()
        out, _ = core.poll(t)
        sent += [o.frame.data for o in out if isinstance(o.message, SequenceControl)]
    assert sent == [
        bytes.fromhex("01 00 00"),
        bytes.fromhex("01 03 00"),
        bytes.fromhex("01 03 01"),
    ]
    for data in sent:  # bits 2-7, 11-15, 17-23 are 0
        assert data[0] & 0xFC == 0 and data[1] & 0xF8 == 0 and data[2] & 0xFE == 0
