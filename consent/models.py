from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class CareSource(models.TextChoices):
    BOOKING = "booking", _("Appointment booked")
    RECORD_ENTRY = "record_entry", _("Record entry written")


class CareRelationship(models.Model):
    """A patient is (or was) in care at a clinic: booked there, or was treated there.

    Recorded by booking and by record writes; the [consent] issue makes the decision policy
    depend on it (`own_clinic` only for patients in care there).
    """

    patient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="care_relationships"
    )
    clinic = models.ForeignKey(
        "accounts.Clinic", on_delete=models.PROTECT, related_name="care_relationships"
    )
    source = models.CharField(_("how it began"), max_length=20, choices=CareSource.choices)
    since = models.DateTimeField(_("since"), default=timezone.now)

    class Meta:
        verbose_name = _("care relationship")
        verbose_name_plural = _("care relationships")
        constraints = [
            models.UniqueConstraint(fields=["patient", "clinic"], name="care_once_per_clinic"),
        ]

    def __str__(self):
        return f"patient {self.patient_id} in care at clinic {self.clinic_id}"
