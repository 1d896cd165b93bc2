from django.db import models
from django.utils.translation import gettext_lazy as _


class AuditAction(models.TextChoices):
    """Every action the log knows, as a dotted `area.verb`. Add new ones here, never reuse one."""

    AUTH_REGISTER = "auth.register", _("Registration")
    AUTH_LOGIN = "auth.login", _("Login")
    AUTH_LOGIN_FAILED = "auth.login_failed", _("Failed login")
    AUTH_LOGOUT = "auth.logout", _("Logout")
    AUTH_TOKEN_REVOKE = "auth.token_revoke", _("Token revoked")
    RECORD_READ = "record.read", _("Medical record read")
    RECORD_WRITE = "record.write", _("Medical record entry written")
    KEY_ROTATION_START = "key.rotation_start", _("Master key rotation started")
    KEY_ROTATION_BATCH = "key.rotation_batch", _("Master key rotation batch done")
    KEY_ROTATION_FINISH = "key.rotation_finish", _("Master key rotation finished")
    KEY_MASTER_RETIRE = "key.master_retire", _("Master key retired")
    KEY_PATIENT_ROTATE = "key.patient_rotate", _("Patient data key rotated")
    ERASURE_COMPLETE = "erasure.complete", _("Erasure completed")
    APPOINTMENT_BOOK = "appointment.book", _("Appointment booked")
    APPOINTMENT_CANCEL = "appointment.cancel", _("Appointment cancelled")
    APPOINTMENT_MOVE = "appointment.move", _("Appointment moved")
    SCHEDULE_READ = "appointment.schedule_read", _("Booking snapshot read by staff")
    SLOTS_CREATE = "slot.create", _("Slots created")
    AUDIT_VERIFY = "audit.verify", _("Audit chain verified")
    AUDIT_EXPORT = "audit.export", _("Audit log exported")
    AUDIT_READ = "audit.read", _("Audit log read")
    ADMIN_CHANGE = "admin.change", _("Changed in the Django admin")
    CONSENT_GRANT = "consent.grant", _("Consent granted")
    CONSENT_REVOKE = "consent.revoke", _("Consent revoked")
    EMERGENCY_DECLARE = "emergency.declare", _("Emergency access declared")
    ERASURE_REQUEST = "erasure.request", _("Erasure requested")
    AUTH_SESSION_END = "auth.session_end", _("Session ended by its user")
    AUTH_LOGOUT_ALL = "auth.logout_all", _("All sessions ended")
    AUTH_PASSWORD_CHANGE = "auth.password_change", _("Password changed")
    AUTH_OTP_CONFIRM = "auth.otp_confirm", _("Second factor set up")
    AUTH_OTP_RESET = "auth.otp_reset", _("Second factor reset")
    REMINDER_SEND = "reminder.send", _("Appointment reminder sent")
    WAITLIST_JOIN = "waitlist.join", _("Waitlist joined")
    WAITLIST_LEAVE = "waitlist.leave", _("Waitlist left")
    WAITLIST_OFFER = "waitlist.offer", _("Waitlist offer made")
    WAITLIST_OFFER_CONFIRM = "waitlist.offer_confirm", _("Waitlist offer confirmed")
    WAITLIST_OFFER_DECLINE = "waitlist.offer_decline", _("Waitlist offer declined")
    WAITLIST_OFFER_EXPIRE = "waitlist.offer_expire", _("Waitlist offer expired")
    RELATIVE_INVITE = "relative.invite", _("Invited to take over the record")
    RELATIVE_TAKEOVER = "relative.takeover", _("Record taken over with an own account")
    INSURANCE_CHANGE = "insurance.change", _("Insurance changed")


class Outcome(models.TextChoices):
    SUCCESS = "success", _("Success")
    FAILURE = "failure", _("Failure")
    DENIED = "denied", _("Denied")


