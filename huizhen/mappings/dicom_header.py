"""The indexed header of a scanned instance as plain values, without a pydicom Dataset (pure).

A C-STORE is indexed by some twenty header elements (``HEADER_KEYWORDS``),
located by the byte scan of :mod:`dicom_part10`. Building a pydicom Dataset of
them and reading it back through the mapping cost ~0.7 ms of CPU per instance
on this project's machines (a third of the association thread's work per
C-STORE): each element converted, validated and wrapped, each keyword access
going through the dataset's tag lookups and conversion hooks.

:func:`plain_header` gives the mapping (:mod:`huizhen.mappings.dicom`) and the
checks (:mod:`dicom_read`) a stand-in with the Dataset methods they use
(``get``, ``in``, attribute access, ``file_meta.get``), whose values are decoded
on first access, and directly when they are plain: a single value of ASCII
text (UI, CS, SH, LO, PN, DA, TM, AS, IS of digits) or one US. Any other
element (characters beyond ASCII, several values, another VR, an IS that is not
an integer, a US of another length) is decoded by pydicom exactly as the
Dataset would, in the dataset's character set; so the values the mapping sees
are those a Dataset gives, as far as the mapping can tell (it strips and maps
text, and takes the first of several values). Sequences are split into items
(the Other Patient IDs and issuer qualifiers the mapping reads) with the same
element rules. When the header holds what this does not follow (an item's own
character set, a sequence sent as UN, a sequence where the dictionary has a
value, a nested value of undefined length that is not a sequence, an ambiguous
VR), :func:`plain_header` returns ``None`` and the caller builds the pydicom
Dataset as before.
"""

from __future__ import annotations

import re
import struct
from typing import Any

from pydicom import config
from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.tag import BaseTag
from pydicom.uid import UID
from pydicom.valuerep import AMBIGUOUS_VR, IS

from huizhen.mappings.dicom_part10 import Scan

