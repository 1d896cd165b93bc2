"""One registry of a user's sessions: browser sessions and API tokens, listed and ended together.

A browser session is Django's database session plus its `BrowserSession` row (device, address,
created, last seen); the row is created on `user_logged_in` and a signed-in request whose session
has no live row is logged out (accounts/middleware.py), so deleting the row's session ends it.
Both kinds end after the same ASVS L2 idle timeout and absolute lifetime (settings).

A password change, account closure, role or membership removal and a second-factor reset call
`sessions_end_all`, which ends every session and token of the user except the one in use.
"""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import ApiToken, BrowserSession, Role, User
from accounts.services import ClientInfo
from audit.models import AuditAction
from audit.signals import send_event
from patterm.errors import NotFound
from patterm.numbers import ascii_int

BROWSER = "browser"
API_TOKEN = "api_token"  # noqa: S105  (a kind, not a secret)
_ID_PREFIXES = {BROWSER: "browser-", API_TOKEN: "token-"}

MESSAGE_SESSION_NOT_FOUND = _("No such session.")


class EndReason:
    """Why every session of a user ended (the `reason` of the audit row)."""

    LOGOUT_ALL = "logout_all"
    PASSWORD_CHANGE = "password_change"  # noqa: S105
    PASSWORD_RESET = "password_reset"  # noqa: S105
    ACCOUNT_CLOSED = "account_closed"
    ROLE_CHANGE = "role_change"
    MEMBERSHIP_REMOVED = "membership_removed"
    OTP_RESET = "otp_reset"


@dataclass(frozen=True)
class SessionEntry:
    """One line of "my sessions": never a secret, only what identifies the device to its owner."""

    id: str
    kind: str
    device: str
    address: str | None
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    current: bool


def session_public_id(kind: str, pk: int) -> str:
    return f"{_ID_PREFIXES[kind]}{pk}"


def _parse_public_id(public_id: str) -> tuple[str, int]:
    for kind, prefix in _ID_PREFIXES.items():
        number = ascii_int(public_id.removeprefix(prefix))
        if public_id.startswith(prefix) and number is not None:
            return kind, number
    raise NotFound(MESSAGE_SESSION_NOT_FOUND)


# --- Browser sessions ------------------------------------------------------------------------


def browser_session_register(*, user: User, session_key: str, client: ClientInfo) -> BrowserSession:
    """Register the Django session a browser just signed in with (on `user_logged_in`)."""
    now = timezone.now()
    return BrowserSession.objects.create(
        session_id=session_key,
        user=user,
        user_agent=client.user_agent[:200],
        address=client.address,
        created_at=now,
        last_seen_at=now,
    )


def browser_session_rekey(*, entry: BrowserSession, session_key: str | None) -> None:
    """Carry a registry row over to the new key Django gave its session (a password change).

    The absolute lifetime still counts from the original login.
    """
    if not session_key or BrowserSession.objects.filter(session_id=session_key).exists():
        return
    BrowserSession.objects.create(
        session_id=session_key,
        user=entry.user,
        user_agent=entry.user_agent,
        address=entry.address,
        created_at=entry.created_at,
        last_seen_at=timezone.now(),
    )


def browser_session_live(*, session_key: str, user: User) -> BrowserSession | None:
    """The live registry row of a signed-in request, or None: unknown, idle or too old.

    Records the visit at most once per PATTERM_SESSION_TOUCH_INTERVAL.
    """
    entry = BrowserSession.objects.filter(session_id=session_key, user=user).first()
    now = timezone.now()
    if (
        entry is None
        or entry.created_at + settings.PATTERM_SESSION_MAX_AGE <= now
        or entry.last_seen_at + settings.PATTERM_SESSION_IDLE_TIMEOUT <= now
    ):
        return None
    if now - entry.last_seen_at >= settings.PATTERM_SESSION_TOUCH_INTERVAL:
        BrowserSession.objects.filter(pk=entry.pk, last_seen_at=entry.last_seen_at).update(
            last_seen_at=now
        )
        entry.last_seen_at = now
    return entry


def _browser_expiry(entry: BrowserSession) -> datetime:
    return min(
        entry.created_at + settings.PATTERM_SESSION_MAX_AGE,
        entry.last_seen_at + settings.PATTERM_SESSION_IDLE_TIMEOUT,
        entry.session.expire_date,
    )


