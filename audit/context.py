"""Where the current request's id and client address live while services run.

Services do not see requests; the audit receiver still needs to know which request and which
address an event came from. The middleware sets these per request (contextvars, so threads and
async tasks do not mix them up); commands and tests leave them empty.
"""

from contextvars import ContextVar

request_id: ContextVar[str] = ContextVar("patterm_request_id", default="")
client_address: ContextVar[str | None] = ContextVar("patterm_client_address", default=None)