_CHARSET = 0x00080005
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_HEAD = struct.Struct("<HH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
_MAX_DEPTH = 8
# text a Dataset gives as one str: printable ASCII, no value delimiter (several values go to pydicom)
_PLAIN_TEXT = re.compile(rb"[\x20-\x5b\x5d-\x7e]*[\0 ]*")
_PLAIN_UID = re.compile(rb"[0-9.]{0,64}\0?")
_PLAIN_IS = re.compile(rb" *[+-]?[0-9]{1,10} *\0?")
_TEXT_VRS = frozenset({"CS", "SH", "LO", "PN", "DA", "TM", "AS"})
_MISSING = object()


class NotPlain(Exception):
    """A header :func:`plain_header` does not follow: build the pydicom Dataset instead."""


def plain_header(data: bytes, found: Scan) -> PlainHeader | None:
    """The elements ``found`` located in ``data`` as a :class:`PlainHeader`; ``None`` for a header
    to read with pydicom (see the module docstring)."""
    try:
        elements = {tag: (e.vr or _implicit_vr(tag), e.value, e.end) for tag, e in found.elements.items()}
        header = PlainHeader(data, elements, found.implicit_vr, None)
        for tag, (vr, start, end) in elements.items():
            if vr == "SQ":
                _a_sequence(tag)
                header.values[tag] = _items(header, start, end, depth=1)[0]
            elif vr == "UN" or vr in AMBIGUOUS_VR:
                raise NotPlain(f"VR {vr} of {tag:08X}")
    except NotPlain:
        return None
    header.file_meta = {"TransferSyntaxUID": UID(found.transfer_syntax_uid, validation_mode=config.IGNORE)}
    return header


class PlainHeader:
    """A read-only stand-in for the pydicom Dataset of a header's elements (see the module docstring)."""

    def __init__(
        self, data: bytes, elements: dict[int, tuple[str, int, int]], implicit: bool, parent: PlainHeader | None
    ) -> None:
        self.data = data
        self.elements = elements  # tag -> (VR, value offset, value end)
        self.implicit = implicit
        self.parent = parent  # an item's dataset: the character set is the top level's
        self.values: dict[int, Any] = {}
        self.file_meta: dict[str, Any] = {}
        self._encoding: list[str] | None = None

    def get(self, keyword: str, default: Any = None) -> Any:
        tag = _tag(keyword)
        if tag is None or tag not in self.elements:
            return default
        value = self.values.get(tag, _MISSING)
        if value is _MISSING:
            value = self.values[tag] = self._decode(tag)
        return value

    def __contains__(self, keyword: str) -> bool:
        tag = _tag(keyword)
        return tag is not None and tag in self.elements

    def __getattr__(self, keyword: str) -> Any:
        if keyword.startswith("_") or keyword in ("data", "elements", "implicit", "parent", "values", "file_meta"):
            raise AttributeError(keyword)
        value = self.get(keyword, _MISSING)
        if value is _MISSING:
            raise AttributeError(f"no {keyword} in this header")
        return value

    def _decode(self, tag: int) -> Any:
        vr, start, end = self.elements[tag]
        raw = self.data[start:end]
        if vr in _TEXT_VRS:
            if _PLAIN_TEXT.fullmatch(raw):
                return raw.decode("ascii").rstrip("\0 ")
        elif vr == "UI":
            if _PLAIN_UID.fullmatch(raw):  # digits and dots, at most 64: nothing for pydicom's check to say
                return UID(raw.decode("ascii").rstrip("\0"), validation_mode=config.IGNORE)
        elif vr == "US":
            if len(raw) == 2:
                return _U16.unpack(raw)[0]
        elif vr == "IS":
            if len(raw) <= 12 and _PLAIN_IS.fullmatch(raw):  # a valid IS: nothing for pydicom's check to say
                return IS(raw.decode("ascii").rstrip(" \0"), validation_mode=config.IGNORE)
        return self._pydicom(tag, vr, start, raw)

    def _pydicom(self, tag: int, vr: str, start: int, raw: bytes) -> Any:
        """The value as a Dataset decodes it (pydicom's conversion, in the dataset's character set)."""
        element = RawDataElement(BaseTag(tag), vr, len(raw), raw, start, self.implicit, True)
        return convert_raw_data_element(element, encoding=self._charset()).value

    def _charset(self) -> list[str]:
        if self.parent is not None:
            return self.parent._charset()
        if self._encoding is None:
            encoding: str | list[str] = default_encoding
            if _CHARSET in self.elements:
                vr, start, end = self.elements[_CHARSET]
                value = self.data[start:end]
                raw = RawDataElement(BaseTag(_CHARSET), vr, len(value), value, start, self.implicit, True)
                encoding = convert_encodings(convert_raw_data_element(raw, encoding=default_encoding).value)
            self._encoding = [encoding] if isinstance(encoding, str) else list(encoding)
        return self._encoding


def _tag(keyword: str) -> int | None:
    """The tag of a keyword; ``None`` for a name that is none (a Dataset's ``get`` gives the default)."""
    tag = _TAGS.get(keyword)
    if tag is None:
        found = tag_for_keyword(keyword)
        if found is None:
            return None
        tag = _TAGS[keyword] = int(found)
    return tag


_TAGS: dict[str, int] = {}


def _a_sequence(tag: int) -> None:
    """Refuse a sequence under a tag the dictionary knows as something else (a Dataset would keep
    the items as a Sequence where the mapping expects a value)."""
    try:
        known = str(dictionary_VR(tag))
    except KeyError:
        return
    if known != "SQ":
        raise NotPlain(f"a sequence as {tag:08X} ({known})")


def _implicit_vr(tag: int) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError as exc:  # a private or unknown element: pydicom reads it as UN
        raise NotPlain(f"no dictionary VR for {tag:08X}") from exc


def _items(parent: PlainHeader, pos: int, end: int, *, depth: int) -> tuple[list[PlainHeader], int]:
    """The items of a sequence whose value starts at ``pos`` and ends at ``end`` at the latest
    (its delimiter, when of undefined length, may come first); and the offset after them."""
    if depth > _MAX_DEPTH:
        raise NotPlain("sequences nested too deep")
    data, items = parent.data, list[PlainHeader]()
    while pos + 8 <= end:
        group, element = _HEAD.unpack_from(data, pos)
        length = _U32.unpack_from(data, pos + 4)[0]
        tag = group << 16 | element
        if tag == _SEQUENCE_END:
            return items, pos + 8
        if tag != _ITEM:
            raise NotPlain("not an item in a sequence")
        item = PlainHeader(data, {}, parent.implicit, parent)
        if length == _UNDEFINED:
            pos = _elements(item, pos + 8, end, depth, delimited=True)
        else:
            if pos + 8 + length > end:
                raise NotPlain("an item beyond its sequence")
            pos = _elements(item, pos + 8, pos + 8 + length, depth, delimited=False)
        items.append(item)
    if pos != end:
        raise NotPlain("a sequence cut short")
    return items, pos


def _elements(item: PlainHeader, pos: int, end: int, depth: int, *, delimited: bool) -> int:
    """Locate an item's elements (its sequences split into items); the offset after the item."""
    data, explicit = item.data, not item.implicit
    while pos + 8 <= end:
        group, element = _HEAD.unpack_from(data, pos)
        tag = group << 16 | element
        if tag == _ITEM_END and delimited:
            return pos + 8
        if group == 0xFFFE:
            raise NotPlain("a delimiter where an element was expected")
        if tag == _CHARSET:
            raise NotPlain("an item with its own character set")
        if explicit:
            vr = data[pos + 4 : pos + 6].decode("ascii", "replace")
            if vr in _LONG_VRS:
                if pos + 12 > end:
                    raise NotPlain("an element header cut short")
                length, value = _U32.unpack_from(data, pos + 8)[0], pos + 12
            else:
                length, value = _U16.unpack_from(data, pos + 6)[0], pos + 8
        else:
            vr, length, value = _implicit_vr(tag), _U32.unpack_from(data, pos + 4)[0], pos + 8
        if vr == "UN" or vr in AMBIGUOUS_VR:
            raise NotPlain(f"VR {vr} in an item")
        if vr == "SQ":
            _a_sequence(tag)
            limit = end if length == _UNDEFINED else value + length
            if limit > end:
                raise NotPlain("a sequence beyond its item")
            item.values[tag], after = _items(item, value, limit, depth=depth + 1)
        elif length == _UNDEFINED:
            raise NotPlain("a value of undefined length that is not a sequence")
        else:
            after = value + length
            if after > end:
                raise NotPlain("an element beyond its item")
        item.elements[tag] = (vr, value, after)
        pos = after
    if delimited or pos != end:
        raise NotPlain("an item cut short")
    return pos
