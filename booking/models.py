import re
import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _

from vault.fields import EncryptedDateField, EncryptedTextField
from vault.models import InsuranceType

SLOT_PUBLIC_ID = re.compile(r"^slot-(\d{1,18})$")


class Specialty(models.Model):
    slug = models.SlugField(_("slug"), max_length=60, unique=True)
    name_de = models.CharField(_("name (German)"), max_length=100)
    name_en = models.CharField(_("name (English)"), max_length=100)

    class Meta:
        ordering = ["slug"]
        verbose_name = _("specialty")
        verbose_name_plural = _("specialties")

    def __str__(self):
        return self.name

    @property
    def name(self) -> str:
        """The name in the language of the current request."""
        return self.name_de if translation.get_language() == "de" else self.name_en


class PractitionerSpecialty(models.Model):
    """What a practitioner offers at one clinic (their membership there)."""

    membership = models.ForeignKey(
        "accounts.Membership", on_delete=models.CASCADE, related_name="specialties"
    )
    specialty = models.ForeignKey(Specialty, on_delete=models.PROTECT, related_name="+")

    class Meta:
        verbose_name = _("practitioner specialty")
        verbose_name_plural = _("practitioner specialties")
        constraints = [
            models.UniqueConstraint(
                fields=["membership", "specialty"], name="practitioner_specialty_once"
            ),
        ]

    def __str__(self):
        return f"{self.membership} - {self.specialty}"


class Weekday(models.IntegerChoices):
    MONDAY = 0, _("Monday")
    TUESDAY = 1, _("Tuesday")
    WEDNESDAY = 2, _("Wednesday")
    THURSDAY = 3, _("Thursday")
    FRIDAY = 4, _("Friday")
    SATURDAY = 5, _("Saturday")
    SUNDAY = 6, _("Sunday")


