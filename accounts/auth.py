from ninja.security import HttpBearer

from accounts.otp import otp_gate
from accounts.services import token_authenticate


class BearerTokenAuth(HttpBearer):
    """`Authorization: Bearer <token>` for the JSON API; anything not live is a 401.

    Staff whose token has no verified second factor get 403 `otp_required` on medical and audit
    paths while PATTERM_REQUIRE_STAFF_OTP is on.
    """

    def authenticate(self, request, token):
        api_token = token_authenticate(raw=token)
        if api_token is None:
            return None
        request.user = api_token.user
        request.api_token = api_token
        otp_gate(user=api_token.user, path=request.path, verified=api_token.otp_verified)
        return api_token.user
