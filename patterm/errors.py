"""The one error type for domain failures: a message for people and a code for programs.

Services raise these; the API maps them once to `{"detail", "code"}` responses (patterm/api.py)
and pages map them once to messages. This module imports nothing of Patterm, so every app may use
it, the audit app included.
"""

from django.utils.translation import gettext_lazy as _

# The machine codes of plain HTTP errors, for responses no service raised.
STATUS_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "request_too_large",
    422: "validation_error",
    429: "throttled",
    503: "service_unavailable",
}

MESSAGE_INVALID_INPUT = _("Invalid input")
MESSAGE_NOT_FOUND = _("Not found.")
MESSAGE_UNAVAILABLE = _("The service is briefly unavailable. Please try again in a moment.")


class DomainError(Exception):
    status = 400

    def __init__(self, message, code: str, *, errors: list[dict] | None = None):
        super().__init__(str(message))
        self.message = message
        self.code = code
        self.errors = errors or []


class InvalidInput(DomainError):
    """Input that is well-formed but breaks a rule; `errors` names the fields."""

    status = 422

    def __init__(self, errors: list[dict], message=None):
        super().__init__(message or MESSAGE_INVALID_INPUT, "validation_error", errors=errors)


class NotAuthenticated(DomainError):
    status = 401


class Forbidden(DomainError):
    status = 403


class NotFound(DomainError):
    """Missing and forbidden look the same from outside."""

    status = 404

    def __init__(self, message=None, code: str = "not_found"):
        super().__init__(message or MESSAGE_NOT_FOUND, code)


class Conflict(DomainError):
    status = 409


class TooManyAttempts(DomainError):
    """Refused for now: too many attempts (a locked account, a throttled second factor)."""

    status = 429
