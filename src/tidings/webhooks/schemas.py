"""Webhook request and response bodies."""

from __future__ import annotations

from typing import Annotated

import httpx2
from pydantic import AfterValidator, Field, model_validator

from tidings.core.schemas import Id, RequestModel, ResponseModel, Timestamp
from tidings.webhooks.catalog import WILDCARD, event_types
from tidings.webhooks.models import DeliveryStatus

MAX_URL_LENGTH = 2048


def _check_url(value: str) -> str:
    if any(c.isspace() or ord(c) < 32 for c in value):
        raise ValueError("must not contain spaces or control characters")
    try:
        url = httpx2.URL(value)
    except httpx2.InvalidURL as exc:
        raise ValueError(f"is not a valid URL ({exc})") from exc
    if url.scheme not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL")
    if not url.raw_host:
        raise ValueError("must name a host")
    if url.userinfo:
        raise ValueError("must not carry credentials; authenticate with the signature instead")
    if url.fragment:
        raise ValueError("must not have a #fragment")
    normalised = str(url)
    if len(normalised) > MAX_URL_LENGTH:
        raise ValueError(f"must be at most {MAX_URL_LENGTH} characters")
    return normalised


def _check_event_types(values: list[str]) -> list[str]:
    unknown = sorted({v for v in values if v != WILDCARD and v not in event_types()})
    if unknown:
        known = ", ".join(sorted(event_types()))
        raise ValueError(f"unknown event types {unknown}; use '*' or any of: {known}")
    if WILDCARD in values:
        return [WILDCARD]
    return list(dict.fromkeys(values))


WebhookUrl = Annotated[
    str,
    Field(max_length=MAX_URL_LENGTH, examples=["https://hooks.example.com/tidings"]),
    AfterValidator(_check_url),
]
EventTypes = Annotated[
    list[Annotated[str, Field(max_length=64)]],
    Field(min_length=1, max_length=50, examples=[["post.created", "post.liked"], ["*"]]),
    AfterValidator(_check_event_types),
]
Description = Annotated[str, Field(max_length=500)]


class WebhookCreate(RequestModel):
    url: WebhookUrl
    event_types: EventTypes
    enabled: bool = True
    description: Description = ""


class WebhookUpdate(RequestModel):
    """Only the fields sent change; none of them may be null."""

    url: WebhookUrl | None = None
    event_types: EventTypes | None = None
    enabled: bool | None = None
    description: Description | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> WebhookUpdate:
        nulls = sorted(n for n in self.model_fields_set if getattr(self, n) is None)
        if nulls:
            raise ValueError(f"{', '.join(nulls)} may not be null")
        return self

    def changes(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in sorted(self.model_fields_set)}


class WebhookOut(ResponseModel):
    id: Id
    owner_id: Id | None
    url: str
    event_types: list[str]
    description: str
    enabled: bool
    disabled_reason: str | None
    disabled_at: Timestamp | None
    consecutive_failures: int
    circuit_open_until: Timestamp | None
    secret_rotated_at: Timestamp | None
    previous_secret_expires_at: Timestamp | None = Field(
        description="Until then the previous secret signs too (rotation overlap)."
    )
    created_at: Timestamp
    updated_at: Timestamp


class WebhookWithSecret(WebhookOut):
    secret: str = Field(
        description="The signing secret (whsec_...). Shown only in this response: store it now."
    )


class DeliveryOut(ResponseModel):
    id: Id
    subscription_id: Id
    event_id: Id
    event_type: str
    message_id: str = Field(description="The webhook-id header: the same on every attempt.")
    status: DeliveryStatus
    attempts: int
    response_status: int | None
    latency_ms: int | None
    next_attempt_at: Timestamp | None
    last_attempt_at: Timestamp | None
    last_error: str | None
    response_excerpt: str | None
    created_at: Timestamp
    delivered_at: Timestamp | None
