"""DICOM value formats (DA, TM, DT, offsets, PN text) read and written as Python values.

Shared by the header mapping, the C-FIND matching and the response builder.
Readers are lenient (None for what cannot be read); writers emit the strict
form the standard prescribes.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone, tzinfo

# ISO 2022 escape sequences; pydicom 3.0.2 leaves ESC $ ) A (ISO 2022 IR 58) in
# decoded text, so they are stripped from every string the mappings read.
_ISO2022_ESCAPE = re.compile(r"\x1b\$?[()*+\-./,]?[@-~]")
# Padding that turns a partial DA/TM/DT into the lowest / highest full value it
# stands for: "2020" is 20200101 as a lower bound and 20201231 as an upper one.
_DT_OFFSET = re.compile(r"[+-]\d{4}$")
_LOW = {"DA": "00000101", "TM": "000000.000000", "DT": "00000101000000.000000"}
_HIGH = {"DA": "99991231", "TM": "235959.999999", "DT": "99991231235959.999999"}


def clean_text(text: str) -> str:
    return _ISO2022_ESCAPE.sub("", text)


def has_cjk(text: str) -> bool:
    return any("\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" for ch in text)


def parse_date(value: str | None) -> date | None:
    """DA (``YYYYMMDD``; the old ``YYYY.MM.DD`` too); None when absent or invalid."""
    digits = (value or "").strip().replace(".", "")
    if len(digits) != 8 or not digits.isdigit():
        return None
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None


def parse_time(value: str | None) -> time | None:
    """TM (``HH``, ``HHMM``, ``HHMMSS``, ``HHMMSS.FFFFFF``; the old ``HH:MM:SS`` too)."""
    text = (value or "").strip().replace(":", "")
    whole, _, fraction = text.partition(".")
    if not whole.isdigit() or len(whole) not in (2, 4, 6) or (fraction and not fraction.isdigit()):
        return None
    hh, mm, ss = int(whole[:2]), int(whole[2:4] or 0), int(whole[4:6] or 0)
    micro = int((fraction + "000000")[:6]) if fraction else 0
    try:
        return time(hh, mm, min(ss, 59), micro)
    except ValueError:
        return None


def parse_offset(value: str | None) -> tzinfo | None:
    """Timezone Offset From UTC (``+0800``, ``-0400``)."""
    text = (value or "").strip()
    if len(text) != 5 or text[0] not in "+-" or not text[1:].isdigit():
        return None
    minutes = int(text[1:3]) * 60 + int(text[3:])
    if minutes > 14 * 60:
        return None
    return timezone(timedelta(minutes=-minutes if text[0] == "-" else minutes))


def format_date(value: date | datetime) -> str:
    return value.strftime("%Y%m%d")


def format_time(value: time | datetime) -> str:
    text = value.strftime("%H%M%S")
    return f"{text}.{value.microsecond:06d}" if value.microsecond else text


def format_offset(value: datetime) -> str | None:
    """``+0800`` for an aware datetime, None for a naive one."""
    offset = value.utcoffset()
    if offset is None:
        return None
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"


def temporal_bound(vr: str, value: str, *, upper: bool) -> str:
    """A DA/TM/DT value padded to full precision, for comparing as plain strings.

    ``value`` may be partial ("2020", "0830"); an upper bound is padded with the
    highest digits so that it includes everything the partial value stands for.
    DT offsets (+hhmm) are dropped: ranges compare local date-times.
    """
    text = value.strip().replace(":", "")
    if vr == "DA":
        text = text.replace(".", "")
    if vr == "DT":
        text = _DT_OFFSET.sub("", text)
    template = (_HIGH if upper else _LOW)[vr]
    if vr != "DA" and "." in text:
        whole, _, fraction = text.partition(".")
        width = len(template.partition(".")[0])
        text = whole + template[len(whole) : width] + "." + fraction
    return text + template[len(text) :]
