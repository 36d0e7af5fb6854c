"""The insurance estimate: decimal yuan, caps, regions, eligibility, refusals."""

from decimal import Decimal
from pathlib import Path

import pytest

from huizhen.integration.coverage import estimate, load_coverage_rules
from huizhen.integration.errors import BadInput, ConfigurationError
from huizhen.integration.model import ConsultationStatus, FacilityLevel, PractitionerTitle, Urgency

RULES = load_coverage_rules(Path(__file__).parents[2] / "config" / "coverage.toml")


def _estimate(**kw: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = dict(
        status=ConsultationStatus.PENDING, urgency=Urgency.ROUTINE, expert_title=PractitionerTitle.CHIEF,
        requesting_level=FacilityLevel.PRIMARY, region=None, insurance_type="employee",
    )
    args.update(kw)
    return estimate(RULES, **args)  # type: ignore[arg-type]


def test_employee_capped() -> None:
    e = _estimate()  # 300 × 70% = 210, cap 200
    assert (e.fee, e.covered, e.patient_share) == (Decimal("300.00"), Decimal("200.00"), Decimal("100.00"))
    assert all(isinstance(v, Decimal) for v in (e.fee, e.covered, e.patient_share))


def test_resident_rate_below_cap_and_urgency_surcharge() -> None:
    e = _estimate(expert_title=PractitionerTitle.ATTENDING, urgency=Urgency.URGENT, insurance_type="resident")
    assert (e.fee, e.covered, e.patient_share) == (Decimal("150.00"), Decimal("75.00"), Decimal("75.00"))
    assert any("URGENT" in r for r in e.reasons)


def test_rounding_half_up_to_the_fen() -> None:
    e = _estimate(region="青山县", expert_title=PractitionerTitle.RESIDENT, urgency=Urgency.ROUTINE,
                  insurance_type="resident")  # 60 × 0.60
    assert e.covered == Decimal("36.00") and e.covered + e.patient_share == e.fee


def test_region_rules_and_fallback_to_default() -> None:
    assert _estimate(region="青山县").covered == Decimal("220.00")
    unknown = _estimate(region="火星")
    assert unknown.region == "default" and unknown.covered == Decimal("200.00")


def test_tertiary_requester_not_eligible() -> None:
    e = _estimate(requesting_level=FacilityLevel.TERTIARY)
    assert e.covered == Decimal(0) and e.patient_share == e.fee
    assert any("not eligible" in r for r in e.reasons)


def test_no_expert_yet_uses_default_fee_and_self_pay_covers_nothing() -> None:
    e = _estimate(expert_title=None, insurance_type="self_pay", status=ConsultationStatus.DRAFT)
    assert (e.fee, e.covered) == (Decimal("200.00"), Decimal("0.00"))


def test_cancelled_and_unknown_insurance_are_refused() -> None:
    with pytest.raises(BadInput, match="cancelled"):
        _estimate(status=ConsultationStatus.CANCELLED)
    with pytest.raises(BadInput, match=r"unknown insurance type 'gold'.*employee"):
        _estimate(insurance_type="gold")


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('[fees]\ndefault = 100.5\n[regions.default]\n', "string amount"),
        ('[fees]\ndefault = "abc"\n[regions.default]\n', "not a decimal"),
        ('[fees]\nCHIEF = "1.00"\n[regions.default]\n', "needs a default"),
        ('[fees]\ndefault = "1.00"\n', "regions.default"),
        ('[fees]\ndefault = "1.00"\n[regions.default.insurance.x]\nrate = "1.5"\ncap = "1"\n', "between 0 and 1"),
        ('[fees]\ndefault = "-1.00"\n[regions.default]\n', "negative"),
        ("[fees\n", "cannot read"),
    ],
)
def test_bad_rules_are_refused_with_the_key(tmp_path: Path, body: str, problem: str) -> None:
    path = tmp_path / "coverage.toml"
    path.write_text(body)
    with pytest.raises(ConfigurationError, match=problem):
        load_coverage_rules(path)
