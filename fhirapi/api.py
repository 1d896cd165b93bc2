"""The FHIR R4 read API at /fhir/R4/: its own NinjaAPI, so that its answers are FHIR's
(OperationOutcome errors, application/fhir+json, a CapabilityStatement) and the /api OpenAPI
document stays the portal's (decision 0020). Handlers only parse and hand over to
fhirapi.services."""

import json
import logging

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.serializers.json import DjangoJSONEncoder
from django.db import InterfaceError, OperationalError
from django.http import Http404
from django.utils.translation import gettext_lazy as _
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.renderers import BaseRenderer
from ninja.security import HttpBearer

from accounts.otp import otp_gate
from accounts.scopes import FHIR_RESOURCE_TYPES
from accounts.services import token_authenticate
from fhirapi import services
from fhirapi.capability import FHIR_JSON, capability_statement
from fhirapi.search import MESSAGE_REPEATED, FhirError, invalid, search_parse
from patterm.errors import MESSAGE_NOT_FOUND, DomainError

logger = logging.getLogger("patterm.fhir")

MESSAGE_UNKNOWN_TYPE = _("This server does not serve the resource type %(type)s.")
MESSAGE_LOGIN = _("Authentication required: send a bearer token with SMART scopes.")
MESSAGE_NO_SCOPE = _(
    "This token has no SMART scopes: ask for one at login (scope), e.g. patient/*.rs."
)
MESSAGE_READ_ONLY = _("This FHIR API only reads: use GET.")
MESSAGE_SERVER_ERROR = _("Internal server error. The incident was logged.")
MESSAGE_JSON_ONLY = _(
    "This server answers in JSON only (application/fhir+json): ask for it with _format=json "
    "or an Accept header that admits it."
)
MESSAGE_BAD_PRETTY = _("_pretty must be true or false.")

# The values of R4's `_format` (http.html#mime-type) that name JSON; a `;fhirVersion=4.0`
# parameter is allowed. Patterm serves no XML or Turtle (decision 0020).
JSON_FORMATS = frozenset(
    {"json", "application/json", "application/fhir+json", "application/json+fhir"}
)

# OperationOutcome issue types (http://hl7.org/fhir/R4/valueset-issue-type.html) by status.
ISSUE_TYPES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    413: "too-costly",
    422: "invalid",
    429: "throttled",
    503: "transient",
}


class FhirRenderer(BaseRenderer):
    media_type = FHIR_JSON

    def render(self, request, data, *, response_status):
        indent = 2 if request.GET.get("_pretty") == "true" else None  # checked by _negotiate
        return json.dumps(data, cls=DjangoJSONEncoder, indent=indent)


class FhirBearer(HttpBearer):
    """A live API token with SMART scopes; which types it may read is checked per operation
    (services.scope_check). Staff need a verified second factor here as on /api/medical/."""

    def authenticate(self, request, token):
        api_token = token_authenticate(raw=token)
        if api_token is None:
            return None
        request.user = api_token.user
        request.api_token = api_token
        if not api_token.scope:
            raise FhirError(403, "forbidden", str(MESSAGE_NO_SCOPE))
        otp_gate(user=api_token.user, path=request.path, verified=api_token.otp_verified)
        return api_token.user


fhir_api = NinjaAPI(
    title="Patterm FHIR R4",
    version="4.0.1",
    urls_namespace="fhir",
    auth=FhirBearer(),
    renderer=FhirRenderer(),
    docs_url=None,
    openapi_url=None,
)


def operation_outcome(request, status: int, code: str, diagnostics, severity="error"):
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": str(diagnostics)}],
    }
    response = fhir_api.create_response(request, body, status=status)
    if status == 401:
        response["WWW-Authenticate"] = "Bearer"
    return response


@fhir_api.exception_handler(FhirError)
def _fhir_error(request, exc: FhirError):
    return operation_outcome(request, exc.status, exc.code, exc.diagnostics)


@fhir_api.exception_handler(DomainError)
def _domain_error(request, exc: DomainError):
    status = 400 if exc.status == 422 else exc.status
    return operation_outcome(request, status, ISSUE_TYPES.get(status, "processing"), exc.message)


@fhir_api.exception_handler(AuthenticationError)
def _authentication_error(request, exc):
    return operation_outcome(request, 401, "login", MESSAGE_LOGIN)


@fhir_api.exception_handler(ValidationError)
def _validation_error(request, exc):
    return operation_outcome(request, 400, "invalid", exc.errors)


@fhir_api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    status = exc.status_code
    return operation_outcome(request, status, ISSUE_TYPES.get(status, "processing"), exc.message)


@fhir_api.exception_handler(Http404)
def _not_found(request, exc):
    return operation_outcome(request, 404, "not-found", MESSAGE_NOT_FOUND)


