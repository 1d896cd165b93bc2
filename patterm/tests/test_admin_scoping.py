"""The Django admin for clinic admins, auditors and superusers: each clinic admin sees and edits
only their clinics' rows, never decrypted personal or medical text; the audit log is read-only
for auditors and superusers; admin edits are chained into the audit log."""

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse

from accounts.models import Role, User
from accounts.services import user_create
from audit.integrator import checkpoint_create
from audit.models import AuditAction, AuditEvent, AuditTreeCheckpoint
from audit.tests.builders import events_since, head_seq
from booking.models import OpeningHours
from booking.tests.factories import specialty_get
from patterm.tests.staff_world import MARKERS

pytestmark = pytest.mark.django_db

SCOPED = [
    "accounts/clinic",
    "accounts/membership",
    "booking/practitionerspecialty",
    "booking/openinghours",
    "booking/absence",
    "booking/visitmotive",
    "booking/slot",
    "booking/appointment",
]


def _admin(client, path: str, *parts):
    return client.get("/admin/" + path + "/" + "".join(f"{p}/" for p in parts))


@pytest.mark.parametrize("path", SCOPED)
def test_a_clinic_admins_lists_show_only_their_clinic_and_no_personal_text(staff_world, path):
    north = _admin(staff_world.client_for("clinic_admin"), path)
    south = _admin(staff_world.client_for("clinic_admin_other"), path)

    assert north.status_code == south.status_code == 200
    north_rows = list(north.context["cl"].result_list)
    south_rows = list(south.context["cl"].result_list)
    assert north_rows and south_rows
    assert not {row.pk for row in north_rows} & {row.pk for row in south_rows}
    for text in (north.text, south.text):
        for marker in MARKERS:
            assert marker not in text
    assert "Praxis Süd" not in north.text


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("accounts/clinic", lambda w: w.south.pk),
        ("booking/openinghours", lambda w: w.hours_south.pk),
        ("booking/absence", lambda w: w.absence_south.pk),
        (
            "booking/visitmotive",
            lambda w: w.hours_south.membership.motives.get().pk,
        ),
        ("booking/appointment", lambda w: w.users["patient"].appointments.get().pk),
    ],
)
def test_another_clinics_object_does_not_exist_for_a_clinic_admin(staff_world, path, target):
    client = staff_world.client_for("clinic_admin_other")
    obj = target(staff_world)
    if path == "booking/appointment":  # the patient of the world booked at North
        client = staff_world.client_for("clinic_admin_other")
    else:
        client = staff_world.client_for("clinic_admin")

    response = _admin(client, path, obj, "change")

    assert response.status_code == 302
    assert response.url == reverse("admin:index")


def test_an_appointment_shows_its_snapshot_as_encrypted(staff_world):
    appointment = staff_world.appointment

    response = _admin(
        staff_world.client_for("clinic_admin"), "booking/appointment", appointment.pk, "change"
    )

    assert response.status_code == 200
    assert response.text.count("verschlüsselt") >= 4
    for marker in MARKERS:
        assert marker not in response.text
    assert staff_world.patient.email not in response.text


def test_choices_offer_only_the_clinics_practitioners_and_refuse_others(staff_world):
    client = staff_world.client_for("clinic_admin")
    form = _admin(client, "booking/openinghours", "add").context["adminform"].form
    offered = set(form.fields["membership"].queryset.values_list("pk", flat=True))
    assert offered == {staff_world.membership("practitioner").pk}

    response = client.post(
        "/admin/booking/openinghours/add/",
        {
            "membership": staff_world.membership("practitioner_other").pk,
            "weekday": 3,
            "start_time": "08:00",
            "end_time": "09:00",
            "slot_minutes": 20,
            "specialty": specialty_get("allgemeinmedizin").pk,
        },
    )

    assert response.status_code == 200
    assert "membership" in response.context["adminform"].form.errors
    assert not OpeningHours.objects.filter(weekday=3).exists()


