import pytest

from accounts.models import Role, User
from accounts.tests.factories import StaffFactory


@pytest.fixture
def operator_client(client, db):
    operator = User.objects.create_superuser("ops@example.com", "Lange-Reise-2026")
    client.force_login(operator)
    return client


@pytest.mark.parametrize("page", ["accounts/user", "accounts/clinic", "accounts/user/add"])
def test_admin_pages_open_for_operators(operator_client, page, make_patient):
    make_patient(first_name="MARKERVORNAME", last_name="MARKERNACHNAME")
    StaffFactory()

    response = operator_client.get(f"/admin/{page}/")

    assert response.status_code == 200
    assert b"MARKERVORNAME" not in response.content
    assert b"MARKERNACHNAME" not in response.content


def test_a_patient_page_in_admin_shows_no_personal_data(operator_client, make_patient):
    patient = make_patient(first_name="MARKERVORNAME", last_name="MARKERNACHNAME").user

    response = operator_client.get(f"/admin/accounts/user/{patient.pk}/change/")

    assert response.status_code == 200
    assert patient.role == Role.PATIENT
    assert b"MARKERVORNAME" not in response.content
    assert b"MARKERNACHNAME" not in response.content