def _token_expiry(token: ApiToken) -> datetime:
    return min(token.expires_at, token.last_used_at + settings.PATTERM_TOKEN_IDLE_TIMEOUT)


# --- The registry ----------------------------------------------------------------------------


def sessions_of(
    *, user: User, current_token_id: int | None = None, current_session_key: str | None = None
) -> list[SessionEntry]:
    """Every live browser session and API token of `user`, the most recently used first.

    Two queries whatever the number of sessions.
    """
    now = timezone.now()
    browsers = BrowserSession.objects.filter(
        user=user,
        session__expire_date__gt=now,
        created_at__gt=now - settings.PATTERM_SESSION_MAX_AGE,
        last_seen_at__gt=now - settings.PATTERM_SESSION_IDLE_TIMEOUT,
    ).select_related("session")
    tokens = ApiToken.objects.filter(
        user=user,
        revoked_at__isnull=True,
        expires_at__gt=now,
        last_used_at__gt=now - settings.PATTERM_TOKEN_IDLE_TIMEOUT,
    )
    entries = [
        SessionEntry(
            id=session_public_id(BROWSER, entry.pk),
            kind=BROWSER,
            device=entry.user_agent,
            address=entry.address,
            created_at=entry.created_at,
            last_seen_at=entry.last_seen_at,
            expires_at=_browser_expiry(entry),
            current=current_session_key is not None and entry.session_id == current_session_key,
        )
        for entry in browsers
    ] + [
        SessionEntry(
            id=session_public_id(API_TOKEN, token.pk),
            kind=API_TOKEN,
            device=token.user_agent,
            address=token.created_from,
            created_at=token.created_at,
            last_seen_at=token.last_used_at,
            expires_at=_token_expiry(token),
            current=current_token_id is not None and token.pk == current_token_id,
        )
        for token in tokens
    ]
    return sorted(entries, key=lambda entry: (entry.last_seen_at, entry.id), reverse=True)


@transaction.atomic
def session_end(*, user: User, session_id: str) -> None:
    """End one session or token of `user`; another user's (or an unknown) id is NotFound."""
    kind, pk = _parse_public_id(session_id)
    if kind == API_TOKEN:
        revoked = ApiToken.objects.filter(pk=pk, user=user, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        if not revoked:
            raise NotFound(MESSAGE_SESSION_NOT_FOUND)
        object_type = "api_token"
    else:
        entry = BrowserSession.objects.filter(pk=pk, user=user).first()
        if entry is None:
            raise NotFound(MESSAGE_SESSION_NOT_FOUND)
        Session.objects.filter(session_key=entry.session_id).delete()  # the row goes with it
        object_type = "browser_session"
    send_event(
        action=AuditAction.AUTH_SESSION_END, actor=user, object_type=object_type, object_id=pk
    )


@transaction.atomic
def sessions_end_all(
    *,
    user: User,
    actor: User | None,
    reason: str,
    keep_token_id: int | None = None,
    keep_session_key: str | None = None,
    audited: bool = True,
) -> int:
    """End every browser session and API token of `user` but the one named to keep.

    Returns how many ended. One audit row names the user, the reason and the counts, unless
    nothing ended or the caller's own row already says it (`audited=False`: an erasure request
    closes the account).
    """
    now = timezone.now()
    tokens = ApiToken.objects.filter(user=user, revoked_at__isnull=True)
    if keep_token_id is not None:
        tokens = tokens.exclude(pk=keep_token_id)
    tokens_ended = tokens.update(revoked_at=now)
    keys = BrowserSession.objects.filter(user=user)
    if keep_session_key is not None:
        keys = keys.exclude(session_id=keep_session_key)
    keys = list(keys.values_list("session_id", flat=True))
    _, deleted = Session.objects.filter(session_key__in=keys).delete()
    browsers_ended = deleted.get("sessions.Session", 0)
    if not audited or not tokens_ended + browsers_ended:
        return tokens_ended + browsers_ended
    send_event(
        action=AuditAction.AUTH_LOGOUT_ALL,
        actor=actor,
        object_type="user",
        object_id=user.pk,
        subject_id=user.pk if user.role == Role.PATIENT else None,
        details={"reason": reason, "api_tokens": tokens_ended, "browser_sessions": browsers_ended},
    )
    return tokens_ended + browsers_ended
