import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from consent.models import RecordCategory  # consent decides by category: it owns the list
from vault.fields import EncryptedDateField, EncryptedTextField


class PatientKey(models.Model):
    """A patient's AES-256 data key, stored only wrapped under a master key.

    At most one key of a patient is live; `destroyed_at` and an empty `wrapped_key` mark a key
    shredded at erasure, after which nothing it encrypted can be opened.
    """

    patient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="data_keys"
    )
    master_key_version = models.PositiveIntegerField(_("master key version"))
    wrapped_key = models.BinaryField(_("wrapped key"), null=True, editable=False)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    destroyed_at = models.DateTimeField(_("destroyed"), null=True, blank=True)

    class Meta:
        verbose_name = _("patient data key")
        verbose_name_plural = _("patient data keys")
        constraints = [
            models.UniqueConstraint(
                fields=["patient"],
                condition=models.Q(destroyed_at__isnull=True),
                name="patient_key_one_live_per_patient",
            ),
        ]
        # No index on master_key_version: rotation reads in key order from where the last
        # batch ended and `<>` could not use one, and without it re-wrapping a key touches no
        # index at all, so that with the free room the low fillfactor leaves in each page
        # (migration 0007, PostgreSQL) it is a HOT update (decision 0019).

    def __str__(self):
        return (
            f"data key {self.pk} of patient {self.patient_id} (master v{self.master_key_version})"
        )


class InsuranceType(models.TextChoices):
    """How a patient's care is paid: what a practice's visit motives accept or not."""

    STATUTORY = "gesetzlich", _("Statutory (gesetzlich)")
    PRIVATE = "privat", _("Private (privat)")
    SELF_PAY = "selbstzahler", _("Self-paying (Selbstzahler)")


MESSAGE_KVNR_FORMAT = _(
    "A health insurance number (Krankenversichertennummer) is one capital letter and nine digits."
)
MESSAGE_KVNR_CHECK_DIGIT = _(
    "This health insurance number is not valid (its check digit does not match). "
    "Please copy it from the insurance card."
)


def kvnr_check_digit(first_nine: str) -> int:
    """The check digit of a Krankenversichertennummer's first nine characters (a letter and
    eight digits): the letter as its two-digit position in the alphabet (A=01), then the
    digits, weighted 1, 2, 1, 2, ...; products above 9 count as their digit sum; the sum's
    last digit (GKV-Spitzenverband, "Richtlinien zur Vergabe der Krankenversichertennummer")."""
    digits = f"{ord(first_nine[0]) - ord('A') + 1:02d}" + first_nine[1:]
    total = 0
    for index, digit in enumerate(digits):
        product = int(digit) * (1 if index % 2 == 0 else 2)
        total += product // 10 + product % 10
    return total % 10


def validate_kvnr(value: str) -> None:
    """A 10-character Krankenversichertennummer with the right check digit."""
    if len(value) != 10 or not ("A" <= value[0] <= "Z") or not value[1:].isascii():
        raise ValidationError(MESSAGE_KVNR_FORMAT, code="kvnr_format")
    if not value[1:].isdigit():
        raise ValidationError(MESSAGE_KVNR_FORMAT, code="kvnr_format")
    if kvnr_check_digit(value[:9]) != int(value[9]):
        raise ValidationError(MESSAGE_KVNR_CHECK_DIGIT, code="kvnr_check_digit")


class PatientProfile(models.Model):
    """What a patient tells at sign-up, encrypted with their data key."""

    patient = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        primary_key=True,
        related_name="patient_profile",
    )
    first_name = EncryptedTextField(_("first name"), patient_field="patient")
    last_name = EncryptedTextField(_("last name"), patient_field="patient")
    date_of_birth = EncryptedDateField(_("date of birth"), patient_field="patient")
    # Insurance (issue 16): encrypted like the rest; empty until the patient gives it.
    # Null (not given yet) rather than "", so that rows from before need no envelope.
    insurance_type = EncryptedTextField(
        _("insurance type"), patient_field="patient", null=True, blank=True
    )
    insurer_name = EncryptedTextField(_("insurer"), patient_field="patient", null=True, blank=True)
    insurance_number = EncryptedTextField(
        _("health insurance number"), patient_field="patient", null=True, blank=True
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("patient profile")
        verbose_name_plural = _("patient profiles")

    def __str__(self):
        return f"profile of patient {self.patient_id}"


class RecordEntry(models.Model):
    """One entry of a patient's medical record; title and body encrypted with their data key.

    The authoring clinic and category stay in clear: they are what consent decides on.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    patient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="record_entries"
    )
    category = models.CharField(_("category"), max_length=20, choices=RecordCategory.choices)
    title = EncryptedTextField(_("title"), patient_field="patient")
    body = EncryptedTextField(_("text"), patient_field="patient")
    # The practitioner's optional code (ICD-10-GM, ATC or PZN, SNOMED CT, LOINC by category,
    # vault/coding.py). Encrypted like the title: a code such as I10.90 names the diagnosis.
    # None when no code was given.
    code = EncryptedTextField(_("code"), patient_field="patient", null=True, blank=True)
    clinic = models.ForeignKey(
        "accounts.Clinic", on_delete=models.PROTECT, related_name="record_entries"
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="authored_record_entries",
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("record entry")
        verbose_name_plural = _("record entries")
        indexes = [models.Index(fields=["patient", "clinic", "category", "created_at"])]

    def __str__(self):
        return f"{self.get_category_display()} {self.pk}"


class EmergencyNote(models.Model):
    """The justification a practitioner gave for emergency access, encrypted like the record:
    it may name the patient's condition. Read by the clinic admin who reviews the access."""

    emergency_access = models.OneToOneField(
        "consent.EmergencyAccess",
        on_delete=models.PROTECT,
        primary_key=True,
        related_name="note",
    )
    patient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="emergency_notes"
    )
    justification = EncryptedTextField(_("justification"), patient_field="patient")

    class Meta:
        verbose_name = _("emergency access justification")
        verbose_name_plural = _("emergency access justifications")

    def __str__(self):
        return f"justification of {self.emergency_access_id}"


class ErasureRequest(models.Model):
    """A patient asked to be erased (GDPR Art. 17). The account is closed at once; an operator
    completes the erasure with `erase_patient` once `retain_until` (the medical retention duty)
    has passed."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    patient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="erasure_requests"
    )
    requested_at = models.DateTimeField(_("requested"), default=timezone.now)
    retain_until = models.DateField(_("retained until"))
    completed_at = models.DateTimeField(_("completed"), null=True, blank=True)

    class Meta:
        ordering = ["requested_at"]
        verbose_name = _("erasure request")
        verbose_name_plural = _("erasure requests")

    def __str__(self):
        return f"erasure request {self.pk}"
