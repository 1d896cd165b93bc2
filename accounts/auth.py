from collections.abc import Callable

from django.utils.translation import gettext_lazy as _
from ninja.security import HttpBearer

from accounts.otp import otp_gate
from accounts.services import token_authenticate
from patterm.errors import Forbidden

MESSAGE_FHIR_TOKEN = _("This token has SMART scopes: it is for the FHIR API at /fhir/R4/ only.")


class BearerTokenAuth(HttpBearer):
    """`Authorization: Bearer <token>` for the JSON API; anything not live is a 401.

    With `roles`, a caller of any other role is refused with `403 code` here, in the
    authentication step, before ninja parses or validates the path, query or body: a caller who
    may never use an operation gets the same answer whatever it sends, and learns none of the
    operation's rules (API.md, "403 before 422"). Give it to a router (`Router(auth=...)`,
    `api.add_router(..., auth=...)`) and every operation on it gets the check; an operation
    narrows it with its own `auth=`. `on_refused(request)` runs before the 403 (a refused
    record read is audited).

    A token with SMART scopes is for the FHIR API (decision 0020): refused here with 403
    `fhir_token`, unless the operation allows it (`allow_scoped`: the logout).

    Staff whose token has no verified second factor get 403 `otp_required` on medical and audit
    paths while PATTERM_REQUIRE_STAFF_OTP is on.
    """

    def __init__(
        self,
        *roles: str,
        message: str = "",
        code: str = "forbidden",
        on_refused: Callable | None = None,
        allow_scoped: bool = False,
    ):
        super().__init__()
        self.roles = frozenset(roles)
        self.allow_scoped = allow_scoped
        self.message, self.code, self.on_refused = message, code, on_refused

    def authenticate(self, request, token):
        api_token = token_authenticate(raw=token)
        if api_token is None:
            return None
        request.user = api_token.user
        request.api_token = api_token
        if api_token.scope and not self.allow_scoped:
            raise Forbidden(MESSAGE_FHIR_TOKEN, "fhir_token")
        if self.roles and api_token.user.role not in self.roles:
            if self.on_refused is not None:
                self.on_refused(request)
            raise Forbidden(self.message or "Your role may not use this operation.", self.code)
        otp_gate(user=api_token.user, path=request.path, verified=api_token.otp_verified)
        return api_token.user
