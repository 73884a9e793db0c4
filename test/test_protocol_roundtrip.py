"""Property-based round trips over every message, checked with the vendor KCD (PM-04, PM-50)."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evse_can_ros.protocol import Codec, load_codec
from evse_can_ros.protocol.messages import LabelEnum

CODEC = load_codec()
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def raw_strategy(name: str) -> st.SearchStrategy[dict[str, int]]:
    """Raw values for every signal of ``name`` inside its allowed range (Reserved = 0)."""
    parts: dict[str, st.SearchStrategy[int]] = {}
    for s in CODEC.spec(name).signals:
        if s.field is None:
            parts[s.name] = st.just(0)
            continue
        lo, hi = s.physical_range
        parts[s.name] = st.integers(
            round((lo - s.offset) / s.scale), round((hi - s.offset) / s.scale)
        )
    return st.fixed_dictionaries(parts)


def typed_from_raw(name: str, raw: dict[str, int]) -> Any:
    spec = CODEC.spec(name)
    kwargs = {}
    for s in spec.signals:
        if s.field is None:
            continue
        phys = round(raw[s.name] * s.scale + s.offset, s.decimals)
        conv = dict((sig, c) for sig, _, c in spec.converters)[s.name]
        kwargs[s.field] = (
            conv(int(phys))
            if isinstance(conv, type) and issubclass(conv, LabelEnum)
            else conv(phys)
        )
    return spec.type(**kwargs)


@pytest.mark.parametrize("name", CODEC.message_names)
@SETTINGS
@given(data=st.data())
def test_roundtrip_and_vendor_agreement(name: str, data: st.DataObject, vendor_kcd: Any) -> None:
    raw = data.draw(raw_strategy(name))
    message = typed_from_raw(name, raw)
    pistol = data.draw(st.integers(1, 31))
    frame = CODEC.encode(message, pistol)
    # our encode -> our decode is the identity
    assert CODEC.decode(frame, pistol) == message
    # the vendor KCD decodes our frame to the same raw values, and encodes them to the same bytes
    vendor_msg = vendor_kcd.get_message_by_name(name)
    assert frame.arbitration_id & 0x00FFFFFF == vendor_msg.frame_id
    assert vendor_msg.decode(frame.data, decode_choices=False, scaling=False) == raw
    assert vendor_msg.encode(raw, scaling=False) == frame.data
    # physical values agree with the vendor's scaling
    _, ours = CODEC.decode_signals(frame, pistol)
    theirs = vendor_msg.decode(frame.data, decode_choices=False)
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, abs=1e-9)


@pytest.mark.parametrize("name", CODEC.message_names)
@SETTINGS
@given(data=st.data())
def test_vendor_frames_decode_and_reencode_identically(
    name: str, data: st.DataObject, vendor_kcd: Any
) -> None:
    raw = data.draw(raw_strategy(name))
    vendor_msg = vendor_kcd.get_message_by_name(name)
    payload = vendor_msg.encode(raw, scaling=False)
    frame_id = (3 << 24) | vendor_msg.frame_id
    from evse_can_ros.protocol import CanFrame

    message = CODEC.decode(CanFrame(frame_id, payload), 3)
    assert CODEC.encode(message, 3).data == payload


@SETTINGS
@given(
    data=st.binary(min_size=0, max_size=8),
    base=st.sampled_from(
        [CODEC.spec(n).base_id for n in CODEC.message_names] + [0x68008, 0x60015, 0x12345]
    ),
    pistol=st.integers(0, 31),
    extended=st.booleans(),
)
def test_arbitrary_frames_never_crash(data: bytes, base: int, pistol: int, extended: bool) -> None:
    from evse_can_ros.protocol import CanFrame, ProtocolError

    frame = CanFrame((pistol << 24) | base, data, is_extended_id=extended)
    with contextlib.suppress(ProtocolError):
        CODEC.decode(frame, 1)


def test_codec_type(codec: Codec) -> None:
    assert codec is CODEC
