"""Encoding characters (MSH-1, MSH-2) and escape sequences (HL7 v2 chapter 2).

Escapes are undone per value, after splitting, with the message's own
delimiters: ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\`` give back the delimiter, ``\\Xhh..\\``
gives bytes decoded in the message's character set, ``\\.br\\`` a line break;
highlighting (``\\H\\ \\N\\``) and local escapes (``\\Z..\\``) are dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ErrorLocation, MalformedHeader
from .tables import ErrorCode

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_FORMATTING = {".br": "\n", ".sp": "\n", ".ce": "\n", ".sk": " "}


@dataclass(frozen=True, slots=True)
class Delimiters:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str = ""  # fifth MSH-2 character, v2.7 and later

    @property
    def encoding_characters(self) -> str:
        """MSH-2 as it is written."""
        return self.component + self.repetition + self.escape + self.subcomponent + self.truncation

    @classmethod
    def from_msh(cls, field: str, encoding_characters: str) -> Delimiters:
        """Read MSH-1 and MSH-2; four (or five) distinct, non-alphanumeric characters."""
        chars = field + encoding_characters
        if (
            len(encoding_characters) not in (4, 5)
            or len(set(chars)) != len(chars)
            or any(c.isalnum() or c.isspace() for c in chars)
        ):
            raise MalformedHeader(
                f"MSH-2 encoding characters {encoding_characters!r} (field separator "
                f"{field!r}) are not four distinct delimiters",
                code=ErrorCode.DATA_TYPE_ERROR,
                location=ErrorLocation("MSH", 1, 2),
            )
        return cls(field, *encoding_characters)

    def escape_text(self, text: str) -> str:
        """Escape a value for writing inside a field of this message."""
        esc = self.escape
        out = text.replace(esc, f"{esc}E{esc}")
        for char, code in (
            (self.field, "F"),
            (self.component, "S"),
            (self.subcomponent, "T"),
            (self.repetition, "R"),
            (self.truncation, "P"),
        ):
            if char:
                out = out.replace(char, f"{esc}{code}{esc}")
        line_break = f"{esc}.br{esc}"
        return _LINE_BREAK.sub(lambda _: line_break, out)

    def unescape(self, value: str, codec: str = "utf-8") -> str:
        """Undo escape sequences in one primitive value."""
        esc = self.escape
        if esc not in value:
            return value
        out: list[str] = []
        position = 0
        while True:
            start = value.find(esc, position)
            end = value.find(esc, start + 1) if start >= 0 else -1
            if start < 0 or end < 0:
                out.append(value[position:])
                return "".join(out)
            out.append(value[position:start])
            out.append(self._replacement(value[start + 1 : end], value[start : end + 1], codec))
            position = end + 1

    def _replacement(self, sequence: str, literal: str, codec: str) -> str:
        simple = {
            "F": self.field,
            "S": self.component,
            "T": self.subcomponent,
            "R": self.repetition,
            "E": self.escape,
            "P": self.truncation,
            "H": "",
            "N": "",
        }
        if sequence in simple:
            return simple[sequence]
        if sequence[:1] == "X":
            return _hex(sequence[1:], codec) or literal
        if sequence[:1] == "Z":
            return ""
        if sequence[:3] in _FORMATTING:
            count = sequence[3:].strip()
            return _FORMATTING[sequence[:3]] * (int(count) if count.isdigit() else 1)
        if sequence[:1] == ".":
            return ""  # .fi .nf .in .ti: layout hints without text
        return literal  # unknown, or a character-set switch we cannot follow: keep it visible


def _hex(digits: str, codec: str) -> str | None:
    try:
        return bytes.fromhex(digits).decode(codec)
    except (ValueError, UnicodeDecodeError):
        return None
