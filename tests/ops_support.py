"""HL7 messages for the operations tests: a patient with a Chinese name, a booking that fails
until its order arrives (an AE the admin can reprocess), and the order itself."""

from __future__ import annotations

import shutil
from pathlib import Path

from huizhen.settings import Settings

CHINESE_NAME = "欧阳^翠花"  # family^given as sent; 欧阳翠花 as stored
CHINESE_TEXT = "欧阳翠花"


def msg(*segments: str, type: str = "ADT^A01^ADT_A01", control_id: str = "C1") -> bytes:
    msh = f"MSH|^~\\&|HIS|QSWSY|HUIZHEN|HZ|20261127101500+0800||{type}|{control_id}|P|2.5"
    return "\r".join((msh, *segments)).encode() + b"\r"


def adt(control_id: str, mrn: str = "OPS1") -> bytes:
    return msg(f"PID|1||{mrn}^^^QSWSY^MR||{CHINESE_NAME}||19700101|F|||石桥镇8号||13900000009",
               control_id=control_id)


ORDER = [
    "PID|1||Q2002^^^QSWSY^MR||王^大明||19620101|M",
    "ORC|NW|HZ-ORD-9^QSWSY|||||^^^^^S|||||D001^孙^丽^^^^^^QSWSY",
    "OBR|1|HZ-ORD-9||HZCONSULT-CARD^心内科远程会诊^L|||||||||胸痛3天，加重2小时",
    "DG1|1||I20.000^不稳定型心绞痛^ICD10",
]
SIU = [
    "SCH|APT1^QSWSY||||||||||^^30^20261128100000+0800|||||||||||||||HZ-ORD-9^QSWSY",
    "PID|1||Q2002^^^QSWSY^MR||王^大明",
]


def order(control_id: str) -> bytes:
    return msg(*ORDER, type="ORM^O01^ORM_O01", control_id=control_id)


def booking(control_id: str) -> bytes:
    """Fails (AE) while its order is unknown; succeeds when reprocessed after :func:`order`."""
    return msg(*SIU, type="SIU^S12^SIU_S12", control_id=control_id)


def mappings_copy(tmp: Path) -> Path:
    """A writable copy of the project's mapping tables."""
    target = tmp / "mappings"
    shutil.copytree(Settings().resolved_mappings_dir, target)
    return target
