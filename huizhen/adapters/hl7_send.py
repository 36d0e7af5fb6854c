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
        return self.sent > 0 and set(self.codes) <= {"AA", "CA", "CA AA"}


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
                if code == "CA" and (wait := application_ack_wait(message, timeout_s)) is not None:
                    second = await client.receive(wait)  # enhanced mode: the application ACK follows
                    code = f"{code} {ack_code(second)}" if second is not None else code
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


def application_ack_wait(message: bytes, timeout_s: float) -> float | None:
    """How long to wait for the application ACK after a CA, by MSH-16: the full timeout when
    one always follows (AL, or empty in enhanced mode), a moment when it depends on the outcome."""
    line = message.split(b"\r", 1)[0]
    parts = line.split(line[3:4]) if len(line) > 3 else []
    condition = parts[15].strip().upper() if len(parts) > 15 else b""
    if condition == b"NE":
        return None
    return timeout_s if condition in (b"", b"AL") else min(timeout_s, 1.0)


def count_messages(files: Sequence[Path]) -> int:
    return sum(len(split_hl7_messages(p.read_bytes())) for p in files)