class AuditEvent(models.Model):
    """One event of the append-only audit log, a leaf of its Merkle tree.

    The row holds who did what to which object, when, from where, and how it ended; never a name,
    date of birth or medical text. The patient concerned appears only as `subject_ref`, a keyed
    hash of their id. A writer stages the row in its own transaction (`seq` from the database's
    sequence, `leaf_index` empty); the integrator gives it the next leaf index of the tree
    (audit/integrator.py). Database triggers refuse every UPDATE but that one, every DELETE and
    TRUNCATE (audit/triggers.py). `prev_hash` and `hash` are the hash chain of events written
    before the tree (decision 0011); newer events leave them empty.
    """

    seq = models.BigAutoField(primary_key=True, verbose_name=_("sequence number"))
    occurred_at = models.DateTimeField(_("time"))
    actor_id = models.BigIntegerField(_("actor"), null=True, blank=True)
    actor_role = models.CharField(_("actor role"), max_length=32, blank=True)
    # No `choices` here: the vocabulary grows with every feature (AuditAction), and a migration
    # per new action would only churn; the log must also keep reading actions since retired.
    action = models.CharField(_("action"), max_length=64)
    object_type = models.CharField(_("object type"), max_length=64, blank=True)
    object_id = models.CharField(_("object id"), max_length=64, blank=True)
    subject_ref = models.CharField(_("data subject (pseudonym)"), max_length=64, blank=True)
    clinic_id = models.BigIntegerField(_("clinic"), null=True, blank=True)
    purpose = models.CharField(_("purpose"), max_length=32, blank=True)
    outcome = models.CharField(_("outcome"), max_length=16, choices=Outcome.choices)
    request_id = models.CharField(_("request id"), max_length=64, blank=True)
    client_address = models.GenericIPAddressField(_("client address"), null=True, blank=True)
    details = models.JSONField(_("details"), default=dict, blank=True)
    leaf_index = models.PositiveBigIntegerField(_("leaf index"), null=True, blank=True)
    # NULL, not "": the unique constraints must not see the newer events as one shared value.
    prev_hash = models.CharField(  # noqa: DJ001
        _("previous hash"), max_length=64, null=True, blank=True
    )
    hash = models.CharField(_("hash"), max_length=64, null=True, blank=True)  # noqa: DJ001

    class Meta:
        ordering = ["seq"]
        verbose_name = _("audit event")
        verbose_name_plural = _("audit events")
        indexes = [
            models.Index(fields=["action", "occurred_at"]),
            models.Index(fields=["actor_id", "occurred_at"]),
            models.Index(fields=["subject_ref", "occurred_at"]),
            # What the integrator looks for: staged events, a small part of the table.
            models.Index(
                fields=["seq"], condition=models.Q(leaf_index=None), name="audit_event_staged"
            ),
        ]
        # Unique where set: a staged event (all three NULL) adds no entry to these indexes, so
        # staging writes four index entries fewer (bench/audit.py, decision 0018).
        constraints = [
            models.UniqueConstraint(
                fields=["prev_hash"],
                condition=models.Q(prev_hash__isnull=False),
                name="audit_event_one_successor",
            ),
            models.UniqueConstraint(
                fields=["hash"], condition=models.Q(hash__isnull=False), name="audit_event_hash"
            ),
            models.UniqueConstraint(
                fields=["leaf_index"],
                condition=models.Q(leaf_index__isnull=False),
                name="audit_event_one_leaf",
            ),
        ]

    def __str__(self):
        return f"#{self.seq} {self.action} {self.outcome}"


class AuditTreeHash(models.Model):
    """One complete subtree's hash of the Merkle tree (RFC 9162), stored where
    golang.org/x/mod/sumdb/tlog stores it: `id` is `tlog.stored_hash_index(level, n)`. Proofs
    read O(log n) of these; the table only grows at its end and is append-only."""

    id = models.BigIntegerField(primary_key=True)
    hash = models.BinaryField(max_length=32)

    class Meta:
        db_table = "audit_tree_hash"
        ordering = ["id"]

    def __str__(self):
        return f"stored tree hash #{self.id}"


class AuditTreeCheckpoint(models.Model):
    """A signed statement "the log's tree had `tree_size` leaves with this root": a C2SP
    tlog-checkpoint in a signed note (Ed25519, a key outside the database). An auditor who keeps
    one can later prove that nothing before it was rewritten (a consistency proof)."""

    tree_size = models.PositiveBigIntegerField(_("tree size"), unique=True)
    root_hash = models.CharField(_("root hash (base64)"), max_length=44)
    note = models.TextField(_("signed note"))
    key_hash = models.CharField(_("signing key hash"), max_length=8)
    created_at = models.DateTimeField(_("signed at"))

    class Meta:
        db_table = "audit_tree_checkpoint"
        ordering = ["tree_size"]
        verbose_name = _("tree checkpoint")
        verbose_name_plural = _("tree checkpoints")

    def __str__(self):
        return f"checkpoint of {self.tree_size} events"


class AuditCheckpoint(models.Model):
    """(The hash chain before the tree: no longer written, still verified.)

    A signed statement "the chain had `head_seq` rows, ending in `head_hash`, at this time".

    Ed25519 over `audit.signing.checkpoint_message(...)`, with a key kept outside the database:
    a chain cut after a checkpoint, or rewritten and re-hashed, no longer matches it. Exported
    to a place the database's administrators cannot change, they prove the log to an auditor.
    """

    head_seq = models.PositiveBigIntegerField(_("last sequence number"), unique=True)
    head_hash = models.CharField(_("hash of the last row"), max_length=64)
    created_at = models.DateTimeField(_("signed at"))
    key_id = models.CharField(_("signing key"), max_length=16)
    signature = models.CharField(_("signature"), max_length=100)

    class Meta:
        db_table = "audit_checkpoint"
        ordering = ["head_seq"]
        verbose_name = _("audit checkpoint")
        verbose_name_plural = _("audit checkpoints")

    def __str__(self):
        return f"checkpoint #{self.head_seq}"
