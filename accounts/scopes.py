"""SMART App Launch v2 scopes on API tokens (http://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html).

A scope is `<context>/<resource type or *>.<permissions>`: the context `patient` (the data of the
patient in context: for a patient's token, the patient themself) or `user` (everything the user
may see: a patient's relatives too, a practitioner what the consent policy allows); the
permissions are letters of `cruds` in that order. The FHIR API only reads, so a token may ask for
`r` (read) and `s` (search) only. `system/` scopes (no user) and SMART v1 (`.read`) are not
issued. A token issued without a scope (`scope` empty) works for /api as before and is refused
by /fhir; a token with a scope works for /fhir and for nothing in /api but its own logout
(decision 0020).
"""

import re
from dataclasses import dataclass

from django.utils.translation import gettext_lazy as _

from accounts.models import Role

# The resource types the FHIR API serves (fhirapi/api.py); a scope naming another is refused.
FHIR_RESOURCE_TYPES = (
    "Patient",
    "Appointment",
    "Condition",
    "AllergyIntolerance",
    "MedicationStatement",
    "Observation",
    "Slot",
    "Schedule",
    "Practitioner",
    "Organization",
    "Location",
)
# Of these, the public directory (decision 0020): what the portal's search and practitioner
# pages show anyone. A scope for the type is still needed; reads are not consent-decided.
FHIR_DIRECTORY_TYPES = ("Practitioner", "Organization", "Location")
PATIENT = "patient"
USER = "user"
MAX_LENGTH = 1000

_SCOPE = re.compile(r"(patient|user|system)/([A-Za-z]+|\*)\.([a-z]+)")
_PERMISSIONS = re.compile(r"c?r?u?d?s?")

MESSAGE_SCOPE_SYNTAX = _(
    "%(scope)s is not a SMART v2 scope such as patient/*.rs or user/Condition.rs."
)
MESSAGE_SCOPE_TYPE = _("%(scope)s names a resource type the FHIR API does not serve.")
MESSAGE_SCOPE_PERMISSIONS = _("%(scope)s asks for more than read (r) and search (s).")
MESSAGE_SCOPE_CONTEXT = _("%(scope)s: only patients can have patient/ scopes; no system/ scopes.")
MESSAGE_SCOPE_LENGTH = _("The scope is too long.")
MESSAGE_SCOPE_EMPTY = _("Give at least one scope, or none at all for an /api token.")


@dataclass(frozen=True)
class Scope:
    context: str  # "patient" or "user"
    resource_type: str  # a type or "*"
    permissions: frozenset[str]  # of "r", "s"

    def covers(self, resource_type: str, permission: str) -> bool:
        return self.resource_type in ("*", resource_type) and permission in self.permissions


def scope_errors(raw: str, *, role: str) -> list[str]:
    """The problems of a requested scope string for a user of `role` (empty: acceptable)."""
    if len(raw) > MAX_LENGTH:
        return [str(MESSAGE_SCOPE_LENGTH)]
    if not raw.split():
        return [str(MESSAGE_SCOPE_EMPTY)]
    errors = []
    for item in raw.split():
        match = _SCOPE.fullmatch(item)
        if match is None or not _PERMISSIONS.fullmatch(match.group(3)):
            errors.append(str(MESSAGE_SCOPE_SYNTAX) % {"scope": item})
            continue
        context, resource_type, permissions = match.groups()
        if resource_type != "*" and resource_type not in FHIR_RESOURCE_TYPES:
            errors.append(str(MESSAGE_SCOPE_TYPE) % {"scope": item})
        elif set(permissions) - {"r", "s"}:
            errors.append(str(MESSAGE_SCOPE_PERMISSIONS) % {"scope": item})
        elif context == "system" or (context == PATIENT and role != Role.PATIENT):
            errors.append(str(MESSAGE_SCOPE_CONTEXT) % {"scope": item})
    return errors


def scope_normalize(raw: str) -> str:
    """The scope as stored: its items once each, in the order given, single spaces."""
    return " ".join(dict.fromkeys(raw.split()))


def scopes_parse(stored: str | None) -> list[Scope]:
    """The scopes of a stored (already validated) scope string; None and "" give none."""
    scopes = []
    for item in (stored or "").split():
        match = _SCOPE.fullmatch(item)
        if match is None:  # never stored so; read defensively
            continue
        context, resource_type, permissions = match.groups()
        scopes.append(Scope(context, resource_type, frozenset(permissions) & {"r", "s"}))
    return scopes


def contexts_granted(stored: str | None, *, resource_type: str, permission: str) -> set[str]:
    """The contexts (`patient`, `user`) in which the scope allows `permission` on the type."""
    return {
        scope.context for scope in scopes_parse(stored) if scope.covers(resource_type, permission)
    }
