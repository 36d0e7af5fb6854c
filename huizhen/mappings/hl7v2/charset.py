"""Bytes to text by MSH-18 (HL7 table 0211), and back for the ACK.

MSH-18 is read from the raw bytes before anything is decoded: the MSH segment
is ASCII in every single-byte and ISO 2022 character set. UTF-16 and UTF-32
are recognised by their byte order mark. Bytes that do not decode in the
declared set raise :class:`CharsetError`; nothing is ever guessed or replaced.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from .errors import CharsetError, ErrorLocation
from .tables import ErrorCode

UTF8_BOM = codecs.BOM_UTF8

# Table 0211 values (and the spellings HIS vendors actually send) → Python codec.
# Keys are normalised by _key(): upper case without spaces, hyphens, underscores.
# GB2312 and GBK are decoded as GB18030, their superset: names such as 朱镕基 use
# characters outside GB2312 that real GB2312-labelled systems emit anyway.
_CODECS: dict[str, str] = {
    "ASCII": "ascii",
    "ISOIR6": "ascii",
    **{f"8859/{n}": f"iso8859-{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 15)},
    "ISOIR87": "iso2022_jp",
    "ISOIR159": "iso2022_jp_2",
    "GB180302000": "gb18030",
    "GB18030": "gb18030",
    "GB2312": "gb18030",
    "GBK": "gb18030",
    "KSX1001": "euc_kr",
    "BIG5": "big5",
    "UNICODE": "utf-16",
    "UNICODEUTF8": "utf-8",
    "UTF8": "utf-8",
    "UNICODEUTF16": "utf-16",
    "UNICODEUTF32": "utf-32",
}
# Sets reached by ISO 2022 escape sequences: when one of them is named in a later
# MSH-18 repetition (``ASCII~ISO IR87``), the whole message decodes with it.
_ISO2022 = frozenset({"iso2022_jp", "iso2022_jp_2"})
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_MSH18 = ErrorLocation("MSH", 1, 18)
_STRIP = re.compile(r"[\s\-_]")


@dataclass(frozen=True, slots=True)
class Decoded:
    text: str
    charsets: tuple[str, ...]  # MSH-18 repetitions as declared; () when empty
    codec: str  # the Python codec the text was decoded with


def codec_for(charsets: tuple[str, ...], default: str = "utf-8") -> str:
    """The Python codec for MSH-18's repetitions; ``default`` when MSH-18 is empty."""
    if not charsets:
        return default
    found = []
    for name in charsets:
        codec = _CODECS.get(_key(name))
        if codec is None:
            raise CharsetError(
                f"MSH-18 character set {name!r} is not supported",
                code=ErrorCode.TABLE_VALUE_NOT_FOUND,
                location=_MSH18,
            )
        found.append(codec)
    return next((c for c in found if c in _ISO2022), found[0])


def decode(raw: bytes, default: str = "utf-8") -> Decoded:
    """Decode a whole message by its own MSH-18 (``default`` when it is empty)."""
    for bom, wide in _BOMS:
        if raw.startswith(bom):
            text = _decode(raw, wide, "byte order mark")
            charsets = declared_charsets(text)
            return Decoded(text, charsets, wide)
    body = raw[len(UTF8_BOM) :] if raw.startswith(UTF8_BOM) else raw
    charsets = declared_charsets(_header_line(body))
    codec = codec_for(charsets, default)
    label = "|".join(charsets) if charsets else f"the default {default}"
    return Decoded(_decode(body, codec, label), charsets, codec)


def encode(text: str, codec: str) -> bytes:
    """Encode an outbound message; a character the set lacks becomes ``?``."""
    return text.encode(codec, errors="replace")


def declared_charsets(text: str) -> tuple[str, ...]:
    """MSH-18's repetitions, read from the MSH line without a full parse."""
    start = text.find("MSH")
    if start < 0 or len(text) < start + 8:
        return ()
    line = re.split(r"[\r\n]", text[start:], maxsplit=1)[0]
    separator = line[3]
    fields = line.split(separator)
    if len(fields) < 18:
        return ()
    encoding = fields[1]
    repetition = encoding[1] if len(encoding) > 1 else "~"
    return tuple(v.strip() for v in fields[17].split(repetition) if v.strip())


def _header_line(raw: bytes) -> str:
    end = len(raw)
    for terminator in (b"\r", b"\n"):
        position = raw.find(terminator)
        if 0 <= position < end:
            end = position
    return raw[:end].decode("latin-1")


def _decode(raw: bytes, codec: str, label: str) -> str:
    try:
        return raw.decode(codec)
    except UnicodeDecodeError as exc:
        sample = raw[exc.start : exc.start + 4].hex(" ")
        raise CharsetError(
            f"bytes at offset {exc.start} ({sample}) do not decode as {label} ({codec})",
            location=_MSH18,
        ) from exc


def _key(name: str) -> str:
    return _STRIP.sub("", name).upper()
