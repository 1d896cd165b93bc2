import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class RecordCategory(models.TextChoices):
    """The categories of medical record entries: what consents are given for."""

    DIAGNOSIS = "diagnosis", _("Diagnosis")
    MEDICATION = "medication", _("Medication")
    ALLERGY = "allergy", _("Allergy")
    LAB_RESULT = "lab_result", _("Lab result")
    NOTE = "note", _("Note")
    DOCUMENT = "document", _("Document")


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


class Consent(models.Model):
    """A patient lets one clinic (the grantee) see entries of some categories, written by one
    clinic or by all, for treatment, until a date or until revoked. The status follows time."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    patient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="consents"
    )
    grantee_clinic = models.ForeignKey(
        "accounts.Clinic", on_delete=models.PROTECT, related_name="consents_received"
    )
    source_clinic = models.ForeignKey(
        "accounts.Clinic",
        on_delete=models.PROTECT,
        related_name="consents_as_source",
        null=True,
        blank=True,
        help_text=_("Empty: entries of every clinic."),
    )
    categories = models.JSONField(_("categories"))
    purpose = models.CharField(_("purpose"), max_length=20, default="treatment")
    valid_from = models.DateField(_("valid from"))
    valid_until = models.DateField(_("valid until"), null=True, blank=True)
    granted_at = models.DateTimeField(_("granted"), default=timezone.now)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)

    class Meta:
        ordering = ["-granted_at"]
        verbose_name = _("consent")
        verbose_name_plural = _("consents")
        indexes = [models.Index(fields=["patient", "grantee_clinic", "revoked_at"])]

    def __str__(self):
        return f"consent {self.pk} ({self.status})"

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return ConsentStatus.REVOKED
        today = timezone.localdate()
        if self.valid_until is not None and self.valid_until < today:
            return ConsentStatus.EXPIRED
        return ConsentStatus.ACTIVE


class ConsentStatus(models.TextChoices):
    ACTIVE = "active", _("Active")
    REVOKED = "revoked", _("Revoked")
    EXPIRED = "expired", _("Expired")


class EmergencyAccess(models.Model):
    """Break-glass: a practitioner declared that treating the patient needs their record now.

    Time-limited; the justification is kept encrypted in the vault (`vault.EmergencyNote`).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    practitioner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="emergency_accesses"
    )
    clinic = models.ForeignKey(
        "accounts.Clinic", on_delete=models.PROTECT, related_name="emergency_accesses"
    )
    patient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="emergency_accesses_to"
    )
    declared_at = models.DateTimeField(_("declared"), default=timezone.now)
    expires_at = models.DateTimeField(_("ends"))

    class Meta:
        ordering = ["-declared_at"]
        verbose_name = _("emergency access")
        verbose_name_plural = _("emergency accesses")
        indexes = [models.Index(fields=["practitioner", "patient", "expires_at"])]

    def __str__(self):
        return f"emergency access {self.pk}"


class Relationship(models.TextChoices):
    """What the relative is to the account holder."""

    CHILD = "child", _("Child")
    PARTNER = "partner", _("Partner")
    PARENT = "parent", _("Parent")
    OTHER = "other", _("Other relative")


class RelativeLink(models.Model):
    """An account holder manages a relative (Angehörige:r): a patient of their own, with their
    own data key, record, consents and access log, but no login.

    While the link is active (`ended_at` empty), `consent.policy` gives the holder the `holder`
    basis for the relative: booking, cancelling, reading the record, consents and export. The
    link ends when the relative takes over with an account of their own (decision 0014); the
    row stays, so the history can say who managed the record until when.
    """

    holder = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="relative_links"
    )
    relative = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="holder_link"
    )
    relationship = models.CharField(
        _("relationship"), max_length=16, choices=Relationship.choices, default=Relationship.CHILD
    )
    created_at = models.DateTimeField(_("added"), default=timezone.now)
    # The newest invitation to take over, and the address it went to (the relative's login
    # once they accept); an older invitation in someone's inbox stops working.
    invited_at = models.DateTimeField(_("invited to take over"), null=True, blank=True)
    invited_email = models.EmailField(_("invited address"), max_length=254, blank=True)
    # When the holder was told by e-mail that the relative may take over (notify_relatives).
    holder_told_at = models.DateTimeField(_("holder told"), null=True, blank=True)
    ended_at = models.DateTimeField(_("ended"), null=True, blank=True)

    class Meta:
        verbose_name = _("relative")
        verbose_name_plural = _("relatives")
        ordering = ["created_at", "pk"]
        indexes = [models.Index(fields=["holder", "ended_at"])]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(holder=models.F("relative")), name="relative_not_own_holder"
            ),
        ]

    def __str__(self):
        return f"relative {self.relative_id} of {self.holder_id}"

    @property
    def is_active(self) -> bool:
        return self.ended_at is None
