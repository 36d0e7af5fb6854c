"""Throughput of the pure HL7 v2 layer on one core: parse, map, ACK.

Messages: an ORU^R01 with 10 OBX (corpus LAB-ORU-1), an ADT^A01 (corpus
ADT01-23, v2.3, 12 segments) and a large one (ADT-A01-01, v2.8, 24 segments,
8.5 KB), plus an ORU and an ADT written in Chinese (GB18030, UTF-8). For each
it times python-hl7's bare ``hl7.parse`` (the ceiling), ``parse_message``
(charset, header checks, typed segments), parse + map to commands, and
parse + map + ACK; and hl7apy's ``parse_message`` for reference. Best of
``--rounds`` runs. Prints JSON; asserts nothing.

    python bench/hl7_parse.py [--seconds 0.5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import hl7
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message as hl7apy_parse

from huizhen.mappings.codes import load_code_tables
from huizhen.mappings.hl7v2.ack import build_ack
from huizhen.mappings.hl7v2.context import MappingContext
from huizhen.mappings.hl7v2.parse import normalize, parse_message
from huizhen.mappings.hl7v2.registry import default_registry
from huizhen.mappings.hl7v2.tables import AckCode

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "hl7v2" / "ms-fhir-converter"


def chinese_oru() -> bytes:
    obx = [
        f"OBX|{n}|NM|{code}^{name}^L||{value}|{unit}|{low}-{high}|N|||F|||20240301103000"
        for n, (code, name, value, unit, low, high) in enumerate(
            [
                ("WBC", "白细胞计数", "6.5", "10\\S\\9/L", "3.5", "9.5"),
                ("RBC", "红细胞计数", "4.6", "10\\S\\12/L", "4.3", "5.8"),
                ("HGB", "血红蛋白", "140", "g/L", "130", "175"),
                ("HCT", "HCT", "0.42", "L/L", "0.40", "0.50"),
                ("PLT", "血小板计数", "210", "10\\S\\9/L", "125", "350"),
                ("GLU", "葡萄糖", "5.1", "mmol/L", "3.9", "6.1"),
                ("K", "钾", "4.1", "mmol/L", "3.5", "5.3"),
                ("NA", "钠", "140", "mmol/L", "137", "147"),
                ("CREA", "肌酐", "80", "umol/L", "57", "111"),
                ("ALT", "丙氨酸氨基转移酶", "25", "U/L", "9", "50"),
            ],
            start=1,
        )
    ]
    segments = [
        "MSH|^~\\&|LIS|QSWSY_LIS|HUIZHEN|HZ|20240301103500||ORU^R01^ORU_R01|LAB0001|P|2.5||||||GB 18030-2000",
        "PID|1||0001234^^^QSWSY^MR||张^三||19900101|1|||北京路1号^^广州市^广东省",
        "ORC|RE|HZ20240301001^QSWSY",
        "OBR|1|HZ20240301001||CBC^血常规^L|||20240301090000",
        *obx,
    ]
    return ("\r".join(segments) + "\r").encode("gb18030")


def chinese_adt() -> bytes:
    segments = [
        "MSH|^~\\&|HIS|QSWSY|HUIZHEN|HZ|20240301101500||ADT^A01^ADT_A01|ADT0001|P|2.5||||||UNICODE UTF-8",
        "EVN|A01|20240301101500",
        "PID|1||0001234^^^QSWSY^MR~110101199001011234^^^CHN^NNCHN||张^三^^^^^L^I||19900101|1|||"
        "北京路1号^^广州市^广东省^510000^CHN^H^^天河区||13800138000",
        _segment(
            "PV1",
            {1: "1", 2: "住院", 3: "心内科病区^301^2", 10: "心内科", 19: "V20240301001", 44: "20240301100000"},
        ),
    ]
    return ("\r".join(segments) + "\r").encode("utf-8")


def _segment(name: str, fields: dict[int, str]) -> str:
    values = [fields.get(n, "") for n in range(1, max(fields) + 1)]
    return "|".join((name, *values))


def rate(work: Callable[[], object], seconds: float, rounds: int) -> float:
    """Best messages/second over ``rounds`` runs of about ``seconds`` each."""
    best = 0.0
    for _ in range(rounds):
        count, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            for _ in range(20):
                work()
            count += 20
        best = max(best, count / elapsed)
    return round(best, 1)


def measure(raw: bytes, context: MappingContext, seconds: float, rounds: int) -> dict[str, object]:
    registry = default_registry()
    text = normalize(parse_message(raw).text)

    def parse_map_ack() -> bytes:
        parsed = parse_message(raw)
        result = registry.map(parsed, context)
        return build_ack(parsed.header, AckCode.AA, result.warnings)

    header = parse_message(raw).header
    return {
        "bytes": len(raw),
        "segments": text.count("\r") + 1,
        "python_hl7_parse_per_s": rate(lambda: hl7.parse(text), seconds, rounds),
        "parse_message_per_s": rate(lambda: parse_message(raw), seconds, rounds),
        "parse_map_per_s": rate(lambda: registry.map(parse_message(raw), context), seconds, rounds),
        "parse_map_ack_per_s": rate(parse_map_ack, seconds, rounds),
        "ack_only_per_s": rate(lambda: build_ack(header, AckCode.AA), seconds, rounds),
        "hl7apy_parse_per_s": rate(
            lambda: hl7apy_parse(text, validation_level=VALIDATION_LEVEL.TOLERANT, find_groups=True),
            seconds / 2,
            1,
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    context = MappingContext(load_code_tables(ROOT / "config" / "mappings"))
    messages = {
        "oru_r01_10_obx": (CORPUS / "LAB-ORU-1.hl7").read_bytes(),
        "adt_a01": (CORPUS / "ADT01-23.hl7").read_bytes(),
        "adt_a01_v28_large": (CORPUS / "ADT-A01-01.hl7").read_bytes(),
        "oru_r01_10_obx_chinese_gb18030": chinese_oru(),
        "adt_a01_chinese_utf8": chinese_adt(),
    }
    report = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cores_used": 1,
        "messages": {name: measure(raw, context, args.seconds, args.rounds) for name, raw in messages.items()},
    }
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
