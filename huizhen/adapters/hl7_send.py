"""``huizhen send``: replay HL7 files over MLLP and report each ACK, for testing a feed by hand."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from huizhen.adapters.hl7_file import split_hl7_messages
from huizhen.adapters.mllp_client import MllpClient
from huizhen.adapters.mllp_framing import MllpError

_MSA = re.compile(rb"(?:^|\r)MSA(.)([A-Z]{2})")


@dataclass
class SendReport:
    sent: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    lines: list[str] = field(default_factory=list)

    @property
    def all_accepted(self) -> bool:
        return self.sent > 0 and set(self.codes) <= {"AA", "CA"}


def ack_code(ack: bytes) -> str:
    """MSA-1 of an ACK, read without decoding (MSA is ASCII in every HL7 charset)."""
    found = _MSA.search(ack)
    return found.group(2).decode() if found else "??"


def control_id(message: bytes) -> str:
    line = message.split(b"\r", 1)[0]
    parts = line.split(line[3:4]) if len(line) > 3 else []
    return parts[9].decode("latin-1") if len(parts) > 9 else ""


async def send_files(
    files: Sequence[Path], host: str, port: int, *, timeout_s: float = 30.0,
    progress: Callable[[int], None] | None = None,
) -> SendReport:
    messages = [(path, m) for path in files for m in split_hl7_messages(path.read_bytes())]
    report = SendReport()
    client = MllpClient(host, port, ack_timeout_s=timeout_s)
    try:
        for path, message in messages:
            try:
                code = ack_code(await client.send(message))
            except MllpError as exc:  # timeouts and dropped connections: reported, then the next message
                code = f"no answer ({type(exc).__name__})"
            report.sent += 1
            report.codes[code] += 1
            report.lines.append(f"{path.name}\t{control_id(message)}\t{code}")
            if progress:
                progress(1)
    finally:
        await client.close()
    return report


def count_messages(files: Sequence[Path]) -> int:
    return sum(len(split_hl7_messages(p.read_bytes())) for p in files)
