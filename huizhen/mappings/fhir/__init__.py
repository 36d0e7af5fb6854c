"""FHIR R4 ⇄ the canonical model: pure functions, no HTTP, no database.

    validate.py     bytes / JSON → validated fhir.resources model, or InvalidResource (issues with paths)
    outcome.py      Issue, IssueType, IssueSeverity, operation_outcome(), InvalidResource
    inbound.py      map_resource(): validated resource → Mapped (entity + unresolved links) | Unmapped
    outbound.py     canonical entity → FHIR R4 JSON dict (outbound_consultation.py: a Consultation)
    bundle.py       parse_bundle(): entries, checks, urn:uuid references, dependency order
    bundle_map.py   map_bundle(): every entry mapped, in order
    bundle_response.py  transaction-response, batch-response, searchset
    jsonio.py       load_json() (BOM, exact decimals, depth limit) and dumps()

R4 is judged with the R4B models of fhir.resources; see r4.py for why and how.
"""
