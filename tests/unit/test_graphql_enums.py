import pytest

from huizhen.graphql import types
from huizhen.integration import model


@pytest.mark.parametrize("name", ["ConsultationStatus", "Urgency", "FacilityLevel", "MessageStatus"])
def test_graphql_enums_restate_the_model(name: str) -> None:
    gql, canonical = getattr(types, name), getattr(model, name)
    assert [(e.name, e.value) for e in gql] == [(e.name, e.value) for e in canonical]
