"""What FastAPI cannot infer for the OpenAPI document: the RFC 9457 errors every operation can
answer, and which operations take credentials optionally.

FastAPI documents only the 2xx answer and its own 422 shape (which Tidings never sends: every
error is ``application/problem+json``, see :mod:`tidings.core.problems`). Every operation can
also be refused by the rate limiter (429), by a bad bearer token (401), by a busy database
(503), and so on; those answers are added here, once, for all operations.
"""

from __future__ import annotations

import json
from typing import Any

from tidings.core.problems import PROBLEM_MEDIA_TYPE

HTTP_METHODS = frozenset({"get", "put", "post", "delete", "patch", "options", "head", "trace"})
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}

PROBLEM_SCHEMAS: dict[str, Any] = {
    "Problem": {
        "title": "Problem",
        "description": "An RFC 9457 problem document: the body of every error.",
        "type": "object",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string", "format": "uri"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
            "request_id": {"type": "string"},
            "errors": {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}},
            "error": {"type": "string", "description": "RFC 6749 error code (token endpoint)."},
            "error_description": {"type": "string"},
        },
        "additionalProperties": True,
    },
    "FieldError": {
        "title": "FieldError",
        "type": "object",
        "required": ["loc", "msg", "type"],
        "properties": {
            "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
            "msg": {"type": "string"},
            "type": {"type": "string"},
        },
    },
}

_DESCRIPTIONS = {
    400: "Bad request: malformed JSON, JSON nested too deep, an invalid cursor.",
    401: "No valid access token (or a malformed Authorization header).",
    403: "The caller's role does not allow this (`second-factor-required`: a moderator's or "
    "admin's powers wait for two-step sign-in on the account).",
    404: "No such resource, or one the caller may not see.",
    409: "A conflict with the current state (retry a concurrent update).",
    412: "If-Match does not name the current version.",
    413: "The request body is too large.",
    415: "The request body is not in a supported media type.",
    422: "The request did not pass validation.",
    429: "Rate limited; see Retry-After.",
    503: "Busy or the database is unavailable; retry shortly.",
}
_HEADERS = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}}},
    429: {"Retry-After": {"schema": {"type": "string"}}},
    503: {"Retry-After": {"schema": {"type": "string"}}},
}


def _statuses(path: str, method: str, operation: dict[str, Any], public: bool) -> set[int]:
    statuses = {400, 401, 429, 503}
    if not public:
        statuses.add(403)
    if "{" in path or "requestBody" in operation:  # the target, or an object the body names
        statuses.add(404)
    if method != "get":
        statuses.add(409)
    if operation.get("parameters") or "requestBody" in operation:
        statuses.add(422)
    if "requestBody" in operation:
        statuses |= {413, 415}
    return statuses


def _problem_response(status: int, existing: dict[str, Any] | None) -> dict[str, Any]:
    if status == 422 or existing is None:  # FastAPI's own 422 shape is never sent
        response: dict[str, Any] = {"description": _DESCRIPTIONS.get(status, "An error.")}
    else:
        response = dict(existing)
    if not response.get("content"):
        response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_REF}}
    if status in _HEADERS:
        response.setdefault("headers", _HEADERS[status])
    return response


def document_errors(document: dict[str, Any], public: set[tuple[str, str]], token_url: str) -> None:
    """Add the problem responses to every operation; mark ``public`` ones (``(path, method)``)
    as taking credentials optionally (``security: [{}, ...]``); name the OAuth 2.0 endpoint that
    issues the bearer tokens (RFC 6749 password and refresh grants)."""
    components = document.setdefault("components", {})
    components.setdefault("schemas", {}).update(PROBLEM_SCHEMAS)
    components.setdefault("securitySchemes", {})["OAuth2Password"] = {
        "type": "oauth2",
        "description": "How the bearer tokens are issued (use them as HTTPBearer).",
        "flows": {"password": {"tokenUrl": token_url, "refreshUrl": token_url, "scopes": {}}},
    }
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            is_public = (path, method) in public
            if is_public and operation.get("security"):
                operation["security"] = [{}, *operation["security"]]
            responses = operation.setdefault("responses", {})
            statuses = _statuses(path, method, operation, is_public) | {
                int(code) for code in responses if code.isdigit() and int(code) >= 400
            }
            for status in sorted(statuses):
                responses[str(status)] = _problem_response(status, responses.get(str(status)))
    schemas = document["components"]["schemas"]
    for unused in ("HTTPValidationError", "ValidationError"):
        if f'"#/components/schemas/{unused}"' not in json.dumps(document):
            schemas.pop(unused, None)
