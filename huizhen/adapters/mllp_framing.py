"""MLLP release 2 framing: ``<VT> payload <FS><CR>``, as a pure incremental decoder.

The decoder never touches a socket. It is fed whatever a read returned and
answers with events, in stream order:

- :class:`Frame`: a complete payload.
- :class:`Garbage`: bytes outside any frame (before a start block). A run of
  ASCII whitespace only (CR/LF that some senders put between frames) is
  dropped silently; a run longer than the frame limit is reported in pieces,
  so garbage is never buffered without bound.
- :class:`Oversize`: a frame grew past the limit. Its first bytes are kept
  (enough for an MSH segment, so an AR can be built); the rest is discarded
  until the next end block or start block, where decoding resynchronises.
- :class:`Truncated`: a frame was cut short, by a new start block arriving
  before the end block, or (from :meth:`MllpDecoder.finish`) by end of stream.

A lone ``<FS>`` ends the frame: the ``<CR>`` after it is consumed when present
and otherwise the next byte is read as outside any frame (``<FS><VT>`` starts
the next frame at once, as some senders do). HL7 text never contains these
control characters, so this tolerance cannot split a valid message.

Events depend only on the bytes, never on how they were split into reads:
every head is cut at a fixed length and garbage runs are cut at fixed sizes.

Exceptions of the MLLP transport (server, client and framing)::

    MllpError                   base of everything the MLLP modules raise
    ├── FrameEncodingError      a payload holds a block character (VT or FS)
    ├── MllpConnectionError     connect failed, or the peer closed before the ACK
    ├── AckTimeout              no ACK within the timeout
    └── MllpProtocolError       the peer sent something that is not a usable frame
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
_VT = 0x0B
_FS = 0x1C
_CR = 0x0D
_WHITESPACE = b" \t\r\n"

DEFAULT_MAX_FRAME_BYTES = 10 * 1024 * 1024
HEAD_BYTES = 4096


class MllpError(Exception):
    """Base of the MLLP transport's exceptions."""


class FrameEncodingError(MllpError):
    pass


class MllpConnectionError(MllpError):
    pass


class AckTimeout(MllpError):
    pass


class MllpProtocolError(MllpError):
    pass


@dataclass(frozen=True, slots=True)
class Frame:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Garbage:
    head: bytes  # the first HEAD_BYTES at most
    size: int


@dataclass(frozen=True, slots=True)
class Oversize:
    head: bytes  # the frame's first min(HEAD_BYTES, limit) bytes
    limit: int


@dataclass(frozen=True, slots=True)
class Truncated:
    head: bytes
    size: int


Event = Frame | Garbage | Oversize | Truncated


def encode(payload: bytes) -> bytes:
    """Wrap one payload in an MLLP frame."""
    if _VT in payload or _FS in payload:
        raise FrameEncodingError("payload contains an MLLP block character (VT or FS)")
    return b"".join((START_BLOCK, payload, END_BLOCK))


class _State(enum.Enum):
    HUNT = enum.auto()  # outside a frame, looking for a start block
    FRAME = enum.auto()  # inside a frame
    DISCARD = enum.auto()  # inside an oversize frame
    AFTER_END = enum.auto()  # just after <FS>: a <CR> is expected


class MllpDecoder:
    def __init__(
        self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, head_bytes: int = HEAD_BYTES
    ) -> None:
        if max_frame_bytes < 1 or head_bytes < 1:
            raise ValueError("max_frame_bytes and head_bytes must be positive")
        self._max = max_frame_bytes
        self._head = head_bytes
        self._state = _State.HUNT
        self._frame = bytearray()
        self._garbage_head = bytearray()
        self._garbage_size = 0
        self._garbage_visible = False  # the run holds more than whitespace

    @property
    def in_frame(self) -> bool:
        """True between a start block and its end block."""
        return self._state in (_State.FRAME, _State.DISCARD)

    def feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        pos, end = 0, len(data)
        while pos < end:
            state = self._state
            if state is _State.FRAME:
                pos = self._in_frame(data, pos, events)
            elif state is _State.HUNT:
                pos = self._hunt(data, pos, events)
            elif state is _State.DISCARD:
                pos = self._discard(data, pos)
            else:
                if data[pos] == _CR:
                    pos += 1
                self._state = _State.HUNT
        return events

    def finish(self) -> list[Event]:
        """End of stream: report what was left unfinished and reset."""
        events: list[Event] = []
        if self._state is _State.FRAME:
            events.append(Truncated(bytes(self._frame[: self._head]), len(self._frame)))
        self._flush_garbage(events)
        self._frame.clear()
        self._state = _State.HUNT
        return events

    def _hunt(self, data: bytes, pos: int, events: list[Event]) -> int:
        start = data.find(_VT, pos)
        stop = len(data) if start < 0 else start
        if stop > pos:
            self._add_garbage(data, pos, stop, events)
        if start < 0:
            return stop
        self._flush_garbage(events)
        self._state = _State.FRAME
        return start + 1

    def _in_frame(self, data: bytes, pos: int, events: list[Event]) -> int:
        end = data.find(_FS, pos)
        limit = len(data) if end < 0 else end
        restart = data.find(_VT, pos, limit)
        if restart >= 0:
            if self._append(data, pos, restart, events):
                events.append(Truncated(bytes(self._frame[: self._head]), len(self._frame)))
            self._frame.clear()
            self._state = _State.FRAME
            return restart + 1
        if end >= 0:
            if not self._frame and end - pos <= self._max:
                events.append(Frame(data[pos:end]))  # the common case: one copy
            elif self._append(data, pos, end, events):
                events.append(Frame(bytes(self._frame)))
            self._frame.clear()
            self._state = _State.AFTER_END
            return end + 1
        self._append(data, pos, limit, events)
        return limit

    def _append(self, data: bytes, start: int, stop: int, events: list[Event]) -> bool:
        """Add bytes to the frame; False when it became oversize."""
        if len(self._frame) + (stop - start) <= self._max:
            self._frame += memoryview(data)[start:stop]
            return True
        keep = min(self._head, self._max)
        head = bytes(self._frame[:keep])
        if len(head) < keep:
            head += data[start : start + keep - len(head)]
        events.append(Oversize(head, self._max))
        self._frame.clear()
        self._state = _State.DISCARD
        return False

    def _discard(self, data: bytes, pos: int) -> int:
        end = data.find(_FS, pos)
        limit = len(data) if end < 0 else end
        restart = data.find(_VT, pos, limit)
        if restart >= 0:
            self._state = _State.FRAME
            return restart + 1
        if end >= 0:
            self._state = _State.AFTER_END
            return end + 1
        return limit

    def _add_garbage(self, data: bytes, pos: int, stop: int, events: list[Event]) -> None:
        while pos < stop:
            take = min(self._max - self._garbage_size, stop - pos)
            piece = data[pos : pos + take]
            room = self._head - len(self._garbage_head)
            if room > 0:
                self._garbage_head += piece[:room]
            if not self._garbage_visible and piece.strip(_WHITESPACE):
                self._garbage_visible = True
            self._garbage_size += take
            pos += take
            if self._garbage_size >= self._max:
                self._flush_garbage(events)

    def _flush_garbage(self, events: list[Event]) -> None:
        if self._garbage_visible:
            events.append(Garbage(bytes(self._garbage_head), self._garbage_size))
        self._garbage_head.clear()
        self._garbage_size = 0
        self._garbage_visible = False
