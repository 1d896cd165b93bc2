from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Lower, Upper
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Role(models.TextChoices):
    PATIENT = "patient", _("Patient")
    PRACTITIONER = "practitioner", _("Practitioner")
    CLINIC_ADMIN = "clinic_admin", _("Clinic administrator")
    AUDITOR = "auditor", _("Auditor")


STAFF_ROLES = (Role.PRACTITIONER, Role.CLINIC_ADMIN, Role.AUDITOR)


def normalize_email(email: str) -> str:
    """The one spelling of an address that is stored and looked up: trimmed, lower case."""
    return email.strip().lower()


class UserManager(BaseUserManager):
    use_in_migrations = True

    def get_by_natural_key(self, username):
        return self.get(email=normalize_email(username))

    def create_user(self, email, password=None, **extra_fields):
        user = self.model(email=normalize_email(email), **extra_fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", True)
        extra_fields.setdefault("is_superuser", True)
        extra_fields.setdefault("role", Role.CLINIC_ADMIN)
        return self.create_user(email, password, **extra_fields)


class User(AbstractBaseUser, PermissionsMixin):
    """An account: the e-mail address is the login.

    Patients' names and dates of birth are not here: they live encrypted in
    `vault.PatientProfile`. `first_name` and `last_name` are for staff, whose names patients see
    when they book.
    """

    email = models.EmailField(_("e-mail address"), max_length=254, unique=True)
    role = models.CharField(_("role"), max_length=20, choices=Role.choices, default=Role.PATIENT)
    first_name = models.CharField(_("first name (staff)"), max_length=100, blank=True)
    last_name = models.CharField(_("last name (staff)"), max_length=100, blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    is_staff = models.BooleanField(
        _("Django admin access"),
        default=False,
        help_text=_("Whether the user can sign in to the Django admin."),
    )
    date_joined = models.DateTimeField(_("date joined"), default=timezone.now)
    language = models.CharField(
        _("language"),
        max_length=8,
        choices=settings.LANGUAGES,
        default="de",
        db_default="de",  # rows written by SQL (scripts, benchmarks) get it too
        help_text=_("The language of the e-mails Patterm sends to this account."),
    )

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")
        constraints = [
            models.UniqueConstraint(Lower("email"), name="user_email_unique_case_insensitive"),
        ]

    def __str__(self):
        return self.email

    def clean(self):
        super().clean()
        self.email = normalize_email(self.email)


MAX_REMINDER_HOURS = 24 * 14


def parse_reminder_hours(text: str) -> list[int] | None:
    """`48,2` -> [48, 2] (largest first); "" -> None (the default); "0" -> [] (no reminders)."""
    text = text.strip()
    if not text:
        return None
    try:
        hours = sorted({int(part) for part in text.split(",")}, reverse=True)
    except ValueError:
        raise ValidationError(
            _("Give whole hours separated by commas, such as 48,2."), code="invalid"
        ) from None
    if hours == [0]:
        return []
    if not all(1 <= hour <= MAX_REMINDER_HOURS for hour in hours):
        raise ValidationError(
            _("Reminder times lie from 1 to %(most)s hours before the appointment."),
            code="invalid",
            params={"most": MAX_REMINDER_HOURS},
        )
    return hours


class Clinic(models.Model):
    name = models.CharField(_("name"), max_length=200)
    slug = models.SlugField(_("slug"), max_length=80, unique=True)
    city = models.CharField(_("city"), max_length=100)
    address = models.CharField(_("address"), max_length=300)
    cancellation_cutoff_hours = models.PositiveSmallIntegerField(
        _("cancellation cut-off (hours)"),
        default=24,
        help_text=_("Patients can cancel online until this many hours before the appointment."),
    )
    reminder_hours = models.CharField(
        _("reminders (hours before)"),
        max_length=60,
        blank=True,
        default="",
        db_default="",
        validators=[parse_reminder_hours],
        help_text=_(
            "When patients get an e-mail reminder, in hours before the appointment, separated "
            "by commas (48,2). Empty: Patterm's default; 0: no reminders."
        ),
    )

    class Meta:
        ordering = ["name"]
        # The slot search filters by city whatever its case: an index on UPPER(city) also
        # gives the planner statistics for that expression.
        indexes = [models.Index(Upper("city"), name="clinic_city_upper")]
        verbose_name = _("clinic")
        verbose_name_plural = _("clinics")

    def __str__(self):
        return f"{self.name} ({self.city})"

    @property
    def reminder_offsets(self) -> list[int]:
        """Hours before an appointment at which a reminder is due, largest first."""
        try:
            hours = parse_reminder_hours(self.reminder_hours)
        except ValidationError:  # written past the form's validation: the default, not a crash
            hours = None
        return list(settings.PATTERM_REMINDER_HOURS) if hours is None else hours


class Membership(models.Model):
    """A staff account's role at one clinic. Staff may belong to several clinics."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(_("role"), max_length=20, choices=Role.choices)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        constraints = [
            models.UniqueConstraint(fields=["user", "clinic"], name="membership_once_per_clinic"),
            models.CheckConstraint(
                condition=~models.Q(role=Role.PATIENT), name="membership_role_is_staff"
            ),
        ]

    def __str__(self):
        return f"{self.user} @ {self.clinic}: {self.get_role_display()}"


class ApiToken(models.Model):
    """A bearer token for the JSON API, stored only as its SHA-256 digest.

    The raw token is shown once, at login. `prefix` (the token's first characters) finds the row;
    the digest, compared in constant time, proves the token. A token ends at `expires_at`
    (absolute), after the idle timeout since `last_used_at`, or when `revoked_at` is set.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    prefix = models.CharField(_("prefix"), max_length=16, db_index=True)
    digest = models.CharField(_("digest"), max_length=64, unique=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires"))
    last_used_at = models.DateTimeField(_("last used"), default=timezone.now)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)
    user_agent = models.CharField(_("device"), max_length=200, blank=True)
    created_from = models.GenericIPAddressField(_("created from address"), null=True, blank=True)
    # Whether a second factor was proved for this token (a TOTP or recovery code at login, or
    # the code that confirmed a new device through it).
    otp_verified = models.BooleanField(_("second factor verified"), default=False)
    # SMART App Launch v2 scopes, space-separated (accounts/scopes.py). Empty: a token for /api,
    # issued before scopes or without one; a scoped token is for /fhir (decision 0020).
    scope = models.CharField(_("scope"), max_length=1000, blank=True, default="")

    class Meta:
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")

    def __str__(self):
        return f"{self.prefix}… ({self.user})"


class BrowserSession(models.Model):
    """The registry entry of one signed-in browser: Django's database session, tied to its user.

    Created on `user_logged_in`; `last_seen_at` is written at most once a minute. Ending the
    Django session (logout, revocation, expiry and `clearsessions`) deletes this row with it.
    """

    session = models.OneToOneField(
        "sessions.Session",
        on_delete=models.CASCADE,
        related_name="registry",
        verbose_name=_("session"),
    )
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="browser_sessions")
    user_agent = models.CharField(_("device"), max_length=200, blank=True)
    address = models.GenericIPAddressField(_("address"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    last_seen_at = models.DateTimeField(_("last seen"), default=timezone.now)

    class Meta:
        verbose_name = _("browser session")
        verbose_name_plural = _("browser sessions")
        indexes = [models.Index(fields=["user", "created_at"])]

    def __str__(self):
        return f"{self.user} ({self.created_at:%Y-%m-%d %H:%M})"


class RecoveryCode(models.Model):
    """A one-time code that stands in for a lost TOTP device, stored only as a password hash.

    `lookup` is the code's first group, kept in clear so that a login checks one hash, not ten
    (each is an Argon2 hash); the hash covers the whole code.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="recovery_codes")
    lookup = models.CharField(_("first characters"), max_length=4)
    code_hash = models.CharField(_("hash"), max_length=256)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    used_at = models.DateTimeField(_("used"), null=True, blank=True)

    class Meta:
        verbose_name = _("recovery code")
        verbose_name_plural = _("recovery codes")

    def __str__(self):
        return f"{self.user} #{self.pk}"
