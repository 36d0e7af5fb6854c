"""DICOMweb for browser viewers (OHIF and the like): QIDO-RS search and WADO-RS retrieve (PS3.18).

Mounted at ``/dicomweb`` behind the same bearer authentication as GraphQL and
FHIR (``huizhen/app.py``):

* QIDO-RS ``GET /studies``, ``/studies/{study}/series``,
  ``/studies/{study}/series/{series}/instances``, ``/studies/{study}/instances``,
  ``/series``, ``/instances``: ``application/dicom+json``; query keys as in
  :mod:`huizhen.mappings.dicom_qido`, matched with the C-FIND rules;
* WADO-RS ``GET /studies/{study}[/series/{series}[/instances/{instance}]]``:
  ``multipart/related; type="application/dicom"``, the objects as stored
  (their own transfer syntax, as ``transfer-syntax=*`` asks);
  ``…/metadata``: the headers as ``application/dicom+json`` (bulk data left
  out); ``…/instances/{instance}/frames/{1,2,…}``: the frames as stored
  (``application/octet-stream``, with ``transfer-syntax`` when compressed);
  ``…/instances/{instance}/rendered`` and ``…/frames/{n}/rendered``:
  ``image/jpeg`` or ``image/png`` (406 when the pixels cannot be decoded here).

A viewer sees a study when the row-level rules (:mod:`huizhen.rbac.rows`) let
it see the patient, or the consultation the study is attached to; other
studies do not exist for it (404, or no match). Every search and retrieve is
audited. Errors are JSON ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import asyncio
import io
import json
import secrets
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, tzinfo

from pydicom import dcmread
from pydicom.dataelem import DataElement
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router

from huizhen.adapters.dicom_find_service import plan, records, resolve_patients
from huizhen.adapters.objects import ObjectStore, ObjectStoreError
from huizhen.integration.errors import BadInput, HuizhenError, NotFound
from huizhen.integration.model import AuditEvent, Consultation, ImagingStudy, Patient
from huizhen.integration.repo import Repository
from huizhen.integration.repo.imaging import StoredInstance, StudyFilter
from huizhen.integration.store import Store
from huizhen.mappings.dicom_find import find_response
from huizhen.mappings.dicom_qido import qido_query
from huizhen.mappings.dicom_query import FindQuery, QueryLevel
from huizhen.mappings.dicom_render import MEDIA_TYPES, NotRenderable, frame_bytes, render_frame
from huizhen.rbac.audit import DENIED
from huizhen.rbac.enforcer import Authorizer
from huizhen.rbac.identity import Principal
from huizhen.rbac.rows import PLATFORM, Scope
from huizhen.rbac.viewer import resolve_scope

DICOM_JSON = "application/dicom+json"
_SCAN_LIMIT = 5000  # candidate studies one search examines


class NotAcceptable(HuizhenError):
    """None of the media types the request accepts can be produced."""


class DicomWeb:
    def __init__(self, store: Store, objects: ObjectStore, *, tz: tzinfo, authorizer: Authorizer) -> None:
        self.store = store
        self.objects = objects
        self.tz = tz
        self.authorizer = authorizer

    def app(self) -> Router:
        s, se, i = "/studies/{study}", "/studies/{study}/series/{series}", "/studies/{study}/series/{series}/instances"
        return Router(routes=[
            Route("/studies", self.search_studies),
            Route(f"{s}/series", self.search_series),
            Route("/series", self.search_series),
            Route(f"{i}", self.search_instances),
            Route(f"{s}/instances", self.search_instances),
            Route("/instances", self.search_instances),
            Route(s, self.retrieve),
            Route(se, self.retrieve),
            Route(i + "/{instance}", self.retrieve),
            Route(f"{s}/metadata", self.metadata),
            Route(f"{se}/metadata", self.metadata),
            Route(i + "/{instance}/metadata", self.metadata),
            Route(i + "/{instance}/frames/{frames}", self.frames),
            Route(i + "/{instance}/rendered", self.rendered),
            Route(i + "/{instance}/frames/{frame:int}/rendered", self.rendered),
        ])

    # QIDO-RS

    async def search_studies(self, request: Request) -> Response:
        return await _answer(self._search(request, QueryLevel.STUDY))

    async def search_series(self, request: Request) -> Response:
        return await _answer(self._search(request, QueryLevel.SERIES))

    async def search_instances(self, request: Request) -> Response:
        return await _answer(self._search(request, QueryLevel.IMAGE))

    async def _search(self, request: Request, level: QueryLevel) -> Response:
        p = request.path_params
        q = qido_query(level, request.query_params.multi_items(), study_uid=p.get("study"), series_uid=p.get("series"))
        query = FindQuery.from_identifier(q.identifier)
        scope = await self._scope(request)
        async with self.store.read() as repo:
            f = await resolve_patients(repo, plan(query))
            ids = await repo.imaging.find_study_ids(f, limit=_SCAN_LIMIT)
            studies, patients = await self._visible(repo, scope, await repo.clinical.studies_by_ids(ids))
        await self._audit(scope, f"QIDO-RS {level}", len(studies))
        issuer = scope.facility_code or ""
        found = []
        for record in records(query, studies, patients, default_issuer=issuer, tz=self.tz):
            if query.matches(record):
                found.append(record)
        page = found[q.offset : q.offset + q.limit]
        body = []
        for record in page:
            ds = find_response(q.identifier, record, level=level)
            del ds.QueryRetrieveLevel
            body.append(ds.to_json_dict())
        # PS3.18 8.3.4: an origin server without fuzzy matching says so, and says when the page
        # left matches out (a viewer otherwise takes a partial list for the whole)
        warnings = []
        if q.fuzzy:
            warnings.append(f"299 {_service(request)}: {FUZZY_WARNING}")
        if q.offset + q.limit < len(found):
            warnings.append(f"299 {_service(request)}: {MORE_RESULTS_WARNING}")
        headers = {"warning": ", ".join(warnings)} if warnings else None
        return JSONResponse(body, media_type=DICOM_JSON, headers=headers)

    # WADO-RS

    async def retrieve(self, request: Request) -> Response:
        return await _answer(self._retrieve(request))

    async def _retrieve(self, request: Request) -> Response:
        _accepts(request, ("multipart/related", "application/dicom"))
        found = await self._instances(request, "WADO-RS retrieve")
        parts = await asyncio.to_thread(self._read_all, found)
        return _multipart(parts, "application/dicom", "application/dicom")

    async def metadata(self, request: Request) -> Response:
        return await _answer(self._metadata(request))

    async def _metadata(self, request: Request) -> Response:
        _accepts(request, (DICOM_JSON, "application/json"))
        found = await self._instances(request, "WADO-RS metadata")
        headers = await asyncio.to_thread(self._headers, found)
        return Response(json.dumps(headers, ensure_ascii=False).encode(), media_type=DICOM_JSON)

    async def frames(self, request: Request) -> Response:
        return await _answer(self._frames(request))

    async def _frames(self, request: Request) -> Response:
        _accepts(request, ("multipart/related",))
        try:
            wanted = [int(n) for n in request.path_params["frames"].split(",")]
        except ValueError as exc:
            raise BadInput("frames must be a comma-separated list of frame numbers") from exc
        [item] = await self._instances(request, "WADO-RS frames")
        data = await asyncio.to_thread(self.objects.read, item.object_key)
        frames, syntax = await asyncio.to_thread(frame_bytes, data, wanted)
        asked = _requested_syntax(request.headers.get("accept", ""))
        if asked not in (None, "*", syntax or "1.2.840.10008.1.2.1"):
            raise NotAcceptable(f"frames are served as stored ({syntax or 'uncompressed'}), not as {asked}")
        part_type = "application/octet-stream" + (f"; transfer-syntax={syntax}" if syntax else "")
        return _multipart(frames, part_type, "application/octet-stream")

    async def rendered(self, request: Request) -> Response:
        return await _answer(self._rendered(request))

    async def _rendered(self, request: Request) -> Response:
        media_type = _accepts(request, tuple(MEDIA_TYPES))
        [item] = await self._instances(request, "WADO-RS rendered")
        data = await asyncio.to_thread(self.objects.read, item.object_key)
        frame = int(request.path_params.get("frame", 1))
        image = await asyncio.to_thread(render_frame, data, frame, media_type)
        return Response(image, media_type=media_type)

    async def _instances(self, request: Request, what: str) -> list[StoredInstance]:
        p = request.path_params
        scope = await self._scope(request)
        async with self.store.read() as repo:
            ref = await repo.imaging.study_ref(p["study"])
            visible: list[ImagingStudy] = []
            if ref is not None:
                visible, _ = await self._visible(repo, scope, await repo.clinical.studies_by_ids([ref.id]))
            if ref is None or not visible:
                raise NotFound("ImagingStudy", p["study"])
            f = StudyFilter(
                series_uids=[p["series"]] if "series" in p else None,
                sop_instance_uids=[p["instance"]] if "instance" in p else None,
            )
            found = await repo.imaging.stored_instances([ref.id], f)
        if not found:
            raise NotFound("ImagingInstance", p.get("instance") or p.get("series") or p["study"])
        await self._audit(scope, f"{what} {p['study']}", len(found))
        return found

    def _read_all(self, found: Sequence[StoredInstance]) -> list[bytes]:
        return [self.objects.read(item.object_key) for item in found]

    def _headers(self, found: Sequence[StoredInstance]) -> list[dict[str, object]]:
        out = []
        for item in found:
            ds = dcmread(io.BytesIO(self.objects.read(item.object_key)), stop_before_pixels=True)
            out.append(ds.to_json_dict(bulk_data_threshold=4096, bulk_data_element_handler=_bulk_uri(item)))
        return out

    # row-level visibility and audit

    async def _scope(self, request: Request) -> Scope:
        principal = request.scope.get("state", {}).get("principal")
        if not isinstance(principal, Principal):  # mounted without BearerAuth: refuse rather than guess
            raise HTTPException(401, "no authenticated principal")
        domain = principal.facility or PLATFORM
        roles = self.authorizer.roles_of(principal.sub, principal.roles, domain)
        if not self.authorizer.allowed(roles, domain, "study", "read"):  # the role check, then the row rules
            async with self.store.write() as repo:
                await repo.audit.append(AuditEvent(
                    at=datetime.now(UTC), actor=principal.sub, roles=sorted(roles), action="read",
                    entity_type="ImagingStudy", outcome=DENIED, detail=f"DICOMweb {request.url.path}",
                    source="dicomweb",
                ))
            raise HTTPException(403, f"{', '.join(sorted(roles)) or 'no role'} in {domain} may not read studies")
        return await resolve_scope(self.store, principal, roles)

    async def _visible(
        self, repo: Repository, scope: Scope, studies: list[ImagingStudy]
    ) -> tuple[list[ImagingStudy], dict[str, Patient]]:
        patients = {p.id: p for p in await repo.patients.by_ids(sorted({s.patient_id for s in studies}))}
        consultations: dict[str, Consultation | None] = {}
        for cid in {s.consultation_id for s in studies if s.consultation_id}:
            consultations[cid] = await repo.consultations.get(cid)
        visible = []
        for study in studies:
            patient = patients.get(study.patient_id)
            c = consultations.get(study.consultation_id) if study.consultation_id else None
            if patient is not None and scope.sees_patient(patient, [c] if c else []):
                visible.append(study)
        return visible, patients

    async def _audit(self, scope: Scope, what: str, count: int) -> None:
        async with self.store.write() as repo:
            await repo.audit.append(
                AuditEvent(
                    at=datetime.now(UTC), actor=scope.sub, roles=sorted(scope.roles), action="read",
                    outcome="success", entity_type="ImagingStudy", detail=f"{what}: {count}", source="dicomweb",
                )
            )


def _bulk_uri(item: StoredInstance) -> Callable[[DataElement], str]:
    """Large binary values are not inlined; the instance itself holds them."""

    def uri(_: DataElement) -> str:
        return f"instances/{item.sop_instance_uid}"

    return uri


def _multipart(parts: Sequence[bytes], part_type: str, root_type: str) -> Response:
    boundary = secrets.token_hex(16).encode()
    head = b"--%s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
    body = b"".join(head % (boundary, part_type.encode(), len(p)) + p + b"\r\n" for p in parts)
    body += b"--%s--\r\n" % boundary
    return Response(body, media_type=f'multipart/related; type="{root_type}"; boundary={boundary.decode()}')


def _requested_syntax(accept: str) -> str | None:
    """The ``transfer-syntax`` parameter of an Accept header, if it names one."""
    for param in accept.replace(",", ";").split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "transfer-syntax":
            return value.strip().strip('"')
    return None


def _accepts(request: Request, offered: tuple[str, ...]) -> str:
    """The first offered media type the Accept header allows (no header: the first one)."""
    header = request.headers.get("accept", "")
    if not header.strip():
        return offered[0]
    accepted = [part.split(";")[0].strip().lower() for part in header.split(",")]
    for media in offered:
        major = media.split("/")[0]
        if media in accepted or f"{major}/*" in accepted or "*/*" in accepted:
            return media
    raise NotAcceptable(f"cannot answer {header!r}; this resource is offered as {', '.join(offered)}")


async def _answer(work: Awaitable[Response]) -> Response:
    """Run a handler coroutine; each failure becomes its HTTP answer here, in one place."""
    try:
        return await work
    except BadInput as exc:
        return _error(400, "BAD_INPUT", str(exc))
    except NotFound as exc:
        return _error(404, "NOT_FOUND", str(exc))
    except (NotAcceptable, NotRenderable) as exc:
        return _error(406, "NOT_ACCEPTABLE", str(exc))
    except ObjectStoreError as exc:
        return _error(503, "OBJECT_STORE", str(exc))


FUZZY_WARNING = '"The fuzzymatching parameter is not supported. Only literal matching has been performed."'
MORE_RESULTS_WARNING = '"There are additional results that can be requested."'


def _service(request: Request) -> str:
    """The warn-agent of a Warning header (RFC 7234 5.5): the service's host."""
    return request.url.netloc or "huizhen"


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)
