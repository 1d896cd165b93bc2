"""Navigation of the portal: what each role finds in the header."""

from django.urls import reverse
from django.utils.translation import gettext_lazy as _

# (url name, label) per role, in the order of the header. Pages add themselves here.
NAVIGATION = {
    None: [("home", _("Find an appointment"))],
    "patient": [
        ("home", _("Find an appointment")),
        ("booking:appointments", _("My appointments")),
        ("booking:waitlist", _("Waitlist")),
        ("vault:record", _("My record")),
        ("booking:insurance", _("My insurance")),
        ("vault:relatives", _("Relatives")),
        ("consent:consents", _("My consents")),
        ("consent:access_log", _("Access log")),
        ("accounts:sessions", _("Sessions")),
    ],
    "practitioner": [
        ("booking_staff:schedule", _("My schedule")),
        ("vault_staff:patient_lookup", _("Patient record")),
        ("accounts:sessions", _("Sessions")),
    ],
    "clinic_admin": [
        ("booking_staff:clinic", _("Clinic dashboard")),
        ("booking_staff:opening_hours", _("Opening hours")),
        ("booking_staff:absences", _("Absences")),
        ("booking_staff:motives", _("Visit motives")),
        ("booking_staff:slots", _("Generate slots")),
        ("vault_staff:emergency_review", _("Emergency accesses")),
        ("admin:index", _("Django admin")),
        ("accounts:sessions", _("Sessions")),
    ],
    "auditor": [
        ("audit_staff:events", _("Audit log")),
        ("audit_staff:verify", _("Verify the chain")),
        ("admin:index", _("Django admin")),
        ("accounts:sessions", _("Sessions")),
    ],
}


def navigation(request):
    user = getattr(request, "user", None)
    role = user.role if user is not None and user.is_authenticated else None
    items = [
        {"url": reverse(name), "label": label, "current": request.path == reverse(name)}
        for name, label in NAVIGATION.get(role, [])
    ]
    return {"navigation": items}
