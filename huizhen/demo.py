"""``huizhen demo``: a small, realistic directory to explore right after start.

Facilities of three levels, experts of several departments and titles with
ICD-10 expertise, primary-care doctors, and patients with Chinese names. All
people are fictitious; identifiers use the demo systems below. Loading twice
changes nothing (facilities by code, people by identifier).
"""

from __future__ import annotations

from datetime import date

from huizhen.app import create_services
from huizhen.integration.model import (
    Facility,
    FacilityLevel,
    Gender,
    HumanName,
    Identifier,
    Patient,
    Practitioner,
    PractitionerTitle,
)
from huizhen.settings import Settings

STAFF_SYSTEM = "urn:huizhen:demo:staff"
NATIONAL_ID = "urn:oid:2.16.156.10011.1.3"  # 居民身份证号 (resident identity card)

FACILITIES = [
    ("HOSP001", "省人民医院", FacilityLevel.TERTIARY, "省会"),
    ("CNTY001", "青山县人民医院", FacilityLevel.SECONDARY, "青山县"),
    ("TWN001", "青山县石桥镇卫生院", FacilityLevel.PRIMARY, "青山县"),
    ("CMTY001", "东城区社区卫生服务中心", FacilityLevel.PRIMARY, "东城区"),
]

# staff no, family, given, facility, department, title, specialties, ICD-10 expertise, years, online
EXPERTS = [
    ("E1001", "王", "建国", "HOSP001", "心血管内科", PractitionerTitle.CHIEF, ["冠心病", "高血压"],
     ["I10", "I20", "I21", "I25"], 28, True),
    ("E1002", "李", "秀英", "HOSP001", "心血管内科", PractitionerTitle.ASSOCIATE_CHIEF, ["心律失常"],
     ["I48", "I49", "I10"], 16, True),
    ("E1003", "张", "伟", "HOSP001", "呼吸内科", PractitionerTitle.CHIEF, ["慢阻肺", "肺炎"],
     ["J44", "J18", "J45"], 25, True),
    ("E1004", "刘", "芳", "HOSP001", "内分泌科", PractitionerTitle.ASSOCIATE_CHIEF, ["糖尿病"],
     ["E11", "E10", "E05"], 14, False),
    ("E1005", "陈", "静", "HOSP001", "神经内科", PractitionerTitle.CHIEF, ["脑卒中"],
     ["I63", "I61", "G45"], 22, True),
    ("E1006", "杨", "磊", "HOSP001", "放射科", PractitionerTitle.ATTENDING, ["CT诊断", "MRI诊断"],
     ["R91", "I63"], 9, True),
    ("E2001", "赵", "明", "CNTY001", "消化内科", PractitionerTitle.ATTENDING, ["胃炎"],
     ["K29", "K21", "K25"], 11, True),
]

DOCTORS = [
    ("D3001", "孙", "丽", "TWN001", "全科", PractitionerTitle.RESIDENT, 4),
    ("D3002", "周", "强", "CMTY001", "全科", PractitionerTitle.ATTENDING, 8),
]

# MRN, facility, family, given, gender, birth date, national id, phone
PATIENTS = [
    ("MRN0001", "TWN001", "吴", "桂兰", Gender.FEMALE, date(1956, 3, 14), "110101195603140022", "13800000001"),
    ("MRN0002", "TWN001", "郑", "大勇", Gender.MALE, date(1962, 11, 2), "110101196211020031", "13800000002"),
    ("MRN0003", "TWN001", "马", "小红", Gender.FEMALE, date(1988, 7, 30), "110101198807300048", "13800000003"),
    ("MRN0101", "CMTY001", "欧阳", "志远", Gender.MALE, date(1949, 1, 5), "110101194901050017", "13800000004"),
    ("MRN0102", "CMTY001", "林", "婉清", Gender.FEMALE, date(1975, 9, 21), "110101197509210026", "13800000005"),
]


def mrn_system(facility_code: str) -> str:
    return f"urn:huizhen:demo:{facility_code}:mrn"


async def load_demo(settings: Settings) -> str:
    services = await create_services(settings)
    try:
        async with services.store.write() as repo:
            facility_ids: dict[str, str] = {}
            for code, name, level, region in FACILITIES:
                f = await repo.directory.save_facility(Facility(code=code, name=name, level=level, region=region))
                facility_ids[code] = f.id
            lines = ["experts:"]
            for no, fam, giv, fac, dept, title, spec, icd, years, online in EXPERTS:
                p = await repo.directory.save_practitioner(Practitioner(
                    name=HumanName.of(fam, (giv,)), identifiers=[Identifier(STAFF_SYSTEM, no)],
                    facility_id=facility_ids[fac], department=dept, title=title, specialties=spec,
                    expertise=icd, years_experience=years, online=online,
                ))
                lines.append(f"  {p.id}  {p.name.text} {dept} {title.value} @ {fac}")
            lines.append("primary doctors:")
            for no, fam, giv, fac, dept, title, years in DOCTORS:
                p = await repo.directory.save_practitioner(Practitioner(
                    name=HumanName.of(fam, (giv,)), identifiers=[Identifier(STAFF_SYSTEM, no)],
                    facility_id=facility_ids[fac], department=dept, title=title, years_experience=years,
                ))
                lines.append(f"  {p.id}  {p.name.text} {dept} @ {fac}")
            lines.append("patients:")
            for mrn, fac, fam, giv, gender, born, nid, phone in PATIENTS:
                mrn_id = Identifier(mrn_system(fac), mrn)
                patient = await repo.patients.by_identifier(mrn_id.system, mrn_id.value)
                patient = patient or Patient(name=HumanName.of(fam, (giv,)))
                patient.identifiers = [mrn_id, Identifier(NATIONAL_ID, nid)]
                patient.gender, patient.birth_date, patient.phone = gender, born, phone
                patient.facility_id = facility_ids[fac]
                await repo.patients.save(patient)
                lines.append(f"  {patient.id}  {patient.name.text} {mrn} @ {fac}")
    finally:
        await services.close()
    return "\n".join(lines)
