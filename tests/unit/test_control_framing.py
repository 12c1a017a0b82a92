import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pymultipathd.control.framing import HEADER_SIZE, MAX_COMMAND, Decoder, FrameError, encode


def test_encode_matches_upstream_layout():
    frame = encode("show paths")
    assert frame[:HEADER_SIZE] == struct.pack("<Q", len("show paths") + 1)
    assert frame[HEADER_SIZE:] == b"show paths\0"


def test_several_messages_in_one_read():
    dec = Decoder()
    assert dec.feed(encode("show paths") + encode("show maps")) == ["show paths", "show maps"]
    assert dec.pending == 0


def test_text_read_from_bytes_that_are_not_utf8_goes_out_as_those_bytes():
    assert encode("serial \udcff") == struct.pack("<Q", 9) + b"serial \xff\0"


def test_messages_are_taken_one_at_a_time():
    """pop: the next message or None; pending counts the bytes not taken, a partial message's included."""
    dec = Decoder()
    dec.push(encode("show paths") + encode("show maps") + encode("show daemon")[:5])
    assert dec.pop() == "show paths"
    assert dec.pending == len(encode("show maps")) + 5
    dec.push(encode("show daemon")[5:])  # the taken message is cut off here
    assert [dec.pop(), dec.pop(), dec.pop()] == ["show maps", "show daemon", None]
    assert dec.pending == 0


def test_byte_at_a_time():
    dec = Decoder()
    data = encode("show topology")
    got = []
    for b in data:
        got += dec.feed(bytes([b]))
    assert got == ["show topology"]


def test_oversized_length_is_refused_before_reading_body():
    dec = Decoder()
    with pytest.raises(FrameError):
        dec.feed(struct.pack("<Q", 1 << 40))
    with pytest.raises(FrameError):
        Decoder().feed(struct.pack("<Q", MAX_COMMAND + 1))


def test_missing_nul_is_tolerated():
    body = b"show paths"
    assert Decoder().feed(struct.pack("<Q", len(body)) + body) == ["show paths"]


@given(st.lists(st.text(max_size=100), max_size=5), st.integers(min_value=1, max_value=17))
def test_roundtrip_any_split(messages, chunk):
    messages = [m.replace("\0", "") for m in messages]
    data = b"".join(encode(m) for m in messages)
    dec = Decoder(max_len=1 << 16)
    got = []
    for i in range(0, len(data), chunk):
        got += dec.feed(data[i:i + chunk])
    assert got == messages
