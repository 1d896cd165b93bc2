"""Edits in the Django admin bypass the services; the admin's own log entry is chained as an
`admin.change` event naming the changed fields, never their values, the object's text or an
e-mail address."""

from html.parser import HTMLParser

import pytest
from django.contrib.admin.models import LogEntry

from accounts.models import Clinic, Role, User
from accounts.tests.factories import ClinicFactory, StaffFactory
from audit.models import AuditAction, AuditEvent
from audit.services import chain_verify
from audit.tests.builders import events_since, every_stored_value, head_seq

pytestmark = pytest.mark.django_db

PASSWORD = "Lange-Reise-2026"
REQUEST_ID = "admin-request-00001"
NEW_LAST_NAME = "Qzmarkernachname"


class _FormValues(HTMLParser):
    """What a browser would post back from the page's change form, unchanged."""

    def __init__(self):
        super().__init__()
        self.values: list[tuple[str, str]] = []
        self._in_form = False
        self._select: tuple[str, bool] | None = None
        self._textarea: str | None = None
        self._text = ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and attrs.get("method", "").lower() == "post":
            self._in_form = True
        if not self._in_form or "disabled" in attrs:
            return
        name = attrs.get("name")
        if tag == "input" and name:
            kind = attrs.get("type", "text")
            if kind in ("submit", "button", "image", "file"):
                return
            if kind in ("checkbox", "radio") and "checked" not in attrs:
                return
            default = "on" if kind in ("checkbox", "radio") else ""
            self.values.append((name, attrs.get("value") or default))
        elif tag == "select" and name:
            self._select = name
        elif tag == "option" and self._select and "selected" in attrs:
            self.values.append((self._select, attrs.get("value", "")))
        elif tag == "textarea" and name:
            self._textarea, self._text = name, ""

    def handle_data(self, data):
        if self._textarea:
            self._text += data

    def handle_endtag(self, tag):
        if tag == "form":
            self._in_form = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea" and self._textarea:
            self.values.append((self._textarea, self._text.lstrip("\n")))
            self._textarea = None


def form_values(html: str) -> dict:
    parser = _FormValues()
    parser.feed(html)
    data: dict[str, list[str]] = {}
    for name, value in parser.values:
        data.setdefault(name, []).append(value)
    return data


@pytest.fixture
def operator(client):
    """A superuser signed in to the admin; the client sends a request id."""
    user = User.objects.create_superuser("operator@example.com", PASSWORD)
    client.force_login(user)
    client.defaults.update(HTTP_X_REQUEST_ID=REQUEST_ID, REMOTE_ADDR="198.51.100.20")
    return user


def _form_errors(response) -> str:
    context = response.context
    errors = [context["adminform"].form.errors] if context and "adminform" in context else []
    for inline in (context or {}).get("inline_admin_formsets", []):
        errors += [inline.formset.non_form_errors(), *inline.formset.errors]
    return repr(errors)


def change(client, url: str, **changes):
    """Open the change form, change some fields and save it, the way an operator does."""
    page = client.get(url)
    assert page.status_code == 200
    data = form_values(page.content.decode())
    for name, value in changes.items():
        data[name] = [value]
    started = head_seq()
    response = client.post(url, data)
    assert response.status_code == 302, _form_errors(response)
    return events_since(started)


