"""The relatives' portal pages (decision 0014): adding a child, the child's page, booking "for
whom", the child's appointments, consents, access log and export, the invitation and the
takeover page; someone else's relative is the 404 page on every one of them."""

import datetime
import json
import re

import pytest
from django.core import mail
from django.test import Client
from django.test.utils import override_settings
from django.urls import reverse
from django.utils import timezone
from fhir.resources.R4B.bundle import Bundle

from accounts.models import User
from accounts.tests.factories import ClinicFactory
from booking.models import Appointment
from booking.tests.factories import days_ahead, practitioner_create, slot_create
from consent.models import Consent, RelativeLink
from vault import relatives
from vault.tests.factories import record_entry_write

pytestmark = pytest.mark.django_db

CHILD = "Zqxkind"


def years_ago(years: int) -> datetime.date:
    today = timezone.localdate()
    return today.replace(year=today.year - years)


@pytest.fixture
def family(make_patient):
    holder = make_patient(email="mutter@example.com").user
    stranger = make_patient(email="fremd@example.com").user
    child = relatives.relative_add(
        holder=holder, first_name=CHILD, last_name="Muster", date_of_birth=years_ago(7)
    )
    clinic = ClinicFactory(name="Kinderarztpraxis Eppendorf")
    doctor = practitioner_create(clinic=clinic, first_name="Sophie", last_name="Hansen")
    record_entry_write(author=doctor, patient=child.user, clinic=clinic, title="Masern geimpft")
    slot = slot_create(practitioner=doctor, starts_at=days_ahead(3, 9))

    def browser(user):
        client = Client(HTTP_ACCEPT_LANGUAGE="en")
        client.force_login(user)
        return client

    return {
        "holder": holder,
        "stranger": stranger,
        "child": child,
        "clinic": clinic,
        "doctor": doctor,
        "slot": slot,
        "as_holder": browser(holder),
        "as_stranger": browser(stranger),
        "as_doctor": browser(doctor),
    }


def test_adding_a_relative_with_a_future_birth_date_is_a_field_error(family):
    future = (timezone.localdate() + datetime.timedelta(days=3)).isoformat()
    response = family["as_holder"].post(
        reverse("vault:relatives"),
        {"first_name": "Ben", "last_name": "M", "date_of_birth": future, "relationship": "child"},
    )
    assert response.status_code == 422
    assert "The date of birth lies in the future." in response.content.decode()
    assert 'value="Ben"' in response.content.decode()
    assert RelativeLink.objects.count() == 1


def test_the_holder_adds_a_child_and_sees_their_page(family):
    response = family["as_holder"].post(
        reverse("vault:relatives"),
        {
            "first_name": "Ben",
            "last_name": "M",
            "date_of_birth": "2022-05-01",
            "relationship": "child",
        },
        follow=True,
    )
    assert response.status_code == 200
    text = response.content.decode()
    assert "Ben M" in text and "Find an appointment" in text
    listing = family["as_holder"].get(reverse("vault:relatives")).content.decode()
    assert CHILD in listing and "Ben" in listing


def test_every_relative_page_is_404_for_someone_else_and_403_for_staff(family):
    child = family["child"].id
    pages = [
        reverse("vault:relative", kwargs={"relative_id": child}),
        reverse("vault:relative_export", kwargs={"relative_id": child, "format": "json"}),
        reverse("consent:relative_consents", kwargs={"relative_id": child}),
        reverse("consent:relative_access_log", kwargs={"relative_id": child}),
        reverse("booking:appointments") + f"?for={child}",
    ]
    for url in pages:
        assert family["as_holder"].get(url).status_code == 200, url
        refused = family["as_stranger"].get(url)
        assert refused.status_code == 404, url
        assert CHILD not in refused.content.decode()
        assert family["as_doctor"].get(url).status_code == 403, url
    unknown = reverse("vault:relative", kwargs={"relative_id": 999_999})
    assert family["as_holder"].get(unknown).status_code == 404
    invite = reverse("vault:relative_invite", kwargs={"relative_id": child})
    assert family["as_stranger"].post(invite, {"email": "x@example.com"}).status_code == 404


def test_the_child_page_shows_the_record_read_on_the_holder_basis(family):
    text = (
        family["as_holder"]
        .get(reverse("vault:relative", kwargs={"relative_id": family["child"].id}))
        .content.decode()
    )
    assert "Masern geimpft" in text
    assert "When Zqxkind turns 15" in text  # too young to take over yet