@fhir_api.exception_handler(Exception)
def _unexpected(request, exc: Exception):
    if isinstance(exc, RequestDataTooBig):
        return operation_outcome(request, 413, "too-costly", "The request is too large.")
    if isinstance(exc, SuspiciousOperation):
        return operation_outcome(request, 400, "invalid", "Bad request.")
    if isinstance(exc, OperationalError | InterfaceError):
        logger.warning("database unavailable in %s %s: %s", request.method, request.path, exc)
        response = operation_outcome(request, 503, "transient", "Please try again.")
        response["Retry-After"] = "2"
        return response
    logger.exception("unhandled error in %s %s", request.method, request.path)
    return operation_outcome(request, 500, "exception", MESSAGE_SERVER_ERROR)


def _base_url(request) -> str:
    return request.build_absolute_uri("/fhir/R4/")


def _caller(request) -> services.Caller:
    return services.Caller(user=request.user, token=request.api_token)


def _general_parameter(request, name: str) -> str | None:
    values = request.GET.getlist(name)
    if len(values) > 1:
        raise invalid(MESSAGE_REPEATED, name=name)
    return values[0] if values else None


def _negotiate(request) -> None:
    """R4's general parameters of every interaction (http.html#parameters): `_format`, which
    overrides the Accept header, and `_pretty`. What admits no JSON is a 406."""
    wanted = _general_parameter(request, "_format")
    if wanted is not None:
        # An unencoded "+" in the query arrives as a space (application/fhir json).
        media_type = wanted.split(";")[0].strip().replace(" ", "+").lower()
        if media_type not in JSON_FORMATS:
            raise FhirError(406, "not-supported", str(MESSAGE_JSON_ONLY))
    elif request.headers.get("Accept") and not (
        request.accepts(FHIR_JSON) or request.accepts("application/json")
    ):
        raise FhirError(406, "not-supported", str(MESSAGE_JSON_ONLY))
    if _general_parameter(request, "_pretty") not in (None, "true", "false"):
        raise FhirError(400, "invalid", str(MESSAGE_BAD_PRETTY))


def _resource_type(resource_type: str) -> str:
    if resource_type not in FHIR_RESOURCE_TYPES:
        raise FhirError(404, "not-supported", str(MESSAGE_UNKNOWN_TYPE) % {"type": resource_type})
    return resource_type


@fhir_api.get("/metadata", auth=None)
def metadata(request):
    """The CapabilityStatement: public, as FHIR servers' are."""
    _negotiate(request)
    return capability_statement(_base_url(request))


# Every method is routed, so that a write (this API only reads) is a 405 OperationOutcome and not
# an HTML page.
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def _read_only(request) -> None:
    if request.method != "GET":
        raise FhirError(405, "not-supported", str(MESSAGE_READ_ONLY))


@fhir_api.api_operation(METHODS, "/{resource_type}")
def search(request, resource_type: str):
    _read_only(request)
    _negotiate(request)
    resource_type = _resource_type(resource_type)
    lenient = "handling=lenient" in request.headers.get("Prefer", "").replace(" ", "")
    parsed = search_parse(resource_type, request.GET, lenient=lenient)
    page = services.resource_search(
        caller=_caller(request), resource_type=resource_type, search=parsed
    )
    return searchset(request, resource_type, parsed, page)


@fhir_api.api_operation(METHODS, "/{resource_type}/{resource_id}")
def read(request, resource_type: str, resource_id: str):
    _read_only(request)
    _negotiate(request)
    resource_type = _resource_type(resource_type)
    return services.resource_read(
        caller=_caller(request), resource_type=resource_type, resource_id=resource_id
    )


@fhir_api.api_operation(METHODS, "/{path:rest}")
def unknown(request, rest: str):
    """Everything else under /fhir/R4/ (history, operations, compartments): not served."""
    raise FhirError(404, "not-supported", str(MESSAGE_NOT_FOUND))


@fhir_api.api_operation(METHODS, "/")
def root(request):
    """The base itself: no batch or transaction Bundles here."""
    raise FhirError(404, "not-supported", str(MESSAGE_NOT_FOUND))


def searchset(request, resource_type: str, search, page: services.Page) -> dict:
    """The searchset Bundle: total, self and next links, one entry per resource, and an
    OperationOutcome entry for what lenient handling ignored."""
    base = _base_url(request)
    query = request.GET.copy()
    links = [{"relation": "self", "url": request.build_absolute_uri()}]
    if search.offset + search.count < page.total:
        query["_offset"] = str(search.offset + search.count)
        query["_count"] = str(search.count)
        links.append({"relation": "next", "url": f"{base}{resource_type}?{query.urlencode()}"})
    entries = [
        {
            "fullUrl": f"{base}{resource['resourceType']}/{resource['id']}",
            "resource": resource,
            "search": {"mode": "match"},
        }
        for resource in page.resources
    ]
    for warning in search.warnings:
        entries.append(
            {
                "resource": {
                    "resourceType": "OperationOutcome",
                    "issue": [
                        {"severity": "warning", "code": "not-supported", "diagnostics": warning}
                    ],
                },
                "search": {"mode": "outcome"},
            }
        )
    bundle = {"resourceType": "Bundle", "type": "searchset", "total": page.total, "link": links}
    if entries:
        bundle["entry"] = entries
    return bundle
