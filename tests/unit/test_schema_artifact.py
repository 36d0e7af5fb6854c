"""The committed SDL is the API's artefact: a change to the schema shows in a diff."""

from pathlib import Path

from huizhen.graphql.schema import build_schema

SDL = Path(__file__).resolve().parents[2] / "schema.graphql"


def test_committed_schema_matches_code() -> None:
    assert SDL.read_text(encoding="utf-8").strip() == build_schema().as_str().strip(), (
        "schema.graphql is stale: run `huizhen schema > schema.graphql` and commit it"
    )


def test_contract_names_present() -> None:
    sdl = build_schema().as_str()
    for name in ("PatientConnection", "ConsultationConnection", "totalCount", "pageInfo", "requestConsultation",
                 "ConsultationInput", "enum ConsultationStatus", "enum Urgency"):
        assert name in sdl