class OpeningHours(models.Model):
    """A practitioner's weekly consulting hours at a clinic, cut into slots of equal length."""

    membership = models.ForeignKey(
        "accounts.Membership", on_delete=models.CASCADE, related_name="opening_hours"
    )
    weekday = models.PositiveSmallIntegerField(_("weekday"), choices=Weekday.choices)
    start_time = models.TimeField(_("from"))
    end_time = models.TimeField(_("until"))
    slot_minutes = models.PositiveSmallIntegerField(_("slot length (minutes)"), default=20)
    specialty = models.ForeignKey(Specialty, on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["membership", "weekday", "start_time"]
        verbose_name = _("opening hours")
        verbose_name_plural = _("opening hours")
        constraints = [
            models.CheckConstraint(
                condition=Q(start_time__lt=F("end_time")), name="opening_hours_start_before_end"
            ),
            models.CheckConstraint(
                condition=Q(slot_minutes__gte=5, slot_minutes__lte=240),
                name="opening_hours_slot_length_5_to_240",
            ),
        ]

    def __str__(self):
        return f"{self.membership} {self.get_weekday_display()} {self.start_time}-{self.end_time}"


class Absence(models.Model):
    """A time a practitioner does not see patients (holiday, training): no slots are made."""

    membership = models.ForeignKey(
        "accounts.Membership", on_delete=models.CASCADE, related_name="absences"
    )
    starts_at = models.DateTimeField(_("from"))
    ends_at = models.DateTimeField(_("until"))

    class Meta:
        ordering = ["starts_at"]
        verbose_name = _("absence")
        verbose_name_plural = _("absences")
        constraints = [
            models.CheckConstraint(
                condition=Q(starts_at__lt=F("ends_at")), name="absence_start_before_end"
            ),
        ]

    def __str__(self):
        return f"{self.membership} absent {self.starts_at:%Y-%m-%d}-{self.ends_at:%Y-%m-%d}"


class Slot(models.Model):
    """A bookable time of one practitioner at one clinic. `slot-NNN` is its public id.

    `is_booked` is claimed by one conditional UPDATE (only a free slot changes) and backed by
    the partial unique index on Appointment; a practitioner's slots never overlap (a database
    constraint, booking/migrations/0002).
    """

    clinic = models.ForeignKey("accounts.Clinic", on_delete=models.PROTECT, related_name="slots")
    practitioner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="slots"
    )
    specialty = models.ForeignKey(Specialty, on_delete=models.PROTECT, related_name="slots")
    starts_at = models.DateTimeField(_("starts"))
    ends_at = models.DateTimeField(_("ends"))
    is_booked = models.BooleanField(_("booked"), default=False)
    # A freed slot offered to a waiting patient is held for them alone until `held_until`:
    # search leaves it out, and only that patient's booking claims it (booking/waitlist.py).
    held_for = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("held for"),
    )
    held_until = models.DateTimeField(_("held until"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        ordering = ["starts_at", "pk"]
        verbose_name = _("slot")
        verbose_name_plural = _("slots")
        constraints = [
            models.CheckConstraint(
                condition=Q(starts_at__lt=F("ends_at")), name="slot_start_before_end"
            ),
            models.CheckConstraint(
                condition=Q(held_for__isnull=True, held_until__isnull=True)
                | Q(held_for__isnull=False, held_until__isnull=False),
                name="slot_hold_for_whom_and_until",
            ),
        ]
        indexes = [
            # The search: free slots from a time on, optionally of one specialty or clinic.
            models.Index(
                fields=["starts_at"], condition=Q(is_booked=False), name="slot_free_by_start"
            ),
            models.Index(
                fields=["specialty", "starts_at"],
                condition=Q(is_booked=False),
                name="slot_free_by_specialty",
            ),
            models.Index(
                fields=["clinic", "starts_at"],
                condition=Q(is_booked=False),
                name="slot_free_by_clinic",
            ),
            models.Index(fields=["practitioner", "starts_at"], name="slot_by_practitioner"),
            # The search's capped count (patterm/pagination.py) by specialty and city: an
            # index-only scan reads exactly the matches it counts, at any table size.
            models.Index(
                fields=["specialty", "clinic", "starts_at"],
                condition=Q(is_booked=False, held_for=None),
                name="slot_free_count",
            ),
        ]

    def __str__(self):
        return self.public_id

    @property
    def public_id(self) -> str:
        return f"slot-{self.pk:03d}"

    @staticmethod
    def pk_from_public_id(public_id: str) -> int | None:
        match = SLOT_PUBLIC_ID.fullmatch(public_id)
        return int(match.group(1)) if match else None


class MotivePatients(models.TextChoices):
    """Who may book a visit motive: a patient is known at a clinic once a care relationship
    with it exists (consent.CareRelationship), new otherwise."""

    BOTH = "both", _("New and known patients")
    NEW = "new", _("New patients only")
    KNOWN = "known", _("Known patients only")


class VisitMotive(models.Model):
    """A reason to visit (Besuchsgrund) a practitioner offers at one clinic, with the time it
    takes. Booking it claims as many consecutive free slots as its duration needs (decision
    0013); who may book it online is the motive's rules."""

    membership = models.ForeignKey(
        "accounts.Membership", on_delete=models.CASCADE, related_name="motives"
    )
    specialty = models.ForeignKey(Specialty, on_delete=models.PROTECT, related_name="+")
    name_de = models.CharField(_("name (German)"), max_length=100)
    name_en = models.CharField(_("name (English)"), max_length=100)
    duration_minutes = models.PositiveSmallIntegerField(_("duration (minutes)"), default=20)
    bookable_online = models.BooleanField(_("bookable online"), default=True)
    patients = models.CharField(
        _("for"), max_length=8, choices=MotivePatients.choices, default=MotivePatients.BOTH
    )
    accepts_statutory = models.BooleanField(_("statutory insurance (gesetzlich)"), default=True)
    accepts_private = models.BooleanField(_("private insurance (privat)"), default=True)
    accepts_self_pay = models.BooleanField(_("self-paying (Selbstzahler)"), default=True)
    note_de = models.CharField(_("note before booking (German)"), max_length=300, blank=True)
    note_en = models.CharField(_("note before booking (English)"), max_length=300, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        ordering = ["membership", "name_de", "pk"]
        verbose_name = _("visit motive")
        verbose_name_plural = _("visit motives")
        constraints = [
            models.CheckConstraint(
                condition=Q(duration_minutes__gte=5, duration_minutes__lte=480),
                name="motive_duration_5_to_480",
            ),
            models.CheckConstraint(
                condition=Q(accepts_statutory=True)
                | Q(accepts_private=True)
                | Q(accepts_self_pay=True),
                name="motive_accepts_some_insurance",
            ),
        ]

    def __str__(self):
        return f"{self.name} ({self.duration_minutes} min)"

    def clean(self):
        from django.core.exceptions import ValidationError

        if (
            self.membership_id
            and self.specialty_id
            and not PractitionerSpecialty.objects.filter(
                membership_id=self.membership_id, specialty_id=self.specialty_id
            ).exists()
        ):
            raise ValidationError(
                {"specialty": _("The practitioner does not offer this specialty at the clinic.")}
            )

    @property
    def name(self) -> str:
        return self.name_de if translation.get_language() == "de" else self.name_en

    @property
    def note(self) -> str:
        if translation.get_language() == "de":
            return self.note_de or self.note_en
        return self.note_en or self.note_de

    # The insurance type (vault.models.InsuranceType) each flag stands for.
    INSURANCE_FLAGS = {
        "gesetzlich": "accepts_statutory",
        "privat": "accepts_private",
        "selbstzahler": "accepts_self_pay",
    }

    def accepts(self, insurance_type: str) -> bool:
        flag = self.INSURANCE_FLAGS.get(insurance_type)
        return bool(flag and getattr(self, flag))

    @property
    def accepted_insurance_types(self) -> list[str]:
        return [kind for kind, flag in self.INSURANCE_FLAGS.items() if getattr(self, flag)]

    def admits(self, *, known: bool) -> bool:
        """Whether a new (`known=False`) or known patient may book this motive."""
        return self.patients == MotivePatients.BOTH or self.patients == (
            MotivePatients.KNOWN if known else MotivePatients.NEW
        )


class AppointmentStatus(models.TextChoices):
    BOOKED = "booked", _("Booked")
    CANCELLED = "cancelled", _("Cancelled")
    COMPLETED = "completed", _("Completed")


class Appointment(models.Model):
    """A patient's booking of a slot, with the encrypted snapshot the clinic needs.

    At most one booked appointment per slot: a partial unique index, on both databases.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    slot = models.ForeignKey(Slot, on_delete=models.PROTECT, related_name="appointments")
    patient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="appointments"
    )
    status = models.CharField(
        _("status"),
        max_length=16,
        choices=AppointmentStatus.choices,
        default=AppointmentStatus.BOOKED,
    )
    # Copied from the slot so that a patient's overlapping bookings can be found by time.
    starts_at = models.DateTimeField(_("starts"))
    ends_at = models.DateTimeField(_("ends"))
    booked_at = models.DateTimeField(_("booked"), default=timezone.now)
    # Who booked, when not the patient: the account holder of a relative (decision 0014).
    booked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("booked by"),
    )
    cancelled_at = models.DateTimeField(_("cancelled"), null=True, blank=True)
    # How often the patient moved it (decision 0021): the calendar file's SEQUENCE follows from
    # it, so that a calendar which imported an earlier file takes the new time.
    moves = models.PositiveIntegerField(_("times moved"), default=0)
    # The booking snapshot: what the clinic needs, encrypted with the patient's data key.
    patient_first_name = EncryptedTextField(_("first name"), patient_field="patient")
    patient_last_name = EncryptedTextField(_("last name"), patient_field="patient")
    patient_date_of_birth = EncryptedDateField(_("date of birth"), patient_field="patient")
    reason = EncryptedTextField(_("reason for the visit"), patient_field="patient", blank=True)
    # What the patient booked (null: a plain slot, as before motives) and how they are insured
    # (part of the snapshot: the staff schedule shows it; null: not given).
    motive = models.ForeignKey(
        VisitMotive,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="appointments",
        verbose_name=_("visit motive"),
    )
    patient_insurance_type = EncryptedTextField(
        _("insurance type"), patient_field="patient", null=True, blank=True
    )

    class Meta:
        ordering = ["starts_at"]
        verbose_name = _("appointment")
        verbose_name_plural = _("appointments")
        constraints = [
            models.UniqueConstraint(
                fields=["slot"],
                condition=Q(status=AppointmentStatus.BOOKED),
                name="appointment_one_booked_per_slot",
            ),
        ]
        indexes = [
            models.Index(fields=["patient", "status", "starts_at"]),
            models.Index(fields=["status", "starts_at"]),
        ]

    def __str__(self):
        return f"appointment {self.pk} ({self.status})"

    @property
    def insurance_type_label(self) -> str:
        """The snapshot's insurance type in words (decrypts it: staff pages only)."""
        value = self.patient_insurance_type
        return InsuranceType(value).label if value in InsuranceType.values else ""


class AppointmentSlot(models.Model):
    """Every slot an appointment occupies (the first is also `Appointment.slot`): a motive
    longer than one slot claims consecutive ones. While the appointment is booked its rows are
    `is_active`, and a partial unique index allows one active row per slot: the database's
    guarantee against double booking covers every slot, not only the first."""

    appointment = models.ForeignKey(
        Appointment, on_delete=models.CASCADE, related_name="occupied_slots"
    )
    slot = models.ForeignKey(Slot, on_delete=models.PROTECT, related_name="occupations")
    is_active = models.BooleanField(default=True)

    class Meta:
        verbose_name = _("occupied slot")
        verbose_name_plural = _("occupied slots")
        constraints = [
            models.UniqueConstraint(
                fields=["slot"], condition=Q(is_active=True), name="appointment_slot_one_active"
            ),
            models.UniqueConstraint(fields=["appointment", "slot"], name="appointment_slot_once"),
        ]

    def __str__(self):
        return f"{self.slot_id} of {self.appointment_id}"


class SentReminder(models.Model):
    """One reminder of one appointment, claimed before it is sent: the unique constraint lets
    only one sender claim it, however many run at once (booking/reminders.py)."""

    appointment = models.ForeignKey(
        Appointment, on_delete=models.CASCADE, related_name="sent_reminders"
    )
    hours_before = models.PositiveSmallIntegerField(_("hours before"))
    claimed_at = models.DateTimeField(_("claimed"), default=timezone.now)
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)

    class Meta:
        verbose_name = _("sent reminder")
        verbose_name_plural = _("sent reminders")
        constraints = [
            models.UniqueConstraint(
                fields=["appointment", "hours_before"], name="sent_reminder_once"
            ),
        ]

    def __str__(self):
        return f"reminder {self.hours_before} h, {self.appointment_id}"


class WaitlistStatus(models.TextChoices):
    WAITING = "waiting", _("Waiting")
    OFFERED = "offered", _("Offered a slot")
    BOOKED = "booked", _("Booked")
    LEFT = "left", _("Left")


class WaitlistEntry(models.Model):
    """A patient waiting for a slot of a specialty, optionally in a city, at a clinic, with a
    practitioner, between two local days. Offers go out in the order of `joined_at`."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    patient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="waitlist_entries"
    )
    specialty = models.ForeignKey(Specialty, on_delete=models.PROTECT, related_name="+")
    city = models.CharField(_("city"), max_length=100, blank=True)
    clinic = models.ForeignKey(
        "accounts.Clinic", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    practitioner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    date_from = models.DateField(_("from"), null=True, blank=True)
    date_to = models.DateField(_("until"), null=True, blank=True)
    status = models.CharField(
        _("status"), max_length=16, choices=WaitlistStatus.choices, default=WaitlistStatus.WAITING
    )
    joined_at = models.DateTimeField(_("joined"), default=timezone.now)
    left_at = models.DateTimeField(_("left"), null=True, blank=True)

    class Meta:
        ordering = ["joined_at", "id"]
        verbose_name = _("waitlist entry")
        verbose_name_plural = _("waitlist entries")
        indexes = [
            models.Index(
                fields=["specialty", "joined_at"],
                condition=Q(status="waiting"),
                name="waitlist_waiting_by_specialty",
            ),
            models.Index(fields=["patient", "status"], name="waitlist_by_patient"),
        ]

    def __str__(self):
        return f"waitlist {self.pk} ({self.status})"


class OfferStatus(models.TextChoices):
    OPEN = "open", _("Open")
    CONFIRMED = "confirmed", _("Confirmed")
    DECLINED = "declined", _("Declined")
    EXPIRED = "expired", _("Expired")


class WaitlistOffer(models.Model):
    """A freed slot offered to one waiting patient until `expires_at`.

    At most one open offer per slot and per entry, and a slot is offered to an entry only once
    (database constraints); the slot's hold (Slot.held_for) is what booking checks.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    entry = models.ForeignKey(WaitlistEntry, on_delete=models.CASCADE, related_name="offers")
    slot = models.ForeignKey(Slot, on_delete=models.PROTECT, related_name="offers")
    status = models.CharField(
        _("status"), max_length=16, choices=OfferStatus.choices, default=OfferStatus.OPEN
    )
    offered_at = models.DateTimeField(_("offered"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires"))
    decided_at = models.DateTimeField(_("decided"), null=True, blank=True)
    appointment = models.ForeignKey(
        Appointment, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["offered_at", "id"]
        verbose_name = _("waitlist offer")
        verbose_name_plural = _("waitlist offers")
        constraints = [
            models.UniqueConstraint(
                fields=["slot"], condition=Q(status="open"), name="offer_one_open_per_slot"
            ),
            models.UniqueConstraint(
                fields=["entry"], condition=Q(status="open"), name="offer_one_open_per_entry"
            ),
            models.UniqueConstraint(fields=["entry", "slot"], name="offer_slot_once_per_entry"),
        ]
        indexes = [
            models.Index(
                fields=["expires_at"], condition=Q(status="open"), name="offer_open_by_expiry"
            ),
        ]

    def __str__(self):
        return f"offer {self.pk} ({self.status})"


class MailKind(models.TextChoices):
    CONFIRMATION = "confirmation", _("Booking confirmation")
    CANCELLATION = "cancellation", _("Cancellation")
    MOVE = "move", _("Moved appointment")


class MailOutcome(models.TextChoices):
    SENT = "sent", _("Sent")
    # A later mail of the same appointment (a move, a cancellation) says what holds now.
    SUPERSEDED = "superseded", _("Superseded by a later mail")
    NO_RECIPIENT = "no_recipient", _("No recipient (account closed)")


class OutboxMail(models.Model):
    """An appointment e-mail to send, written in the transaction of the change it tells of
    (the transactional outbox, decision 0022): the booking commits with it or not at all, and
    `manage.py send_mails` renders and sends it after the commit (booking/outbox.py).

    Ids, kind and language only: the address, the time and the calendar file are read when
    it is sent, so the row holds no personal or medical data.
    """

    kind = models.CharField(_("kind"), max_length=16, choices=MailKind.choices)
    appointment = models.ForeignKey(
        Appointment, on_delete=models.CASCADE, related_name="outbox_mails"
    )
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    language = models.CharField(_("language"), max_length=8, blank=True)
    # The appointment's `moves` when it was written: a confirmation or move mail of an older
    # revision is superseded by the one written after it (booking/outbox.py).
    revision = models.PositiveIntegerField(_("revision"), default=0)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    next_attempt_at = models.DateTimeField(_("next attempt"), default=timezone.now)
    # A sender's claim: until then no other sender takes it (a stopped sender's claim ends).
    claimed_until = models.DateTimeField(_("claimed until"), null=True, blank=True)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    # The exception's class only: an SMTP error's text may quote the address.
    last_error = models.CharField(_("last error"), max_length=100, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    outcome = models.CharField(_("outcome"), max_length=16, choices=MailOutcome.choices, blank=True)

    class Meta:
        verbose_name = _("outgoing e-mail")
        verbose_name_plural = _("outgoing e-mails")
        indexes = [
            models.Index(
                fields=["next_attempt_at", "id"],
                condition=Q(finished_at=None),
                name="outbox_mail_unfinished",
            ),
        ]

    def __str__(self):
        return f"{self.kind} mail {self.pk} ({self.outcome or 'to send'})"
