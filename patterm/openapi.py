"""The OpenAPI document of /api, built once from the operations (checked by `@redocly/cli lint`
with its recommended rules in CI: `make openapi-lint`, redocly.yaml).

What ninja cannot know is added here, from each operation itself rather than by patching the
dumped JSON: the error responses it can answer (API.md's `{detail, code}` body), an explicit
`security: []` on public operations, and components nothing refers to are left out. An
operation names the errors only it can answer with `openapi_extra=errors(...)`.

This module imports nothing of the apps, so each app's api.py may use it.
"""

import json
from http import HTTPStatus

from ninja.openapi.schema import OpenAPISchema
from ninja.params.models import PathModel

ERROR_SCHEMA = {
    "title": "Error",
    "type": "object",
    "properties": {
        "detail": {"type": "string", "description": "For people, in the request's language."},
        "code": {"type": "string", "description": "For programs (API.md lists them)."},
        "errors": {
            "type": "array",
            "description": "The invalid fields, for 422.",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
        "request_id": {"type": "string", "description": "For 500 and 503, to quote."},
    },
    "required": ["detail", "code"],
}
ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}

# What each error status means in this API; an operation's own description wins (`errors`).
ERROR_MEANING = {
    400: "Bad request: the body is not JSON or a form.",
    401: "`not_authenticated`: no bearer token, or one that is not live.",
    403: "Your role may not use this operation (`forbidden` or the role's code), or staff "
    "without a verified second factor (`otp_required`).",
    404: "`not_found`: no such object, or not yours (the two look the same).",
    409: "`conflict`: the object's state does not allow it now.",
    422: "`validation_error`: an invalid parameter or field, named in `errors`.",
    429: "`throttled`: too many attempts; try again later.",
}

TAGS = [
    {"name": "operations", "description": "Health and readiness for load balancers."},
    {
        "name": "accounts",
        "description": "Registration, login, bearer tokens, sessions, second factor, profile.",
    },
    {
        "name": "record",
        "description": "The medical record: the patient's own, staff reads and entries "
        "(each decided by consent and audited), emergency access, export, erasure.",
    },
    {
        "name": "booking",
        "description": "Clinics, specialties, free slots, appointments (book, move, cancel, "
        "calendar file), the staff schedule, waitlist and insurance.",
    },
    {"name": "audit", "description": "The audit log, its verification and transparency proofs."},
    {"name": "consent", "description": "The patient's consents and access log."},
    {
        "name": "relatives",
        "description": "Relatives an account holder manages (decision 0014).",
    },
]


def errors(*statuses: int, **described: str) -> dict:
    """`openapi_extra` for the error responses only this operation can answer, beyond those
    that follow from its authentication, path and input: `errors(409)`, or with what it means
    here, `errors(**{"409": "slot_taken: ..."})`."""
    wanted = {int(status): ERROR_MEANING[int(status)] for status in statuses}
    wanted |= {int(status): text for status, text in described.items()}
    return {
        "responses": {
            status: {"description": text, "content": ERROR_CONTENT}
            for status, text in wanted.items()
        }
    }


def _answers(operation) -> set[int]:
    """The error statuses that follow from how the operation is declared."""
    statuses = set()
    if operation.auth_callbacks:
        statuses.add(401)
        if any(getattr(auth, "roles", None) for auth in operation.auth_callbacks):
            statuses.add(403)
    if any(isinstance(model, type) and issubclass(model, PathModel) for model in operation.models):
        statuses.update((404, 422))
    elif operation.models:
        statuses.add(422)
    return statuses


def _references(document) -> set[str]:
    return {
        part.split("/")[-1]
        for part in json.dumps(document).split('"$ref": "')[1:]
        for part in [part.split('"', 1)[0]]
    }


class PattermOpenAPISchema(OpenAPISchema):
    def operation_details(self, operation):
        details = super().operation_details(operation)
        # A public operation says so (an absent `security` would mean "as the document's").
        details.setdefault("security", [])
        responses = details["responses"]
        for status in sorted(_answers(operation)):
            if status not in responses and str(status) not in responses:
                responses[status] = {"description": ERROR_MEANING[status], "content": ERROR_CONTENT}
        responses["default"] = {
            "description": "Any other error (500, 503): `{detail, code, request_id}`.",
            "content": ERROR_CONTENT,
        }
        for status, response in responses.items():
            if isinstance(status, int) and status >= 400 and "content" not in response:
                response["content"] = ERROR_CONTENT
            if response.get("description") == "Unknown Status Code":
                response["description"] = HTTPStatus(int(status)).phrase
        # In the order of the statuses, `default` last, whoever added them.
        details["responses"] = dict(
            sorted(responses.items(), key=lambda item: (item[0] == "default", str(item[0])))
        )
        return details


def document(api, *, path_prefix: str) -> dict:
    """The document /api/openapi.json serves."""
    schema = PattermOpenAPISchema(api, path_prefix)
    schema["components"].setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    # Query models flattened into parameters leave their own schema behind; nothing refers to
    # it (ninja adds every model it sees). Drop what is unreferenced, until nothing changes.
    schemas = schema["components"]["schemas"]
    while unused := set(schemas) - _references({k: v for k, v in schema.items()}):
        for name in unused:
            del schemas[name]
    return schema
