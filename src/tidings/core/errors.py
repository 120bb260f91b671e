"""One error hierarchy; :mod:`tidings.core.problems` renders it as RFC 9457 problem+json."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass
class FieldError:
    loc: list[str | int]
    msg: str
    type: str = "value_error"


@dataclass
class AppError(Exception):
    """Base of every error the API answers on purpose."""

    detail: str = ""
    errors: list[FieldError] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    keep_changes: bool = False  # commit the unit of work even though the request fails

    status: ClassVar[int] = 400
    title: ClassVar[str] = "Bad request"
    slug: ClassVar[str] = "bad-request"

    def __post_init__(self) -> None:
        super().__init__(self.detail or self.title)


class BadRequest(AppError):
    status, title, slug = 400, "Bad request", "bad-request"


class Unauthorized(AppError):
    status, title, slug = 401, "Unauthorized", "unauthorized"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.headers.setdefault("WWW-Authenticate", 'Bearer error="invalid_token"')


class Forbidden(AppError):
    status, title, slug = 403, "Forbidden", "forbidden"


class SecondFactorRequired(Forbidden):
    """A moderator's or admin's powers are asked for by an account without two-step sign-in."""

    slug = "second-factor-required"


class NotFound(AppError):
    status, title, slug = 404, "Not found", "not-found"


class Conflict(AppError):
    status, title, slug = 409, "Conflict", "conflict"


class PreconditionFailed(AppError):
    status, title, slug = 412, "Precondition failed", "precondition-failed"


class PayloadTooLarge(AppError):
    status, title, slug = 413, "Payload too large", "payload-too-large"


class UnsupportedMediaType(AppError):
    status, title, slug = 415, "Unsupported media type", "unsupported-media-type"


class ValidationFailed(AppError):
    status, title, slug = 422, "Validation failed", "validation-failed"


class RateLimited(AppError):
    status, title, slug = 429, "Too many requests", "rate-limited"


class ServiceUnavailable(AppError):
    status, title, slug = 503, "Service unavailable", "service-unavailable"


class OAuthError(BadRequest):
    """An RFC 6749 token-endpoint error; the body keeps ``error`` for OAuth clients."""

    title, slug = "Invalid grant", "oauth-error"

    def __init__(self, error: str, detail: str, *, keep_changes: bool = False) -> None:
        super().__init__(
            detail=detail,
            extra={"error": error, "error_description": detail},
            keep_changes=keep_changes,
        )


class ConfigurationError(RuntimeError):
    """The service refuses to start with this configuration."""
