"""The lazy split of ``parse.py`` against python-hl7's, field by field.

parse.py cuts messages itself, lazily, by python-hl7's rules (see its
docstring). These tests hold the two to the same answer: every segment id and
every field's repetitions, components and subcomponents, over the corpus and
over lines written to hit python-hl7's corners.
"""

from __future__ import annotations

import random
from pathlib import Path

import hl7
import pytest

from huizhen.mappings.hl7v2.errors import Hl7Error, NotHl7
from huizhen.mappings.hl7v2.header import read_header
from huizhen.mappings.hl7v2.parse import Segment, normalize, parse_message
from huizhen.mappings.hl7v2.tables import SUPPORTED_VERSIONS

from .conftest import CORPUS

Parts = list[list[str]]


def oracle(text: str) -> list[tuple[str, list[list[Parts]]]]:
    """Each segment's id and fields as python-hl7 splits them (the former parse.py's reading)."""
    out = []
    for fields in hl7.parse(text):
        name = str(fields[0][0])
        read: list[list[Parts]] = []
        for number in range(1, len(fields)):
            reps: list[Parts] = []
            for rep in fields[number]:
                if isinstance(rep, str):
                    reps.append([[rep]])
                else:
                    reps.append([[c] if isinstance(c, str) else list(c) for c in rep])
            read.append(reps)
        out.append((name, read))
    return out


def ours(text: str) -> list[tuple[str, list[list[Parts]]]]:
    header = read_header(text, "utf-8")
    out = []
    for line in text.split("\r"):
        segment = Segment(line, 1, header.delimiters, "utf-8")
        read = []
        for number in range(1, len(segment._fields)):
            reps = [composite._parts for composite in segment.repetitions(number)]
            read.append(reps)
        out.append((segment.name, read))
    return out


def _kept(reps: list[Parts]) -> list[Parts]:
    """python-hl7 keeps empty repetitions; Segment drops them (it always did)."""
    return [r for r in reps if any(v and v != '""' and not v.isspace() for part in r for v in part)]


def same_split(text: str) -> None:
    text = normalize(text)
    try:
        read_header(text, "utf-8")
    except Hl7Error:
        return  # parse_message rejects it before any split
    expected = oracle(text)
    got = ours(text)
    assert [name for name, _ in got] == [name for name, _ in expected]
    for (name, theirs), (_, mine) in zip(expected, got, strict=True):
        assert len(mine) == len(theirs), name
        for number, (a, b) in enumerate(zip(theirs, mine, strict=True), start=1):
            assert _kept(a) == b, f"{name}-{number}"


CORPUS_FILES = sorted((CORPUS / "hl7v2").glob("*/*.hl7"))


@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda p: p.name)
def test_corpus_splits_as_python_hl7_does(path: Path) -> None:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    for one in normalize(text).split("\rMSH|"):
        same_split(one if one.startswith("MSH") else "MSH|" + one)


CORNERS = [
    "MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.5",
    "MSH|^~\\&#|A|B|C|D|20260101||ADT^A01|1|P|2.7",
    "MSH$%*\\!$A$B$C$D$20260101$$ADT%A01$1$P$2.5\rPID$1$$X%%%Y*Z!W$$N%M",
    "PID|1||P1^^^H^MR~P2^^^H^NI||张^三||19800101|M",
    "OBX|1|ST|C^T^L||a~~b~\"\"~ ~c&d&&e|||",
    "ZZZ|",
    "ZZZ",  # no delimiter at all: python-hl7 names it by its first character
    "NTE|1||text with \\F\\ and \\S\\ escapes",
    "A~B|x|y",  # the id is the first repetition of field 0
    "A^B|x",
    "BHS|^~\\&|batch",  # a header-like segment mid-message takes its own separators
    "FHS!^~\\&!f",
    "MSH^x",
    "PV1||||||||||||||||||||||||||||||||||||||||||||||||||",
    "OBX|1|NM|^^^&&|| ^ & ~ |",
    "Z01|&|^|~|&&^^~~",
]


@pytest.mark.parametrize("segment", CORNERS)
def test_corner_lines_split_as_python_hl7_does(segment: str) -> None:
    header = "MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.5"
    if segment.startswith("MSH"):
        same_split(segment)
    else:
        same_split(header + "\r" + segment)


def test_random_lines_split_as_python_hl7_does() -> None:
    rng = random.Random(20260101)
    alphabet = "AB1 |^~&\\\"#"
    for _ in range(3000):
        lines = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24))) for _ in range(rng.randint(1, 4))]
        lines = [line for line in lines if line.strip()]
        if lines:
            same_split("MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.5\r" + "\r".join(lines))


def test_invalid_segment_ids_are_rejected_as_before() -> None:
    header = "MSH|^~\\&|A|B|C|D|20260101||ADT^A01^ADT_A01|1|P|2.5"
    for line, shown in (("ZZZ", "'Z'"), ("A~B|x", "'A'"), ("pid|1", "'pid'")):
        with pytest.raises(NotHl7) as caught:
            parse_message(f"{header}\r{line}".encode(), versions=SUPPORTED_VERSIONS)
        assert f"no valid segment id: {shown}" in str(caught.value)
    parsed = parse_message(f"{header}\rABC~x|1".encode())  # python-hl7 takes the first repetition as the id
    assert [s.name for s in parsed] == ["MSH", "ABC"]
