"""The MLLP decoder: every defined outcome, and independence from how reads split the stream."""

from __future__ import annotations

import itertools

import pytest

from huizhen.adapters.mllp_framing import (
    END_BLOCK,
    START_BLOCK,
    Event,
    Frame,
    FrameEncodingError,
    Garbage,
    MllpDecoder,
    Oversize,
    Truncated,
    encode,
)

VT, FS, CR = b"\x0b", b"\x1c", b"\r"
MSG_A = b"MSH|^~\\&|HIS|TOWN|HZ|HZ|20240101||ADT^A01|A1|P|2.5\rPID|1||123^^^TOWN^MR\r"
MSG_B = b"MSH|^~\\&|LIS|TOWN|HZ|HZ|20240101||ORU^R01|B2|P|2.5\rOBX|1|NM|718-7||13.2|g/dL\r"
MSG_CN = "MSH|^~\\&|HIS|乡镇卫生院|HZ|HZ|20240101||ADT^A01|C3|P|2.5|||||CHN|UNICODE UTF-8\r"
MSG_C = MSG_CN.encode("utf-8")
MSG_GB = MSG_CN.replace("UNICODE UTF-8", "GB 18030-2000").encode("gb18030")


def decode_all(chunks: list[bytes], max_frame_bytes: int = 1024) -> list[Event]:
    decoder = MllpDecoder(max_frame_bytes, head_bytes=16)
    events: list[Event] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    return events + decoder.finish()


def frame(payload: bytes) -> Frame:
    return Frame(payload)


# (name, stream, max_frame_bytes, expected events); heads are cut at 16 bytes.
CASES: list[tuple[str, bytes, int, list[Event]]] = [
    ("one frame", encode(MSG_A), 1024, [frame(MSG_A)]),
    ("three frames", encode(MSG_A) + encode(MSG_B) + encode(MSG_C), 1024,
     [frame(MSG_A), frame(MSG_B), frame(MSG_C)]),
    ("gb18030 payload", encode(MSG_GB), 1024, [frame(MSG_GB)]),
    ("empty frame", VT + FS + CR, 1024, [frame(b"")]),
    ("garbage before start", b"GET / HTTP/1.1\r\n" + encode(MSG_A), 1024,
     [Garbage(b"GET / HTTP/1.1\r\n", 16), frame(MSG_A)]),
    ("garbage between frames", encode(MSG_A) + b"junk" + encode(MSG_B), 1024,
     [frame(MSG_A), Garbage(b"junk", 4), frame(MSG_B)]),
    ("whitespace between frames is silent", encode(MSG_A) + b"\r\n \n" + encode(MSG_B), 1024,
     [frame(MSG_A), frame(MSG_B)]),
    ("garbage at end of stream", encode(MSG_A) + b"xyz", 1024, [frame(MSG_A), Garbage(b"xyz", 3)]),
    ("FS without CR then start", VT + MSG_A + FS + VT + MSG_B + FS + CR, 1024,
     [frame(MSG_A), frame(MSG_B)]),
    ("FS then LF", VT + MSG_A + FS + b"\n" + encode(MSG_B), 1024, [frame(MSG_A), frame(MSG_B)]),
    ("FS then garbage", VT + MSG_A + FS + b"zz" + encode(MSG_B), 1024,
     [frame(MSG_A), Garbage(b"zz", 2), frame(MSG_B)]),
    ("FS at end of stream", VT + MSG_A + FS, 1024, [frame(MSG_A)]),
    ("start block before end block", VT + b"MSH|cut short here" + encode(MSG_B), 1024,
     [Truncated(b"MSH|cut short he", 18), frame(MSG_B)]),
    ("missing end block then EOF", encode(MSG_A) + VT + MSG_B[:40], 1024,
     [frame(MSG_A), Truncated(MSG_B[:16], 40)]),
    ("start block alone at EOF", VT, 1024, [Truncated(b"", 0)]),
    ("oversize then a normal frame", encode(b"MSH|" + b"x" * 80) + encode(b"MSH|ok"), 64,
     [Oversize(b"MSH|" + b"x" * 12, 64), frame(b"MSH|ok")]),
    ("oversize ended by a start block", VT + b"MSH|" + b"y" * 80 + encode(b"MSH|ok"), 64,
     [Oversize(b"MSH|yyyyyyyyyyyy", 64), frame(b"MSH|ok")]),
    ("oversize unterminated at EOF", VT + b"z" * 200, 64, [Oversize(b"z" * 16, 64)]),
    ("exactly the limit is accepted", encode(b"a" * 64) + encode(b"b" * 65), 64,
     [frame(b"a" * 64), Oversize(b"b" * 16, 64)]),
    ("oversize frame after a truncated one", VT + b"t" * 5 + VT + b"o" * 70 + FS + CR, 64,
     [Truncated(b"ttttt", 5), Oversize(b"o" * 16, 64)]),
    ("long garbage is reported in pieces", b"g" * 150 + encode(b"MSH|ok"), 64,
     [Garbage(b"g" * 16, 64), Garbage(b"g" * 16, 64), Garbage(b"g" * 16, 22), frame(b"MSH|ok")]),
]


