import pytest

from accounts.tests.factories import ClinicFactory
from booking.tests.factories import practitioner_create, slot_create

CLINIC_NAME = "Praxis am Weinbergsweg"
CLINIC_ADDRESS = "Weinbergsweg 7, 10119 Berlin"


@pytest.fixture
def clinic(db):
    return ClinicFactory(
        name=CLINIC_NAME, slug="praxis-weinbergsweg", city="Berlin", address=CLINIC_ADDRESS
    )


@pytest.fixture
def doctor(clinic):
    return practitioner_create(clinic=clinic, first_name="Anna", last_name="Berger")


@pytest.fixture
def slot(doctor):
    """A free slot three days or more ahead: bookable, and cancellable by the patient."""
    return slot_create(practitioner=doctor)


@pytest.fixture
def patient(make_patient):
    """A patient's IssuedToken (`.user`, `.raw`)."""
    return make_patient()