def test_a_clinic_admins_edit_in_the_admin_is_audited(staff_world):
    client = staff_world.client_for("clinic_admin")
    started = head_seq()

    response = client.post(
        "/admin/booking/openinghours/add/",
        {
            "membership": staff_world.membership("practitioner").pk,
            "weekday": 3,
            "start_time": "08:00",
            "end_time": "09:00",
            "slot_minutes": 20,
            "specialty": specialty_get("allgemeinmedizin").pk,
        },
    )

    assert response.status_code == 302
    added = OpeningHours.objects.get(weekday=3)
    (event,) = events_since(started)
    assert (event.action, event.actor_id, event.object_type, event.object_id) == (
        AuditAction.ADMIN_CHANGE,
        staff_world.users["clinic_admin"].pk,
        "booking.openinghours",
        str(added.pk),
    )
    assert LogEntry.objects.filter(object_id=str(added.pk)).exists()


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("clinic_admin", {"accounts/clinic": 200, "accounts/user": 403, "audit/auditevent": 403}),
        ("auditor", {"accounts/clinic": 403, "booking/slot": 403, "audit/auditevent": 200}),
        ("practitioner", {"accounts/clinic": 302, "audit/auditevent": 302}),
        ("patient", {"accounts/clinic": 302, "audit/auditevent": 302}),
    ],
)
def test_who_opens_which_admin_list(staff_world, role, expected):
    client = staff_world.client_for(role)

    for path, status in expected.items():
        assert _admin(client, path).status_code == status, path


def test_a_practitioner_given_admin_access_by_mistake_still_sees_nothing(staff_world):
    doctor = staff_world.users["practitioner"]
    User.objects.filter(pk=doctor.pk).update(is_staff=True)
    client = staff_world.client_for("practitioner")

    assert _admin(client, "booking/appointment").status_code == 403
    assert client.get("/admin/").context["app_list"] == []


def test_specialties_are_read_only_for_clinic_admins(staff_world):
    client = staff_world.client_for("clinic_admin")

    assert _admin(client, "booking/specialty").status_code == 200
    assert _admin(client, "booking/specialty", "add").status_code == 403


@pytest.fixture
def operator(client):
    user = User.objects.create_superuser("operator@example.com", "Lange-Reise-2026")
    client.force_login(user)
    return client


@pytest.mark.parametrize("role", ["auditor", "superuser"])
def test_the_audit_log_is_read_only_for_everyone(staff_world, operator, role):
    checkpoint = checkpoint_create()
    client = operator if role == "superuser" else staff_world.client_for("auditor")
    event = AuditEvent.objects.order_by("seq").first()

    assert _admin(client, "audit/auditevent").status_code == 200
    assert _admin(client, "audit/auditevent", event.pk, "change").status_code == 200
    assert _admin(client, "audit/auditevent", "add").status_code == 403
    assert (
        client.post(f"/admin/audit/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert (
        client.post(
            f"/admin/audit/audittreecheckpoint/{checkpoint.pk}/delete/", {"post": "yes"}
        ).status_code
        == 403
    )
    bulk = client.post(
        "/admin/audit/auditevent/",
        {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"},
    )
    assert bulk.status_code in (200, 302)
    assert AuditEvent.objects.filter(pk=event.pk).exists()
    assert AuditTreeCheckpoint.objects.filter(pk=checkpoint.pk).exists()


def test_reading_the_log_in_the_admin_is_audited(staff_world):
    started = head_seq()

    _admin(staff_world.client_for("auditor"), "audit/auditevent")

    (event,) = events_since(started)
    assert (event.action, event.actor_id, event.details) == (
        AuditAction.AUDIT_READ,
        staff_world.users["auditor"].pk,
        {"via": "admin"},
    )


@pytest.mark.parametrize(
    ("role", "is_staff"),
    [(Role.CLINIC_ADMIN, True), (Role.AUDITOR, True), (Role.PRACTITIONER, False)],
)
def test_clinic_admins_and_auditors_are_created_with_admin_access(db, role, is_staff):
    user = user_create(email=f"{role}@example.com", password="Lange-Reise-2026", role=role)

    assert user.is_staff is is_staff
