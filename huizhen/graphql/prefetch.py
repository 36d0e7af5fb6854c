"""Look-ahead for lists: load a page's relations before its rows are resolved.

A DataLoader already batches a page's relations into one statement each, but
only once graphql-core has started every row's relation fields as awaitables:
a task, a future and a gather per row and field, and a connection per loader.
When the list's resolver reads the query's selection first, loads the
relations it names in the transaction that read the page, and primes the
request's loaders with them, the row fields find their values at once
(``context.ready``) and graphql-core completes the page without awaiting.

What is loaded depends only on the selection and on the viewer's roles (a
relation the roles may not read is not loaded; its field still answers
``FORBIDDEN``); the rows themselves are the visible page, so nothing is read
that the resolvers would not have read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from strawberry.dataloader import DataLoader
from strawberry.types.nodes import FragmentSpread, InlineFragment, SelectedField, Selection

from huizhen.graphql.context import in_order
from huizhen.graphql.types import Info
from huizhen.integration import model as m
from huizhen.integration.paging import MAX_PAGE
from huizhen.integration.repo import Repository

_DEFAULT_OBSERVATIONS = 20  # ``Patient.observations(first:)``'s default


def _int(value: Any) -> int | None:
    """An Int argument as the selection holds it: a variable's value, or a literal's text."""
    if value is None or isinstance(value, int):
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1  # not an Int: the resolver's own argument coercion answers


def fields(selections: Iterable[Selection]) -> dict[str, list[SelectedField]]:
    """The selected fields by name, through fragments (a name can be selected under several aliases)."""
    out: dict[str, list[SelectedField]] = {}
    for s in selections:
        if isinstance(s, SelectedField):
            out.setdefault(s.name, []).append(s)
        elif isinstance(s, (FragmentSpread, InlineFragment)):
            for name, found in fields(s.selections).items():
                out.setdefault(name, []).extend(found)
    return out


def below(found: Sequence[SelectedField]) -> dict[str, list[SelectedField]]:
    return fields(s for f in found for s in f.selections)


def connection_nodes(info: Info) -> dict[str, list[SelectedField]]:
    """What the query selects on ``edges { node { … } }`` of the connection being resolved."""
    return below(below(below(fields(info.selected_fields).get(info.field_name, [])).get("edges", [])).get("node", []))


async def consultation_relations(info: Info, repo: Repository, rows: Sequence[m.Consultation]) -> None:
    """Load what the selection asks of these consultations — patient (and its observations and
    studies), requester, expert, facility, attached observations and studies — in ``repo``'s
    transaction (the one that read the page: one snapshot, one connection)."""
    if not rows:
        return
    ctx = info.context
    loaders = ctx.loaders
    sel = connection_nodes(info)
    if "patient" in sel and ctx.allowed("patient", "read"):
        pids = list(dict.fromkeys(c.patient_id for c in rows))
        _prime(loaders.patient, pids, await repo.patients.by_ids(pids))
        await patient_relations(info, repo, below(sel["patient"]), pids)
    practitioners = [c.requester_id for c in rows if "requester" in sel]
    practitioners += [c.expert_id for c in rows if "expert" in sel]
    if practitioners := [p for p in dict.fromkeys(practitioners) if p]:
        _prime(loaders.practitioner, practitioners, await repo.directory.practitioners_by_ids(practitioners))
    if "facility" in sel:
        await _facilities(info, repo, [c.facility_id for c in rows])
    if "observations" in sel and ctx.allowed("observation", "read"):
        ids = list(dict.fromkeys(o for c in rows for o in c.observation_ids))
        _prime(loaders.observation, ids, await repo.clinical.observations_by_ids(ids))
    if "imagingStudies" in sel and ctx.allowed("study", "read"):
        ids = list(dict.fromkeys(s for c in rows for s in c.study_ids))
        _prime(loaders.study, ids, await repo.clinical.studies_by_ids(ids, instances=False))


async def patient_page_relations(info: Info, repo: Repository, rows: Sequence[m.Patient]) -> None:
    """Load what the selection asks of a page of patients: observations, studies, facility."""
    if not rows:
        return
    sel = connection_nodes(info)
    await patient_relations(info, repo, sel, [p.id for p in rows])
    if "facility" in sel:
        await _facilities(info, repo, [p.facility_id for p in rows])


async def patient_relations(
    info: Info, repo: Repository, sel: dict[str, list[SelectedField]], pids: Sequence[str]
) -> None:
    ctx = info.context
    if "observations" in sel and ctx.allowed("observation", "read"):
        for first in dict.fromkeys(_int(f.arguments.get("first", _DEFAULT_OBSERVATIONS)) for f in sel["observations"]):
            if first is None or 0 <= first <= MAX_PAGE:  # else the resolver refuses
                found = await repo.clinical.observations_for_patients(pids, latest=first)
                ctx.loaders.patient_observations.prime_many({(p, first): found[p] for p in pids})
    if "imagingStudies" in sel and ctx.allowed("study", "read"):
        studies = await repo.clinical.studies_for_patients(pids, instances=False)
        ctx.loaders.patient_studies.prime_many({p: studies[p] for p in pids})


async def _facilities(info: Info, repo: Repository, ids: Iterable[str | None]) -> None:
    if wanted := [f for f in dict.fromkeys(ids) if f]:
        _prime(info.context.loaders.facility, wanted, await repo.directory.facilities(wanted))


def _prime(loader: DataLoader[str, Any], ids: Sequence[str], found: Iterable[Any]) -> None:
    """What the loader's batch function would have answered: each id's row, None where there is none."""
    loader.prime_many(dict(zip(ids, in_order(ids, found), strict=True)))
