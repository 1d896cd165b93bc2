"""A record entry's optional code through POST /api/medical/patients/{id}/entries: stored
encrypted, given back, and refused with a 422 naming `code` when its shape is wrong."""

import pytest

from vault.models import RecordEntry

pytestmark = pytest.mark.django_db


def _write(world, **fields):
    body = {"category": "diagnosis", "title": "Essentielle Hypertonie", "body": "RR 150/95"}
    url = f"/api/medical/patients/{world.patient.pk}/entries"
    return world.request("POST", url, world.actors["own_clinic"], {**body, **fields})


def test_a_coded_diagnosis_is_stored_encrypted_and_given_back(world):
    response = _write(world, code="i10.90")

    assert response.status_code == 201, response.json()
    assert response.json()["code"] == "I10.90"
    entry = RecordEntry.objects.get(pk=response.json()["id"])
    assert entry.code == "I10.90"
    stored = RecordEntry.objects.values_list("code", flat=True).get(pk=entry.pk)
    assert stored.startswith("pt1$")  # the envelope the database holds (vault/fields.py)
    assert "I10" not in stored  # not the diagnosis


def test_an_entry_without_code_has_none(world):
    response = _write(world)

    assert response.status_code == 201
    assert response.json()["code"] is None


@pytest.mark.parametrize(
    ("category", "code"),
    [
        ("diagnosis", "I1090"),  # the dot is missing
        ("diagnosis", "10.90"),
        ("diagnosis", "I10.901"),
        ("medication", "C09AA5"),
        ("medication", "12345670"),  # a PZN with a wrong check digit (8)
        ("lab_result", "4548"),
        ("allergy", "Penicillin"),
        ("note", "I10.90"),  # notes carry no code
    ],
)
def test_a_code_of_the_wrong_shape_is_a_field_error(world, category, code):
    before = RecordEntry.objects.filter(patient=world.patient).count()

    response = _write(world, category=category, code=code)

    assert response.status_code == 422, response.json()
    assert [error["field"] for error in response.json()["errors"]] == ["code"]
    assert RecordEntry.objects.filter(patient=world.patient).count() == before


@pytest.mark.parametrize(
    ("category", "code"),
    [
        ("diagnosis", "E11.9"),
        ("diagnosis", "U07.1!"),
        ("medication", "C09AA05"),
        ("medication", "04877970"),  # a PZN with its check digit
        ("allergy", "91936005"),
        ("lab_result", "4548-4"),
    ],
)
def test_well_formed_codes_are_accepted(world, category, code):
    assert _write(world, category=category, code=code).status_code == 201