def test_booking_for_whom_then_the_childs_appointments_and_access_log(family):
    holder, child = family["holder"], family["child"]
    book = reverse("booking:book", kwargs={"slot_id": family["slot"].public_id})
    form = family["as_holder"].get(book).content.decode()
    assert "For whom" in form and CHILD in form
    response = family["as_holder"].post(
        book, {"for_whom": str(child.id), "reason": "U8"}, follow=True
    )
    assert response.status_code == 200
    appointment = Appointment.objects.get()
    assert (appointment.patient_id, appointment.booked_by_id) == (child.id, holder.pk)
    assert f"{CHILD} Muster" in response.content.decode()  # "For" on the confirmation
    # Someone else cannot choose the child: not one of their choices.
    relatives.relative_add(
        holder=family["stranger"], first_name="Eigen", last_name="K", date_of_birth=years_ago(2)
    )
    other_slot = slot_create(practitioner=family["doctor"], starts_at=days_ahead(3, 11))
    stranger = family["as_stranger"].post(
        reverse("booking:book", kwargs={"slot_id": other_slot.public_id}),
        {"for_whom": str(child.id)},
    )
    assert stranger.status_code == 200
    assert "Select a valid choice" in stranger.content.decode()
    assert Appointment.objects.count() == 1

    mine = family["as_holder"].get(reverse("booking:appointments")).content.decode()
    assert "You have no upcoming appointments." in mine
    theirs = family["as_holder"].get(reverse("booking:appointments") + f"?for={child.id}")
    assert "Kinderarztpraxis Eppendorf" in theirs.content.decode()

    log = family["as_holder"].get(
        reverse("consent:relative_access_log", kwargs={"relative_id": child.id})
    )
    text = log.content.decode()
    assert "Your account holder" in text and "Appointment booked" in text
    # The staff schedule says who booked, nothing more of the holder.
    schedule = family["as_doctor"].get(reverse("booking_staff:schedule")).content.decode()
    assert "booked by the account holder for this relative" in schedule
    assert "mutter@example.com" not in schedule


def test_the_holder_grants_and_revokes_a_consent_for_the_child(family):
    child = family["child"]
    other = ClinicFactory(name="Hautarztpraxis")
    url = reverse("consent:relative_consents", kwargs={"relative_id": child.id})
    response = family["as_holder"].post(
        url, {"grantee_clinic": other.pk, "categories": ["allergy"]}, follow=True
    )
    assert response.status_code == 200
    consent = Consent.objects.get()
    assert consent.patient_id == child.id
    revoke = reverse(
        "consent:relative_revoke", kwargs={"relative_id": child.id, "consent_id": consent.pk}
    )
    assert family["as_stranger"].post(revoke).status_code == 404
    family["as_holder"].post(revoke)
    consent.refresh_from_db()
    assert consent.revoked_at is not None


def test_the_export_is_the_childs_data(family):
    child = family["child"]
    response = family["as_holder"].get(
        reverse("vault:relative_export", kwargs={"relative_id": child.id, "format": "json"})
    )
    data = json.loads(response.content)
    assert data["profile"]["id"] == child.id and data["profile"]["email"] == ""
    assert [e["title"] for e in data["entries"]] == ["Masern geimpft"]
    fhir = family["as_holder"].get(
        reverse("vault:relative_export", kwargs={"relative_id": child.id, "format": "fhir"})
    )
    bundle = json.loads(fhir.content)
    Bundle.model_validate(bundle)  # fhir.resources validates every resource
    (patient,) = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    ]
    assert patient["name"][0]["given"] == [CHILD] and "telecom" not in patient


@override_settings(PATTERM_RELATIVE_OWN_ACCOUNT_AGE=15)
def test_invitation_and_takeover_through_the_pages(
    make_patient, django_capture_on_commit_callbacks
):
    holder = make_patient(email="vater@example.com").user
    teen = relatives.relative_add(
        holder=holder, first_name="Tom", last_name="M", date_of_birth=years_ago(15)
    )
    browser = Client(HTTP_ACCEPT_LANGUAGE="en")
    browser.force_login(holder)
    listing = browser.get(reverse("vault:relatives")).content.decode()
    assert "Invite to take over" in listing  # the holder is told
    with django_capture_on_commit_callbacks(execute=True):
        browser.post(
            reverse("vault:relative_invite", kwargs={"relative_id": teen.id}),
            {"email": "tom@example.com"},
        )
    (message,) = mail.outbox
    url = re.search(r"https?://\S+(/relatives/takeover/\S+/)", message.body).group(1)

    teen_browser = Client(HTTP_ACCEPT_LANGUAGE="en")
    page = teen_browser.get(url)
    assert page.status_code == 200 and "Take over your record" in page.content.decode()
    mismatch = teen_browser.post(url, {"password": "Eigenes-Konto-2026", "password_repeat": "x"})
    assert mismatch.status_code == 422
    done = teen_browser.post(
        url, {"password": "Eigenes-Konto-2026", "password_repeat": "Eigenes-Konto-2026"}
    )
    assert done.status_code == 302 and done.url == reverse("vault:record")
    assert User.objects.get(pk=teen.id).email == "tom@example.com"
    # The holder's browser session, still signed in, reaches nothing of Tom any more.
    assert (
        browser.get(reverse("vault:relative", kwargs={"relative_id": teen.id})).status_code == 404
    )
    assert teen_browser.get(reverse("vault:record")).status_code == 200
    # The used link is gone.
    assert Client().get(url).status_code == 404


def test_the_add_form_names_a_wrong_insurance_number_and_keeps_nobody(client, make_patient):
    holder = make_patient(email="vater@example.com")
    client.force_login(holder.user)

    response = client.post(
        "/relatives/",
        {
            "first_name": "Paul",
            "last_name": "Mustermann",
            "date_of_birth": "2022-05-01",
            "relationship": "child",
            "insurance_type": "gesetzlich",
            "insurance_number": "A123456781",
        },
    )

    assert response.status_code == 422
    assert "insurance_number" in response.context["form"].errors
    assert not RelativeLink.objects.filter(holder=holder.user).exists()
