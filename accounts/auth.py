from ninja.security import HttpBearer

from accounts.services import token_authenticate


class BearerTokenAuth(HttpBearer):
    """`Authorization: Bearer <token>` for the JSON API; anything not live is a 401."""

    def authenticate(self, request, token):
        api_token = token_authenticate(raw=token)
        if api_token is None:
            return None
        request.user = api_token.user
        request.api_token = api_token
        return api_token.user
