"""Follow, block and mute routes, and follower/following lists."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from tidings.accounts.api import UsernamePath
from tidings.accounts.schemas import PublicProfile
from tidings.auth.deps import Viewer, limit, require
from tidings.auth.policy import Permission, Principal
from tidings.core.deps import DbSession
from tidings.core.pagination import Page, PageParams, page_params, set_next_link
from tidings.graph import service
from tidings.graph.repository import OwnKind
from tidings.graph.schemas import FollowRequestOut, OwnRelationOut, RelationshipOut

router = APIRouter(prefix="/api/v1/users/{username}", tags=["social graph"])
own_router = APIRouter(prefix="/api/v1/me", tags=["social graph"])
Actor = Annotated[Principal, Depends(require(Permission.CONTENT_WRITE))]
SelfReader = Annotated[Principal, Depends(require(Permission.SELF_READ))]
PageDep = Annotated[PageParams, Depends(page_params)]


@router.put(
    "/follow",
    response_model=RelationshipOut,
    summary="Follow (idempotent)",
    dependencies=[Depends(limit("follow"))],
)
async def follow(username: UsernamePath, actor: Actor, session: DbSession) -> RelationshipOut:
    return RelationshipOut.model_validate(await service.follow(session, actor, username))


@router.delete("/follow", status_code=204, summary="Unfollow (idempotent)")
async def unfollow(username: UsernamePath, actor: Actor, session: DbSession) -> Response:
    await service.unfollow(session, actor, username)
    return Response(status_code=204)


@router.put("/block", response_model=RelationshipOut, summary="Block (removes follows both ways)")
async def block(username: UsernamePath, actor: Actor, session: DbSession) -> RelationshipOut:
    return RelationshipOut.model_validate(await service.block(session, actor, username))


@router.delete("/block", status_code=204, summary="Unblock")
async def unblock(username: UsernamePath, actor: Actor, session: DbSession) -> Response:
    await service.unblock(session, actor, username)
    return Response(status_code=204)


@router.put(
    "/mute", response_model=RelationshipOut, summary="Mute (hides their posts from your feed)"
)
async def mute(username: UsernamePath, actor: Actor, session: DbSession) -> RelationshipOut:
    return RelationshipOut.model_validate(await service.mute(session, actor, username))


@router.delete("/mute", status_code=204, summary="Unmute")
async def unmute(username: UsernamePath, actor: Actor, session: DbSession) -> Response:
    await service.unmute(session, actor, username)
    return Response(status_code=204)


async def _list(
    request: Request,
    response: Response,
    session: DbSession,
    viewer: Principal | None,
    username: str,
    page: PageParams,
    direction: str,
) -> Page[PublicProfile]:
    users, cursor = await service.connections(session, viewer, username, page, direction)
    set_next_link(request, response, cursor)
    return Page[PublicProfile](
        data=[PublicProfile.model_validate(u) for u in users], next_cursor=cursor
    )


@router.get("/followers", response_model=Page[PublicProfile], summary="Followers, newest first")
async def followers(
    request: Request,
    response: Response,
    username: UsernamePath,
    viewer: Viewer,
    session: DbSession,
    page: PageDep,
) -> Page[PublicProfile]:
    return await _list(request, response, session, viewer, username, page, "followers")


@router.get("/following", response_model=Page[PublicProfile], summary="Who they follow")
async def following(
    request: Request,
    response: Response,
    username: UsernamePath,
    viewer: Viewer,
    session: DbSession,
    page: PageDep,
) -> Page[PublicProfile]:
    return await _list(request, response, session, viewer, username, page, "following")


async def _own(
    request: Request,
    response: Response,
    session: DbSession,
    principal: Principal,
    page: PageParams,
    kind: OwnKind,
) -> Page[OwnRelationOut]:
    items, cursor = await service.own_relations(session, principal, page, kind)
    set_next_link(request, response, cursor)
    return Page[OwnRelationOut](data=items, next_cursor=cursor)


@own_router.get(
    "/blocks", response_model=Page[OwnRelationOut], summary="Accounts you block, newest first"
)
async def my_blocks(
    request: Request, response: Response, principal: SelfReader, session: DbSession, page: PageDep
) -> Page[OwnRelationOut]:
    return await _own(request, response, session, principal, page, "blocks")


@own_router.get(
    "/mutes", response_model=Page[OwnRelationOut], summary="Accounts you mute, newest first"
)
async def my_mutes(
    request: Request, response: Response, principal: SelfReader, session: DbSession, page: PageDep
) -> Page[OwnRelationOut]:
    return await _own(request, response, session, principal, page, "mutes")


@own_router.get(
    "/follow-requests",
    response_model=Page[FollowRequestOut],
    summary="Follow requests waiting for your answer (a locked account), newest first",
)
async def my_follow_requests(
    request: Request, response: Response, principal: SelfReader, session: DbSession, page: PageDep
) -> Page[FollowRequestOut]:
    rows, cursor = await service.follow_requests(session, principal, page)
    set_next_link(request, response, cursor)
    data = [
        FollowRequestOut(
            id=user.id,
            username=user.username,
            display_name=user.display_name,
            avatar_url=user.avatar_url,
            since=since,
        )
        for user, since in rows
    ]
    return Page[FollowRequestOut](data=data, next_cursor=cursor)


@own_router.post(
    "/follow-requests/{username}/approve",
    response_model=RelationshipOut,
    summary="Approve a follow request: they follow you from now on",
)
async def approve_follow_request(
    username: UsernamePath, actor: Actor, session: DbSession
) -> RelationshipOut:
    return RelationshipOut.model_validate(await service.approve_request(session, actor, username))


@own_router.delete(
    "/follow-requests/{username}",
    status_code=204,
    summary="Decline a follow request (idempotent)",
)
async def decline_follow_request(
    username: UsernamePath, actor: Actor, session: DbSession
) -> Response:
    await service.decline_request(session, actor, username)
    return Response(status_code=204)
