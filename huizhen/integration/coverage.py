"""Insurance estimate of a consultation: fee, covered amount, patient share.

Pure rules over ``config/coverage.toml``: the fee follows the expert's title
plus an urgency surcharge; the region (of the requesting facility) decides
which facility levels are eligible and, per insurance type, the coverage rate
and the cap per consultation. Amounts are :class:`~decimal.Decimal` yuan,
rounded half-up to the fen; never floats.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from huizhen.integration.errors import BadInput, ConfigurationError
from huizhen.integration.model import ConsultationStatus, FacilityLevel, PractitionerTitle, Urgency

FEN = Decimal("0.01")
DEFAULT_REGION = "default"


@dataclass(frozen=True, slots=True)
class InsuranceRule:
    rate: Decimal
    cap: Decimal


@dataclass(frozen=True, slots=True)
class RegionRules:
    eligible_levels: frozenset[FacilityLevel]
    insurance: dict[str, InsuranceRule]


@dataclass(frozen=True)
class CoverageRules:
    fees: dict[str, Decimal]
    surcharges: dict[Urgency, Decimal]
    regions: dict[str, RegionRules] = field(default_factory=dict)

    def region(self, name: str | None) -> tuple[str, RegionRules]:
        if name and name in self.regions:
            return name, self.regions[name]
        if DEFAULT_REGION not in self.regions:
            raise ConfigurationError("coverage rules have no [regions.default] section")
        return DEFAULT_REGION, self.regions[DEFAULT_REGION]


@dataclass(frozen=True, slots=True)
class Estimate:
    fee: Decimal
    covered: Decimal
    patient_share: Decimal
    region: str
    insurance_type: str
    reasons: tuple[str, ...]


def estimate(
    rules: CoverageRules,
    *,
    status: ConsultationStatus,
    urgency: Urgency,
    expert_title: PractitionerTitle | None,
    requesting_level: FacilityLevel | None,
    region: str | None,
    insurance_type: str,
) -> Estimate:
    if status is ConsultationStatus.CANCELLED:
        raise BadInput("a cancelled consultation has no fee to estimate")
    base = rules.fees.get(expert_title.value if expert_title else "default", rules.fees["default"])
    surcharge = rules.surcharges.get(urgency, Decimal(0))
    fee = (base + surcharge).quantize(FEN, ROUND_HALF_UP)
    reasons = [f"fee {base} ({expert_title.value if expert_title else 'no expert yet'})"]
    if surcharge:
        reasons.append(f"urgency {urgency.value} +{surcharge}")
    region_name, region_rules = rules.region(region)
    rule = region_rules.insurance.get(insurance_type)
    if rule is None:
        known = ", ".join(sorted(region_rules.insurance))
        raise BadInput(f"unknown insurance type {insurance_type!r} in region {region_name} (known: {known})")
    covered = Decimal(0)
    if requesting_level not in region_rules.eligible_levels:
        level = requesting_level.value if requesting_level else "unknown"
        reasons.append(f"not covered: requesting facility level {level} is not eligible in {region_name}")
    else:
        covered = min((fee * rule.rate).quantize(FEN, ROUND_HALF_UP), rule.cap)
        reasons.append(f"{insurance_type} in {region_name}: {rule.rate * 100:.0f}% up to {rule.cap}")
    return Estimate(
        fee=fee, covered=covered, patient_share=fee - covered, region=region_name,
        insurance_type=insurance_type, reasons=tuple(reasons),
    )


def load_coverage_rules(path: Path) -> CoverageRules:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"cannot read coverage rules {path}: {exc}") from exc
    try:
        fees_doc = dict(doc["fees"])
        surcharges = {Urgency(k): _yuan(v, f"fees.urgency_surcharge.{k}")
                      for k, v in fees_doc.pop("urgency_surcharge", {}).items()}
        fees = {k: _yuan(v, f"fees.{k}") for k, v in fees_doc.items()}
        if "default" not in fees:
            raise ConfigurationError(f"{path}: [fees] needs a default")
        regions = {name: _region(name, body) for name, body in doc.get("regions", {}).items()}
    except (KeyError, ValueError) as exc:
        raise ConfigurationError(f"{path}: {exc}") from exc
    rules = CoverageRules(fees=fees, surcharges=surcharges, regions=regions)
    rules.region(None)  # a default region must exist
    return rules


def _region(name: str, body: dict[str, Any]) -> RegionRules:
    insurance = {}
    for kind, rule in body.get("insurance", {}).items():
        rate = _decimal(rule["rate"], f"regions.{name}.insurance.{kind}.rate")
        if not Decimal(0) <= rate <= Decimal(1):
            raise ConfigurationError(f"regions.{name}.insurance.{kind}.rate must be between 0 and 1")
        insurance[kind] = InsuranceRule(rate=rate, cap=_yuan(rule["cap"], f"regions.{name}.insurance.{kind}.cap"))
    return RegionRules(
        eligible_levels=frozenset(FacilityLevel(v) for v in body.get("eligible_levels", [])),
        insurance=insurance,
    )


def _yuan(value: object, where: str) -> Decimal:
    amount = _decimal(value, where)
    if amount < 0:
        raise ConfigurationError(f"{where} must not be negative")
    return amount.quantize(FEN, ROUND_HALF_UP)


def _decimal(value: object, where: str) -> Decimal:
    if not isinstance(value, str):  # a TOML float would already have lost the fen
        raise ConfigurationError(f"{where} must be a string amount such as \"120.00\", not {value!r}")
    try:
        return Decimal(value)
    except InvalidOperation as exc:
        raise ConfigurationError(f"{where}: {value!r} is not a decimal amount") from exc
