"""Splitting HL7 files into messages (``huizhen send``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from huizhen.adapters.hl7_file import split_hl7_messages
from huizhen.adapters.mllp_framing import encode

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "hl7v2"
A = [b"MSH|^~\\&|HIS|TOWN|||20240101||ADT^A01|1|P|2.5", b"PID|1||123^^^TOWN^MR", b"PV1|1|I"]
B = [b"MSH|^~\\&|LIS|TOWN|||20240101||ORU^R01|2|P|2.5", b"OBX|1|NM|718-7||13.2"]


def wire(segments: list[bytes]) -> bytes:
    return b"".join(s + b"\r" for s in segments)


@pytest.mark.parametrize("eol", [b"\r", b"\n", b"\r\n"])
def test_two_messages_with_any_line_ending(eol: bytes) -> None:
    data = eol.join(A + B) + eol
    assert split_hl7_messages(data) == [wire(A), wire(B)]


def test_mixed_line_endings_blank_lines_and_no_final_newline() -> None:
    data = A[0] + b"\r\n" + A[1] + b"\n\n" + A[2] + b"\r\r\n" + b"\n".join(B)
    assert split_hl7_messages(data) == [wire(A), wire(B)]


def test_batch_wrappers_and_bom_are_skipped() -> None:
    data = b"\xef\xbb\xbfFHS|^~\\&|HIS\nBHS|^~\\&|HIS\n" + b"\n".join(A + B) + b"\nBTS|2\nFTS|1\n"
    assert split_hl7_messages(data) == [wire(A), wire(B)]


def test_mllp_framed_capture() -> None:
    data = encode(wire(A)) + encode(wire(B))
    assert split_hl7_messages(data) == [wire(A), wire(B)]


def test_lines_before_the_first_msh_are_ignored() -> None:
    assert split_hl7_messages(b"# exported 2024-01-01\n" + b"\n".join(A)) == [wire(A)]


def test_no_message() -> None:
    assert split_hl7_messages(b"") == []
    assert split_hl7_messages(b"hello\nworld\n") == []


def test_segment_text_starting_like_a_batch_name_is_kept() -> None:
    data = b"\n".join([*A, b"BTSX|kept"])
    assert split_hl7_messages(data) == [wire([*A, b"BTSX|kept"])]


def test_chinese_bytes_are_untouched() -> None:
    pid = "PID|1||123^^^TOWN^MR||张^三".encode("gb18030")
    assert split_hl7_messages(b"\r\n".join([A[0], pid])) == [wire([A[0], pid])]


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present")
def test_corpus_files_split_into_messages_starting_with_msh() -> None:
    files = sorted(CORPUS.rglob("*.hl7"))
    assert files
    for path in files:
        messages = split_hl7_messages(path.read_bytes())
        assert messages, path
        for message in messages:
            assert message.startswith(b"MSH") and message.endswith(b"\r"), path
            assert b"\n" not in message, path
