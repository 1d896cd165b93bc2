"""Signal receivers of accounts: the browser-session registry and revocation on account changes.

- `user_logged_in` registers the browser session (device, address).
- A role change or deactivation of a user, and a membership removed or changed, end every session
  and token of that user: rights granted to a session must not outlive the role behind them.
"""

from django.contrib.auth.signals import user_logged_in
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from accounts.models import Membership, User
from accounts.services import ClientInfo
from accounts.sessions import EndReason, browser_session_register, sessions_end_all


@receiver(user_logged_in, dispatch_uid="accounts_register_browser_session")
def _register_browser_session(sender, request, user, **kwargs):
    session = getattr(request, "session", None)
    if session is None or not session.session_key:
        return
    browser_session_register(
        user=user,
        session_key=session.session_key,
        client=ClientInfo(
            address=request.META.get("REMOTE_ADDR") or None,
            user_agent=request.headers.get("User-Agent", ""),
        ),
    )


@receiver(pre_save, sender=User, dispatch_uid="accounts_user_rights_before")
def _remember_rights(sender, instance: User, raw=False, update_fields=None, **kwargs):
    if raw or instance.pk is None:
        return
    if update_fields is not None and not {"role", "is_active"} & set(update_fields):
        return  # a password re-hash at login, last_login: no rights change, no query
    before = User.objects.filter(pk=instance.pk).values("role", "is_active").first()
    instance._rights_before = before


@receiver(post_save, sender=User, dispatch_uid="accounts_user_rights_after")
def _end_sessions_on_lost_rights(sender, instance: User, created=False, raw=False, **kwargs):
    before = getattr(instance, "_rights_before", None)
    instance._rights_before = None
    if raw or created or not before:
        return
    if before["is_active"] and not instance.is_active:
        sessions_end_all(user=instance, actor=None, reason=EndReason.ACCOUNT_CLOSED)
    elif before["role"] != instance.role:
        sessions_end_all(user=instance, actor=None, reason=EndReason.ROLE_CHANGE)


@receiver(pre_save, sender=Membership, dispatch_uid="accounts_membership_role_before")
def _remember_membership_role(sender, instance: Membership, raw=False, **kwargs):
    if raw or instance.pk is None:
        return
    instance._role_before = (
        Membership.objects.filter(pk=instance.pk).values_list("role", flat=True).first()
    )


@receiver(post_save, sender=Membership, dispatch_uid="accounts_membership_role_after")
def _end_sessions_on_membership_change(
    sender, instance: Membership, created=False, raw=False, **kw
):
    before = getattr(instance, "_role_before", None)
    instance._role_before = None
    if raw or created or before is None or before == instance.role:
        return
    sessions_end_all(user=instance.user, actor=None, reason=EndReason.ROLE_CHANGE)


@receiver(post_delete, sender=Membership, dispatch_uid="accounts_membership_removed")
def _end_sessions_on_membership_removed(sender, instance: Membership, **kwargs):
    if not User.objects.filter(pk=instance.user_id).exists():
        return
    sessions_end_all(user=instance.user, actor=None, reason=EndReason.MEMBERSHIP_REMOVED)