def test_a_user_edited_in_the_admin_leaves_field_names_and_no_values(client, operator):
    clinic = ClinicFactory()
    staff = StaffFactory(clinic=clinic, email="anna.berger@example.com", last_name="Berger")
    url = f"/admin/accounts/user/{staff.pk}/change/"

    events = change(client, url, last_name=NEW_LAST_NAME, role=Role.AUDITOR)

    staff.refresh_from_db()
    assert (staff.last_name, staff.role) == (NEW_LAST_NAME, Role.AUDITOR)
    assert [event.action for event in events] == [AuditAction.ADMIN_CHANGE]
    (event,) = events
    assert (event.actor_id, event.actor_role, event.outcome) == (
        operator.pk,
        operator.role,
        "success",
    )
    assert (event.object_type, event.object_id) == ("accounts.user", str(staff.pk))
    assert event.details == {"change": "change", "fields": ["Last name (staff)", "Role"]}
    assert (event.request_id, event.client_address) == (REQUEST_ID, "198.51.100.20")
    assert event.subject_ref == ""
    # The admin's own log holds the object's text; the audit log does not.
    entry = LogEntry.objects.get(object_id=str(staff.pk))
    assert entry.object_repr == "anna.berger@example.com"
    stored = every_stored_value()
    for value in (NEW_LAST_NAME, "Berger", "anna.berger", entry.object_repr, Role.AUDITOR):
        assert value not in stored
    assert chain_verify().ok


def test_a_patient_account_closed_in_the_admin_is_chained(client, operator, make_patient):
    patient = make_patient(email="erika@example.com").user
    url = f"/admin/accounts/user/{patient.pk}/change/"
    data = form_values(client.get(url).content.decode())
    data.pop("is_active")
    started = head_seq()

    assert client.post(url, data).status_code == 302

    # Closing the account ends its sessions and tokens first (accounts/receivers.py).
    ended, event = events_since(started)
    assert ended.action == AuditAction.AUTH_LOGOUT_ALL
    assert ended.details == {"reason": "account_closed", "api_tokens": 1, "browser_sessions": 0}
    assert event.details == {"change": "change", "fields": ["Active"]}
    assert event.object_id == str(patient.pk)
    assert "erika" not in every_stored_value()
    assert chain_verify().ok


def test_clinics_added_changed_and_deleted_in_the_admin(client, operator):
    started = head_seq()
    added = client.post(
        "/admin/accounts/clinic/add/",
        {
            "name": "Praxis Nord",
            "slug": "praxis-nord",
            "city": "Hamburg",
            "address": "Nordweg 1",
            "cancellation_cutoff_hours": 24,
        },
    )
    assert added.status_code == 302
    clinic = Clinic.objects.get(slug="praxis-nord")
    change(client, f"/admin/accounts/clinic/{clinic.pk}/change/", city="Kiel")
    deleted = client.post(f"/admin/accounts/clinic/{clinic.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 302

    events = events_since(started)
    assert [(event.object_id, event.details) for event in events] == [
        (str(clinic.pk), {"change": "add", "fields": []}),
        (str(clinic.pk), {"change": "change", "fields": ["City"]}),
        (str(clinic.pk), {"change": "delete", "fields": []}),
    ]
    assert {event.action for event in events} == {AuditAction.ADMIN_CHANGE}
    assert "Hamburg" not in every_stored_value()
    assert "Praxis Nord" not in every_stored_value()
    assert chain_verify().ok


def test_a_bulk_delete_in_the_admin_leaves_one_event_per_object(client, operator):
    """The "delete selected" action logs with one bulk_create, which sends no post_save."""
    clinics = [ClinicFactory(), ClinicFactory(), ClinicFactory()]
    started = head_seq()

    response = client.post(
        "/admin/accounts/clinic/",
        {
            "action": "delete_selected",
            "_selected_action": [clinic.pk for clinic in clinics],
            "post": "yes",
        },
    )

    assert response.status_code == 302
    assert not Clinic.objects.exists()
    events = events_since(started)
    assert sorted(event.object_id for event in events) == sorted(str(c.pk) for c in clinics)
    assert {(event.action, event.actor_id) for event in events} == {
        (AuditAction.ADMIN_CHANGE, operator.pk)
    }
    assert {event.details["change"] for event in events} == {"delete"}
    assert chain_verify().ok


def test_a_log_entry_written_again_is_not_chained_twice(operator):
    clinic = ClinicFactory()
    entry = LogEntry.objects.log_actions(
        operator.pk, [clinic], action_flag=2, change_message="[]", single_object=True
    )
    started = head_seq()

    entry.save()

    assert AuditEvent.objects.filter(seq__gt=started).count() == 0
