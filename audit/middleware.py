import ipaddress
import re
import uuid

from audit import context

# A request id from a trusted proxy is kept when it looks like one; anything else is replaced.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def _client_address(request) -> str | None:
    """REMOTE_ADDR when it is an IP address; anything else (a Unix socket's empty or odd value)
    is unknown, not a value PostgreSQL's inet column would refuse with the audited action."""
    address = request.META.get("REMOTE_ADDR") or ""
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return None
    return address


class RequestContextMiddleware:
    """Gives every request an id (X-Request-ID) and records its client address for audit rows."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request.request_id = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        id_token = context.request_id.set(request.request_id)
        address_token = context.client_address.set(_client_address(request))
        try:
            response = self.get_response(request)
        finally:
            context.request_id.reset(id_token)
            context.client_address.reset(address_token)
        response["X-Request-ID"] = request.request_id
        return response
