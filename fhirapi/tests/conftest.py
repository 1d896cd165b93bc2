"""The consent tests' world (consent/tests/conftest.py) with FHIR tokens: the same patient,
entry, appointment and the same thirteen relationships to them, each actor holding a token
with SMART scopes (`patient/*.rs` for the patients, `user/*.rs` for staff)."""

import pytest

from accounts.models import Role
from accounts.services import ClientInfo, token_issue
from consent.tests.conftest import world_build

FHIR = "/fhir/R4"


def fhir_token(user, scope: str) -> str:
    issued = token_issue(
        user=user, client=ClientInfo(address="127.0.0.1", user_agent="pytest"), scope=scope
    )
    return issued.raw


def fhir_headers(token: str, **extra) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}", "HTTP_ACCEPT": "application/fhir+json", **extra}


@pytest.fixture
def fhir_world(make_patient):
    world = world_build(make_patient)
    for actor in world.actors.values():
        if actor.user is not None:
            scope = "patient/*.rs" if actor.user.role == Role.PATIENT else "user/*.rs"
            actor.token = fhir_token(actor.user, scope)
    return world
