"""Password rules beyond Django's validators (SECURITY.md P6, ASVS 2.1.7), and changing one.

- BreachedPasswordValidator refuses the bundled top list of breached passwords
  (accounts/data/breached-passwords.txt), also when it hides behind digits or symbols before and
  after ("Passwort2026!"), l33t spelling ("p@ssw0rd") or repetition ("dragondragon").
- PersonalDataValidator refuses a password that contains the account's own e-mail name or the
  person's first or last name.

Neither caps the length: 64 characters and more are welcome (settings.PATTERM_PASSWORD_MAX_LENGTH
only keeps a request from hashing megabytes).
"""

import functools
import hashlib
import re
from pathlib import Path

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext_lazy as _

from accounts.models import Role, User, normalize_email
from accounts.sessions import EndReason, sessions_end_all
from audit.models import AuditAction
from audit.signals import send_event
from patterm.errors import InvalidInput

LIST_PATH = Path(__file__).resolve().parent / "data" / "breached-passwords.txt"
MIN_CORE_LENGTH = 4
MESSAGE_WRONG_CURRENT = _("Your current password is wrong.")
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}
)
_EDGES = re.compile(r"^[^a-z]+|[^a-z]+$")
_SEPARATORS = re.compile(r"[._+\-\s]+")


@functools.cache
def breached_passwords() -> frozenset[str]:
    lines = LIST_PATH.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def _cores(password: str) -> set[str]:
    """The password and what is left of it without digits and symbols around it or l33t."""
    lower = password.lower()
    stripped = _EDGES.sub("", lower)
    candidates = {lower, stripped, lower.translate(_LEET), stripped.translate(_LEET)}
    candidates |= {_EDGES.sub("", value) for value in list(candidates)}
    return {value for value in candidates if len(value) >= MIN_CORE_LENGTH}


def _repeats_of(value: str) -> str:
    """`value`'s shortest unit when it is that unit repeated ("abcabc" -> "abc"), else `value`."""
    for size in range(1, len(value) // 2 + 1):
        if len(value) % size == 0 and value[:size] * (len(value) // size) == value:
            return value[:size]
    return value


class BreachedPasswordValidator:
    message = _(
        "This password is one of the most common passwords found in data breaches, perhaps "
        "with digits or symbols added. Choose a different one, for example a few unrelated words."
    )

    def validate(self, password, user=None):
        listed = breached_passwords()
        for core in _cores(password):
            if core in listed or _repeats_of(core) in listed:
                raise ValidationError(self.message, code="password_breached")

    def get_help_text(self):
        return _("Your password can't be a commonly breached password, even with digits added.")


class PersonalDataValidator:
    """No password containing the own e-mail name or name (case and l33t spelling ignored)."""

    message = _("The password must not contain your e-mail address or your name.")

    def validate(self, password, user=None):
        if user is None:
            return
        words = set()
        email = getattr(user, "email", "") or ""
        local_part = email.split("@", 1)[0].lower()
        words.add(local_part)
        words.update(_SEPARATORS.split(local_part))
        names = [getattr(user, "first_name", ""), getattr(user, "last_name", "")]
        names += list(getattr(user, "password_context_names", ()))
        for name in names:
            words.update(_SEPARATORS.split((name or "").lower()))
        words = {word for word in words if len(word) >= MIN_CORE_LENGTH}
        lower = password.lower()
        texts = {lower, lower.translate(_LEET)}
        if any(word in text for word in words for text in texts):
            raise ValidationError(self.message, code="password_personal")

    def get_help_text(self):
        return _("Your password can't contain your e-mail address or your name.")


# --- Changing a password ---------------------------------------------------------------------


def password_change(
    *,
    user: User,
    new_password: str,
    current_password: str | None = None,
    via: str = "change",
    keep_token_id: int | None = None,
    keep_session_key: str | None = None,
    field: str = "new_password",
) -> None:
    """Set a new password after the validators accept it, and end every other session.

    `via` is "change" (the user knew the old one) or "reset" (a link by e-mail). With
    `current_password` it must match first. Raises InvalidInput naming the field at fault.
    """
    if current_password is not None and not user.check_password(current_password):
        raise InvalidInput([{"field": "current_password", "message": str(MESSAGE_WRONG_CURRENT)}])
    try:
        validate_password(new_password, user=user)
    except ValidationError as error:
        raise InvalidInput(
            [{"field": field, "message": str(message)} for message in error.messages]
        ) from error
    with transaction.atomic():
        user.set_password(new_password)
        user.save(update_fields=["password"])
        send_event(
            action=AuditAction.AUTH_PASSWORD_CHANGE,
            actor=user,
            object_type="user",
            object_id=user.pk,
            subject_id=user.pk if user.role == Role.PATIENT else None,
            details={"via": via},
        )
        sessions_end_all(
            user=user,
            actor=user,
            reason=EndReason.PASSWORD_RESET if via == "reset" else EndReason.PASSWORD_CHANGE,
            keep_token_id=keep_token_id,
            keep_session_key=keep_session_key,
        )


# --- Throttling reset e-mails ----------------------------------------------------------------


def password_reset_allowed(*, email: str) -> bool:
    """Whether another reset e-mail may go to `email` now: at most
    PATTERM_PASSWORD_RESET_MAX_PER_HOUR per address and hour, so that nobody can flood an inbox.

    Counted in the shared cache (CACHE_URL: Redis in production), under a hash of the address.
    """
    key = "password-reset:" + hashlib.sha256(normalize_email(email).encode()).hexdigest()
    cache.add(key, 0, timeout=3600)
    try:
        sent = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=3600)
        sent = 1
    return sent <= settings.PATTERM_PASSWORD_RESET_MAX_PER_HOUR
