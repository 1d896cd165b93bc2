"""The vault part of the JSON API: a patient's own record."""

from ninja import Router

from booking.api import appointment_out
from booking.services import appointments_visible_to
from vault import services
from vault.models import RecordEntry
from vault.schemas import PatientRecordOut

router = Router(tags=["record"])


def record_entry_out(entry: RecordEntry) -> dict:
    author = entry.author
    return {
        "id": entry.pk,
        "category": entry.category,
        "title": entry.title,
        "body": entry.body,
        "clinic": {"id": entry.clinic_id, "name": entry.clinic.name},
        "author": {"id": author.pk, "name": f"{author.first_name} {author.last_name}".strip()},
        "created_at": entry.created_at,
        "basis": entry.basis,
    }


@router.get("/patient/record", response=PatientRecordOut, exclude_unset=True)
def patient_record(request):
    """The patient's own profile, appointments and every entry of their record, decrypted
    (`basis: self`)."""
    profile, record = services.own_record_read(patient=request.user)
    return {
        "profile": {
            "id": request.user.pk,
            "email": request.user.email,
            "first_name": profile.first_name if profile else "",
            "last_name": profile.last_name if profile else "",
            "date_of_birth": profile.date_of_birth if profile else "",
        },
        "appointments": [
            appointment_out(appointment, viewer=request.user, staff_clinics=frozenset())
            for appointment in appointments_visible_to(request.user).order_by("-starts_at")
        ],
        "entries": [record_entry_out(entry) for entry in record.entries],
        "hidden_count": record.hidden_count,
    }
