"""Transaction and batch Bundles, the pure part: entries, checks, dependency order.

:func:`parse_bundle` validates the Bundle and each entry on its own (so a
batch can apply its good entries), checks the rules of R4 that bind entries
together (bdl-3 request, bdl-7 unique fullUrl, request URL vs resource type),
finds every internal reference and orders the entries so that what is
referenced comes first. A ``urn:uuid:`` reference that no entry's fullUrl
answers is an error ("a reference to nothing").

Entries are kept, applied or not: a resource type Huizhen does not map is an
``information`` issue (validated, journaled, not applied), so a real patient
bundle with Claims and Immunizations is accepted for what Huizhen uses.
Methods other than POST and PUT are ``not-supported`` errors.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from huizhen.integration.model import Identifier
from huizhen.mappings.fhir.inbound import is_mapped
from huizhen.mappings.fhir.jsonio import load_json
from huizhen.mappings.fhir.outcome import InvalidResource, Issue, IssueType, error, information, warning
from huizhen.mappings.fhir.references import RefKind, parse_reference, reference_strings
from huizhen.mappings.fhir.validate import Validated, validate_resource

APPLIED_METHODS = frozenset({"POST", "PUT"})


@dataclass(frozen=True, slots=True)
class BundleEntry:
    index: int
    full_url: str | None
    method: str | None  # None outside transaction/batch bundles
    url: str | None
    if_none_exist: str | None
    resource: Validated | None
    issues: tuple[Issue, ...] = ()

    @property
    def path(self) -> str:
        return f"Bundle.entry[{self.index}]"

    @property
    def ok(self) -> bool:
        return not any(issue.blocking for issue in self.issues)

    @property
    def applies(self) -> bool:
        """Valid, of a mapped type, and a method Huizhen carries out."""
        return (
            self.ok
            and self.resource is not None
            and self.resource.model is not None
            and is_mapped(self.resource.resource_type)
            and (self.method is None or self.method in APPLIED_METHODS)
        )

    @property
    def condition(self) -> Identifier | None:
        """The identifier of a conditional create (ifNoneExist) or update (PUT Type?identifier=)."""
        query = self.if_none_exist or (self.url.partition("?")[2] if self.url and "?" in self.url else "")
        for name, value in parse_qsl(query):
            if name == "identifier":
                system, _, code = value.rpartition("|")
                return Identifier(system, code)
        return None


@dataclass(frozen=True, slots=True)
class ParsedBundle:
    type: str
    entries: tuple[BundleEntry, ...]
    order: tuple[int, ...]  # entry indexes, referenced entries first
    issues: tuple[Issue, ...]  # bundle-level issues (entry issues are on the entries)
    keys: dict[str, int]  # fullUrl / Type/id -> entry index

    @property
    def rejected(self) -> bool:
        """A transaction with any bad entry is rejected whole; a batch never is."""
        return self.type == "transaction" and not all(e.ok for e in self.entries)

    def all_issues(self) -> list[Issue]:
        return [*self.issues, *(i for e in self.entries for i in e.issues)]

    def resolve(self, reference: str) -> int | None:
        """The entry a reference string points at, if it is inside this Bundle."""
        return _target(reference, self.keys)


def parse_bundle(body: bytes | str | dict[str, Any]) -> ParsedBundle:
    """Raise :class:`InvalidResource` when the Bundle itself is unusable."""
    data = body if isinstance(body, dict) else load_json(body)
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        validate_resource(data, expected_type="Bundle")  # raises with the reason
    raw_entries: list[Any] = data["entry"] if isinstance(data.get("entry"), list) else []
    shell = {**data, "entry": [_without_resource(e) for e in raw_entries]} if raw_entries else data
    by_entry: dict[int, list[Issue]] = {}
    bundle_level: list[Issue] = []
    try:
        bundle_level += validate_resource(shell, expected_type="Bundle").warnings
    except InvalidResource as exc:
        for issue in exc.issues:
            n = _entry_index(issue)
            if n is None:
                bundle_level.append(issue)
            else:
                by_entry.setdefault(n, []).append(issue)
        if any(i.blocking for i in bundle_level):
            raise
    kind = str(data.get("type"))
    entries = [_entry(n, raw, kind, by_entry.get(n, [])) for n, raw in enumerate(raw_entries)]
    keys = _keys(entries)
    entries = [_check_references(e, keys, kind) for e in entries]
    order, cyclic = _order(entries, keys)
    if cyclic:
        bundle_level.append(warning(IssueType.PROCESSING, "entries refer to each other in a circle", "Bundle.entry"))
    return ParsedBundle(kind, tuple(entries), tuple(order), tuple(bundle_level), keys)


def _without_resource(entry: Any) -> Any:
    return {k: v for k, v in entry.items() if k != "resource"} if isinstance(entry, dict) else entry


def _entry_index(issue: Issue) -> int | None:
    for expression in issue.expression:
        if expression.startswith("Bundle.entry["):
            return int(expression[len("Bundle.entry[") : expression.index("]")])
    return None


def _entry(n: int, raw: Any, kind: str, issues: list[Issue]) -> BundleEntry:
    at = f"Bundle.entry[{n}]"
    raw = raw if isinstance(raw, dict) else {}
    request = raw.get("request") if isinstance(raw.get("request"), dict) else {}
    method, url = request.get("method"), request.get("url")
    if kind in ("transaction", "batch") and not request:
        issues.append(error(IssueType.REQUIRED, f"a {kind} entry needs a request (bdl-3)", f"{at}.request"))
    resource = None
    if "resource" in raw:
        try:
            resource = validate_resource(raw["resource"], path=f"{at}.resource")
            issues.extend(resource.warnings)
        except InvalidResource as exc:
            issues.extend(exc.issues)
    elif method in ("POST", "PUT"):
        issues.append(error(IssueType.REQUIRED, f"{method} needs a resource", f"{at}.resource"))
    if method is not None and method not in APPLIED_METHODS:
        issues.append(error(IssueType.NOT_SUPPORTED, f"{method} is not supported in a Bundle", f"{at}.request.method"))
    if isinstance(url, str) and "/$" in f"/{url}":
        issues.append(error(IssueType.NOT_SUPPORTED, "operations are not supported in a Bundle", f"{at}.request.url"))
    elif resource is not None and isinstance(url, str):
        target = url.split("?")[0].split("/")[0]
        if target and target != resource.resource_type:
            issues.append(
                error(
                    IssueType.INVALID,
                    f"request.url names {target}, the resource is a {resource.resource_type}",
                    f"{at}.request.url",
                )
            )
    if resource is not None and not is_mapped(resource.resource_type) and not any(i.blocking for i in issues):
        issues.append(
            information(
                IssueType.INFORMATIONAL, f"{resource.resource_type} is validated but not applied", f"{at}.resource"
            )
        )
    full_url = raw.get("fullUrl") if isinstance(raw.get("fullUrl"), str) else None
    if_none_exist = request.get("ifNoneExist") if isinstance(request.get("ifNoneExist"), str) else None
    return BundleEntry(
        n, full_url, method, url if isinstance(url, str) else None, if_none_exist, resource, tuple(issues)
    )


def _keys(entries: list[BundleEntry]) -> dict[str, int]:
    keys: dict[str, int] = {}
    for e in entries:
        names = [e.full_url] if e.full_url else []
        if e.full_url and (ref := parse_reference(e.full_url)).type and ref.id:
            names.append(f"{ref.type}/{ref.id}")
        if e.resource is not None:
            if e.method == "PUT" and e.url and "?" not in e.url:
                names.append(e.url)
            elif e.resource.id and not e.full_url:
                names.append(f"{e.resource.resource_type}/{e.resource.id}")
            for ident in _identifiers(e.resource.data):
                names.append(f"{e.resource.resource_type}?{ident}")
        for name in names:
            keys.setdefault(name, e.index)
    return keys


def _identifiers(data: dict[str, Any]) -> Iterable[str]:
    for ident in data.get("identifier") or ():
        if isinstance(ident, dict) and ident.get("value"):
            yield f"{ident.get('system', '')}|{ident['value']}"


def _check_references(e: BundleEntry, keys: dict[str, int], kind: str) -> BundleEntry:
    issues = list(e.issues)
    if e.full_url and keys.get(e.full_url) != e.index:
        # bdl-7; harmless between independent batch entries, fatal to a transaction
        report = error if kind == "transaction" else warning
        issues.append(report(IssueType.DUPLICATE, f"fullUrl {e.full_url} is used twice (bdl-7)", f"{e.path}.fullUrl"))
    if e.resource is not None:
        for at, reference in reference_strings(e.resource.data, f"{e.path}.resource"):
            if reference.startswith("urn:") and reference not in keys:
                issues.append(error(IssueType.NOT_FOUND, f"{reference} is no entry's fullUrl", at))
    if len(issues) == len(e.issues):
        return e
    return BundleEntry(e.index, e.full_url, e.method, e.url, e.if_none_exist, e.resource, tuple(issues))


def _order(entries: list[BundleEntry], keys: dict[str, int]) -> tuple[list[int], bool]:
    """Kahn's algorithm, lowest index first among the ready; a cycle keeps index order."""
    needs: dict[int, set[int]] = {e.index: set() for e in entries}
    for e in entries:
        if e.resource is None:
            continue
        for _, reference in reference_strings(e.resource.data, ""):
            target = _target(reference, keys)
            if target is not None and target != e.index:
                needs[e.index].add(target)
    users: dict[int, list[int]] = {n: [] for n in needs}
    for n, targets in needs.items():
        for t in targets:
            users[t].append(n)
    waiting = {n: len(t) for n, t in needs.items()}
    ready = [n for n, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        n = heapq.heappop(ready)
        order.append(n)
        for user in users[n]:
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, user)
    cyclic = len(order) < len(entries)
    order += sorted(n for n in needs if n not in set(order))
    return order, cyclic


def _target(reference: str, keys: dict[str, int]) -> int | None:
    if reference in keys:
        return keys[reference]
    ref = parse_reference(reference)
    if ref.type and ref.id:
        return keys.get(f"{ref.type}/{ref.id}")
    if ref.kind is RefKind.CONDITIONAL and ref.identifier is not None:
        return keys.get(f"{ref.type}?{ref.identifier.system}|{ref.identifier.value}")
    return None