@pytest.mark.parametrize(("stream", "limit", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_whole_stream(stream: bytes, limit: int, expected: list[Event]) -> None:
    assert decode_all([stream], limit) == expected


@pytest.mark.parametrize(("stream", "limit", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_every_single_split_gives_the_same_events(
    stream: bytes, limit: int, expected: list[Event]
) -> None:
    for cut in range(len(stream) + 1):
        assert decode_all([stream[:cut], stream[cut:]], limit) == expected, f"cut at {cut}"


@pytest.mark.parametrize(("stream", "limit", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_one_byte_at_a_time(stream: bytes, limit: int, expected: list[Event]) -> None:
    assert decode_all([stream[i : i + 1] for i in range(len(stream))], limit) == expected


def test_every_pair_of_cuts_on_a_mixed_stream() -> None:
    stream = b"x\n" + VT + b"ab" + VT + b"cd" + FS + b"ee" + VT + b"f" * 9 + FS + CR + VT + b"gh"
    expected = decode_all([stream], max_frame_bytes=8)
    assert expected == [Garbage(b"x\n", 2), Truncated(b"ab", 2), frame(b"cd"),
                        Garbage(b"ee", 2), Oversize(b"ffffffff", 8), Truncated(b"gh", 2)]
    for a, b in itertools.combinations(range(len(stream) + 1), 2):
        assert decode_all([stream[:a], stream[a:b], stream[b:]], 8) == expected, (a, b)


def test_events_come_as_soon_as_a_frame_ends() -> None:
    decoder = MllpDecoder()
    assert decoder.feed(VT + MSG_A[:10]) == []
    assert decoder.in_frame
    assert decoder.feed(MSG_A[10:] + FS) == [frame(MSG_A)]  # no wait for the CR
    assert not decoder.in_frame
    assert decoder.feed(CR) == []
    assert decoder.finish() == []


def test_decoder_is_reusable_after_finish() -> None:
    decoder = MllpDecoder()
    decoder.feed(VT + b"partial")
    assert decoder.finish() == [Truncated(b"partial", 7)]
    assert decoder.feed(encode(MSG_A)) == [frame(MSG_A)]


def test_large_frame_in_many_chunks() -> None:
    payload = (MSG_B * 20_000)[: 3 * 1024 * 1024]
    stream = encode(payload)
    chunks = [stream[i : i + 65536] for i in range(0, len(stream), 65536)]
    assert decode_all(chunks, max_frame_bytes=4 * 1024 * 1024) == [frame(payload)]


def test_encode() -> None:
    assert encode(MSG_A) == START_BLOCK + MSG_A + END_BLOCK
    assert encode(b"") == b"\x0b\x1c\r"


@pytest.mark.parametrize("bad", [b"MSH|\x0b|", b"MSH|\x1c|"])
def test_encode_refuses_block_characters(bad: bytes) -> None:
    with pytest.raises(FrameEncodingError):
        encode(bad)


@pytest.mark.parametrize(("limit", "head"), [(0, 1), (1, 0)])
def test_limits_must_be_positive(limit: int, head: int) -> None:
    with pytest.raises(ValueError):
        MllpDecoder(limit, head)
