"""The one JSON API, at /api: every app's router, and API.md's error contract in one place."""

import logging

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import InterfaceError, OperationalError, connection
from django.http import Http404
from ninja import NinjaAPI, Schema, Status
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser

from accounts.api import router as accounts_router
from accounts.auth import BearerTokenAuth
from accounts.models import Role
from audit.api import MESSAGE_AUDITORS_ONLY
from audit.api import router as audit_router
from booking.api import router as booking_router
from consent.api import router as consent_router
from patterm import openapi
from patterm.errors import (
    MESSAGE_INVALID_INPUT,
    MESSAGE_NOT_FOUND,
    MESSAGE_UNAVAILABLE,
    STATUS_CODES,
    DomainError,
)
from vault.api import router as vault_router
from vault.crypto import DecryptionError
from vault.keys import master_key_ring
from vault.relatives_api import router as relatives_router

logger = logging.getLogger("patterm.api")

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_JSON_TYPES = ("application/json", "")


class JsonOrFormParser(Parser):
    """JSON bodies, and form-encoded ones for clients that send forms; nothing else."""

    def parse_body(self, request):
        if request.content_type in _FORM_TYPES:
            return request.POST.dict()
        if request.content_type not in _JSON_TYPES:
            raise ValueError(f"unsupported content type {request.content_type}")
        return super().parse_body(request)


class PattermApi(NinjaAPI):
    def get_openapi_schema(self, *, path_prefix=None, path_params=None):
        if path_prefix is None:
            path_prefix = self.get_root_path(path_params or {})
        return openapi.document(self, path_prefix=path_prefix)


api = PattermApi(
    title="Patterm API",
    version="1",
    description="Patient portal and clinic backend. Errors are `{detail, code}` (API.md).",
    auth=BearerTokenAuth(),
    parser=JsonOrFormParser(),
    urls_namespace="api",
    # The paths begin with /api: the server is this one's origin, wherever it is served.
    servers=[{"url": "/", "description": "This Patterm server"}],
    openapi_extra={
        "tags": openapi.TAGS,
    },
)


def error_response(request, status: int, detail, code: str | None = None, **extra):
    body = {"detail": str(detail), "code": code or STATUS_CODES.get(status, "error"), **extra}
    return api.create_response(request, body, status=status)


def _field_name(location: tuple) -> str:
    # ("body", "payload", "email") -> "email"; ("query", "limit") -> "limit"
    parts = [str(part) for part in location[2 if location[:1] == ("body",) else 1 :]]
    return ".".join(parts) or str(location[0] if location else "body")


@api.exception_handler(ValidationError)
def _validation_error(request, exc: ValidationError):
    errors = [
        {
            "field": _field_name(tuple(error.get("loc", ()))),
            "message": error.get("msg", "").removeprefix("Value error, "),
        }
        for error in exc.errors
    ]
    return error_response(request, 422, MESSAGE_INVALID_INPUT, "validation_error", errors=errors)


@api.exception_handler(DomainError)
def _domain_error(request, exc: DomainError):
    extra = {"errors": exc.errors} if exc.errors else {}
    response = error_response(request, exc.status, exc.message, exc.code, **extra)
    if exc.status == 401:
        response["WWW-Authenticate"] = "Bearer"
    return response


@api.exception_handler(AuthenticationError)
def _authentication_error(request, exc: AuthenticationError):
    response = error_response(
        request, 401, "Authentication required: send a valid bearer token.", "not_authenticated"
    )
    response["WWW-Authenticate"] = "Bearer"
    return response


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    return error_response(request, exc.status_code, exc.message)


@api.exception_handler(Http404)
def _not_found(request, exc):
    return error_response(request, 404, MESSAGE_NOT_FOUND)


@api.exception_handler(DecryptionError)
def _decryption_error(request, exc: DecryptionError):
    # The message names model, field and row, never content; the client learns none of it.
    logger.error("decryption failed in %s %s: %s", request.method, request.path, exc)
    return error_response(
        request,
        500,
        "A stored value could not be decrypted. The incident was logged.",
        "decryption_failed",
        request_id=getattr(request, "request_id", ""),
    )


@api.exception_handler(Exception)
def _unexpected(request, exc: Exception):
    if isinstance(exc, RequestDataTooBig):
        return error_response(request, 413, "The request body is too large.")
    if isinstance(exc, SuspiciousOperation):
        return error_response(request, 400, "Bad request.")
    if isinstance(exc, OperationalError | InterfaceError):
        # The database is down or restarting (bench/load.py restarts it under load): a JSON 503
        # that says to retry, and the next request connects afresh (CONN_MAX_AGE, health checks).
        logger.warning("database unavailable in %s %s: %s", request.method, request.path, exc)
        response = error_response(
            request, 503, MESSAGE_UNAVAILABLE, request_id=getattr(request, "request_id", "")
        )
        response["Retry-After"] = "2"
        return response
    # The traceback goes to the log (never request bodies or local values); the client learns
    # only the request id to quote.
    logger.exception("unhandled error in %s %s", request.method, request.path)
    return error_response(
        request,
        500,
        "Internal server error.",
        "server_error",
        request_id=getattr(request, "request_id", ""),
    )


api.add_router("", accounts_router)
api.add_router("", vault_router)
api.add_router("", booking_router)
# Every operation of /api/audit/ is the auditors': other roles get 403 before the query or body
# is read; a new route there gets the check without a word (an `auth=` of its own overrides it).
api.add_router(
    "",
    audit_router,
    auth=BearerTokenAuth(Role.AUDITOR, message=MESSAGE_AUDITORS_ONLY, code="auditors_only"),
)
api.add_router("", consent_router)
api.add_router("", relatives_router)


class HealthOut(Schema):
    status: str
    database: str
    master_keys: int
    active_master_key_version: int | None


@api.get("/health", response={200: HealthOut, 503: HealthOut}, auth=None, tags=["operations"])
def health(request):
    """Liveness and readiness: the database answers and the master keys are loaded."""
    database = keys = "ok"
    try:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        logger.exception("health check: database unreachable")
        database = "unreachable"
    try:
        ring = master_key_ring()
    except Exception:
        logger.exception("health check: master keys not loaded")
        ring, keys = None, "missing"
    ok = database == "ok" and keys == "ok"
    return Status(
        200 if ok else 503,
        {
            "status": "ok" if ok else "unavailable",
            "database": database,
            "master_keys": len(ring.keys) if ring else 0,
            "active_master_key_version": ring.active_version if ring else None,
        },
    )
