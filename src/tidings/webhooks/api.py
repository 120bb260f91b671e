"""Webhook routes (admins): subscriptions, secret rotation, deliveries and redelivery."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from tidings.auth.deps import limit, require
from tidings.auth.policy import Permission, Principal
from tidings.core.deps import ContainerDep, DbSession
from tidings.core.http import IdPath, parse_id
from tidings.core.pagination import Page, PageParams, page_params, set_next_link
from tidings.webhooks import service
from tidings.webhooks.models import DeliveryStatus
from tidings.webhooks.schemas import (
    DeliveryOut,
    WebhookCreate,
    WebhookOut,
    WebhookUpdate,
    WebhookWithSecret,
)
from tidings.webhooks.service import WebhookKeys

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])
Admin = Annotated[Principal, Depends(require(Permission.USERS_MANAGE))]
Pages = Annotated[PageParams, Depends(page_params)]


async def webhook_keys(container: ContainerDep) -> WebhookKeys:
    return WebhookKeys.from_settings(container.settings, container.keys.secret_key)


Keys = Annotated[WebhookKeys, Depends(webhook_keys)]


@router.post(
    "",
    status_code=201,
    response_model=WebhookWithSecret,
    summary="Subscribe an endpoint (the secret is shown only in this response)",
    dependencies=[Depends(limit("webhook_create"))],
)
async def create_webhook(
    body: WebhookCreate, admin: Admin, session: DbSession, keys: Keys, response: Response
) -> WebhookWithSecret:
    subscription, secret = await service.create_webhook(session, admin, body, keys)
    response.headers["Location"] = f"/api/v1/webhooks/{subscription.id}"
    return WebhookWithSecret.model_validate({**_fields(subscription), "secret": secret})


@router.get("", response_model=Page[WebhookOut], summary="Webhook subscriptions")
async def list_webhooks(
    request: Request, response: Response, _admin: Admin, session: DbSession, page: Pages
) -> Page[WebhookOut]:
    rows, cursor = await service.list_webhooks(session, page)
    set_next_link(request, response, cursor)
    return Page[WebhookOut](data=[WebhookOut.model_validate(r) for r in rows], next_cursor=cursor)


@router.get("/{webhook_id}", response_model=WebhookOut, summary="One webhook subscription")
async def read_webhook(webhook_id: IdPath, _admin: Admin, session: DbSession) -> WebhookOut:
    subscription = await service.get_webhook(session, parse_id(webhook_id, "webhook"))
    return WebhookOut.model_validate(subscription)


@router.patch("/{webhook_id}", response_model=WebhookOut, summary="Change a subscription")
async def update_webhook(
    webhook_id: IdPath, body: WebhookUpdate, admin: Admin, session: DbSession, keys: Keys
) -> WebhookOut:
    subscription = await service.update_webhook(
        session, admin, parse_id(webhook_id, "webhook"), body, keys
    )
    return WebhookOut.model_validate(subscription)


@router.delete("/{webhook_id}", status_code=204, summary="Delete a subscription")
async def delete_webhook(webhook_id: IdPath, admin: Admin, session: DbSession) -> Response:
    await service.delete_webhook(session, admin, parse_id(webhook_id, "webhook"))
    return Response(status_code=204)


@router.post(
    "/{webhook_id}/rotate-secret",
    response_model=WebhookWithSecret,
    summary="New signing secret (shown once); the old one also signs during the overlap",
)
async def rotate_secret(
    webhook_id: IdPath, admin: Admin, session: DbSession, keys: Keys
) -> WebhookWithSecret:
    subscription, secret = await service.rotate_secret(
        session, admin, parse_id(webhook_id, "webhook"), keys
    )
    return WebhookWithSecret.model_validate({**_fields(subscription), "secret": secret})


@router.get(
    "/{webhook_id}/deliveries", response_model=Page[DeliveryOut], summary="Delivery history"
)
async def list_deliveries(
    request: Request,
    response: Response,
    webhook_id: IdPath,
    _admin: Admin,
    session: DbSession,
    page: Pages,
    status: Annotated[DeliveryStatus | None, Query(description="Only this status")] = None,
) -> Page[DeliveryOut]:
    rows, cursor = await service.list_deliveries(
        session, parse_id(webhook_id, "webhook"), page, status
    )
    set_next_link(request, response, cursor)
    return Page[DeliveryOut](data=[DeliveryOut.model_validate(r) for r in rows], next_cursor=cursor)


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_model=DeliveryOut,
    summary="Send a delivery again, from the start of the retry schedule",
)
async def redeliver(
    webhook_id: IdPath, delivery_id: IdPath, _admin: Admin, session: DbSession
) -> DeliveryOut:
    delivery = await service.redeliver(
        session, parse_id(webhook_id, "webhook"), parse_id(delivery_id, "delivery")
    )
    return DeliveryOut.model_validate(delivery)


def _fields(subscription: object) -> dict[str, object]:
    return WebhookOut.model_validate(subscription).model_dump()
