"""Split an HL7 v2 file into messages, for ``huizhen send`` and replay tools.

A file holds one or many messages. Each message starts at a line beginning
with ``MSH``; lines end in CR, LF or CR LF (mixed is fine); the messages come
out with CR segment terminators, as HL7 wants on the wire. Also skipped:
MLLP block characters (a captured MLLP stream can be replayed), a UTF-8 byte
order mark, blank lines, batch wrappers (FHS, BHS, BTS, FTS) and anything
before the first MSH. Bytes are kept as they are otherwise: the charset is the
message's own (MSH-18) and CR/LF never occur inside a multi-byte character of
the charsets HL7 allows (UTF-8, GB18030, ISO 8859, ISO-2022).
"""

from __future__ import annotations

import re

_BOM = b"\xef\xbb\xbf"
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_BLOCK_CHARS = bytes.maketrans(b"\x0b\x1c", b"\n\n")
_BATCH_SEGMENTS = (b"FHS", b"BHS", b"BTS", b"FTS")


def split_hl7_messages(data: bytes) -> list[bytes]:
    """The messages in ``data``, each as ``SEG|...\\rSEG|...\\r``."""
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    messages: list[list[bytes]] = []
    for line in _LINE_BREAK.split(data.translate(_BLOCK_CHARS)):
        if not line.strip():
            continue
        segment = line[:3]
        if segment == b"MSH" and len(line) > 3 and _is_segment_start(line):
            messages.append([line])
        elif segment in _BATCH_SEGMENTS and _is_segment_start(line):
            continue
        elif messages:
            messages[-1].append(line)
    return [b"".join(segment + b"\r" for segment in message) for message in messages]


def _is_segment_start(line: bytes) -> bool:
    # "BHS|..." is a batch header; "BTSX" or a bare "FTS" word inside text is not.
    return len(line) == 3 or not line[3:4].isalnum()
