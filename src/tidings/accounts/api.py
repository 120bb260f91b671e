"""Account routes: registration, the signed-in user, public profiles, admin changes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from tidings.accounts import service
from tidings.accounts.export import stream_export
from tidings.accounts.schemas import (
    USERNAME_PATTERN,
    Account,
    AccountDeletion,
    AccountExport,
    AdminUserUpdate,
    DeletionAccepted,
    PasswordChange,
    ProfileUpdate,
    PublicProfile,
    Reauthentication,
    RegisterRequest,
    SessionList,
)
from tidings.auth.deps import Viewer, limit, require
from tidings.auth.policy import Permission, Principal, Role
from tidings.core.deps import ContainerDep, DbSession
from tidings.core.http import IdPath, parse_id
from tidings.core.pagination import Page, PageParams, page_params, set_next_link

router = APIRouter(prefix="/api/v1", tags=["accounts"])
UsernamePath = Annotated[str, Path(pattern=USERNAME_PATTERN, max_length=30)]
SelfReader = Annotated[Principal, Depends(require(Permission.SELF_READ))]
SelfWriter = Annotated[Principal, Depends(require(Permission.SELF_WRITE))]
Admin = Annotated[Principal, Depends(require(Permission.USERS_MANAGE))]


@router.post(
    "/accounts",
    status_code=201,
    response_model=Account,
    summary="Register",
    dependencies=[Depends(limit("register"))],
)
async def register(
    body: RegisterRequest, session: DbSession, container: ContainerDep, _viewer: Viewer
) -> Account:
    user = await service.register(session, container.hasher, body)
    return Account.model_validate(user)


@router.get("/me", response_model=Account, summary="The signed-in account")
async def read_me(principal: SelfReader, session: DbSession) -> Account:
    return Account.model_validate(await service.get_account(session, principal.user_id))


@router.patch("/me", response_model=Account, summary="Update your profile")
async def update_me(body: ProfileUpdate, principal: SelfWriter, session: DbSession) -> Account:
    changes = body.model_dump(exclude_unset=True)
    user = await service.update_profile(session, principal.user_id, changes)
    return Account.model_validate(user)


@router.get(
    "/me/export",
    response_model=AccountExport,
    summary="Download everything stored about your account (JSON)",
    dependencies=[Depends(limit("account_export"))],
)
async def export_me(
    principal: SelfReader, session: DbSession, container: ContainerDep
) -> StreamingResponse:
    """Streamed as it is read (docs/accounts.md); a missing account is a 404 before any byte."""
    account = Account.model_validate(await service.get_account(session, principal.user_id))
    name = f"tidings-export-{principal.username}.json"
    return StreamingResponse(
        stream_export(container.db, principal.user_id, account),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.post(
    "/me/password",
    status_code=204,
    summary="Change your password (signs out everywhere)",
    dependencies=[Depends(limit("password_change"))],
)
async def change_password(
    body: PasswordChange, principal: SelfWriter, session: DbSession, container: ContainerDep
) -> Response:
    await service.change_password(
        session,
        container.settings,
        container.hasher,
        container.limiter,
        principal,
        body.current_password,
        body.new_password,
    )
    return Response(status_code=204)


@router.delete(
    "/me",
    status_code=202,
    response_model=DeletionAccepted,
    summary="Delete your account (its content is erased in the background)",
    dependencies=[Depends(limit("account_delete"))],
)
async def delete_me(
    body: AccountDeletion, principal: SelfWriter, session: DbSession, container: ContainerDep
) -> DeletionAccepted:
    user = await service.delete_account(
        session, container.hasher, container.limiter, principal, body
    )
    return DeletionAccepted.model_validate(user)


@router.get(
    "/me/sessions", response_model=SessionList, summary="Where you are signed in (active sessions)"
)
async def my_sessions(principal: SelfReader, session: DbSession) -> SessionList:
    return SessionList(data=await service.list_sessions(session, principal))


@router.delete(
    "/me/sessions",
    status_code=204,
    summary="Sign out every other session (with your password)",
    dependencies=[Depends(limit("session_end"))],
)
async def end_other_sessions(
    body: Reauthentication, principal: SelfWriter, session: DbSession, container: ContainerDep
) -> Response:
    await service.end_sessions(session, container.hasher, container.limiter, principal, body, None)
    return Response(status_code=204)


@router.delete(
    "/me/sessions/{session_id}",
    status_code=204,
    summary="Sign out one session (with your password)",
    dependencies=[Depends(limit("session_end"))],
)
async def end_session(
    session_id: IdPath,
    body: Reauthentication,
    principal: SelfWriter,
    session: DbSession,
    container: ContainerDep,
) -> Response:
    ending = parse_id(session_id, "session")
    await service.end_sessions(
        session, container.hasher, container.limiter, principal, body, ending
    )
    return Response(status_code=204)


@router.get(
    "/users",
    response_model=Page[PublicProfile],
    summary="Find accounts by the start of their username (any case), in username order",
    dependencies=[Depends(limit("user_search"))],
)
async def find_users(
    request: Request,
    response: Response,
    session: DbSession,
    viewer: Viewer,
    page: Annotated[PageParams, Depends(page_params)],
    prefix: Annotated[
        str,
        Query(
            min_length=1,
            max_length=30,
            pattern=r"^[A-Za-z0-9_]+$",
            description="The first letters of the username.",
        ),
    ],
) -> Page[PublicProfile]:
    users, next_cursor = await service.find_users(session, viewer, prefix, page)
    set_next_link(request, response, next_cursor)
    return Page[PublicProfile](
        data=[PublicProfile.model_validate(u) for u in users], next_cursor=next_cursor
    )


@router.get("/users/{username}", response_model=PublicProfile, summary="A public profile")
async def read_profile(username: UsernamePath, session: DbSession, viewer: Viewer) -> PublicProfile:
    return PublicProfile.model_validate(await service.public_profile(session, username, viewer))


@router.get("/admin/users", response_model=Page[Account], summary="List accounts (newest first)")
async def admin_list_users(
    request: Request,
    response: Response,
    _admin: Admin,
    session: DbSession,
    page: Annotated[PageParams, Depends(page_params)],
    role: Annotated[Role | None, Query(description="Only this role.")] = None,
) -> Page[Account]:
    users, next_cursor = await service.list_users(session, page, role)
    set_next_link(request, response, next_cursor)
    return Page[Account](data=[Account.model_validate(u) for u in users], next_cursor=next_cursor)


@router.patch(
    "/admin/users/{username}", response_model=Account, summary="Change a user's role or suspension"
)
async def admin_update_user(
    username: UsernamePath, body: AdminUserUpdate, principal: Admin, session: DbSession
) -> Account:
    return Account.model_validate(await service.admin_update(session, principal, username, body))


@router.delete(
    "/admin/users/{username}",
    status_code=202,
    response_model=DeletionAccepted,
    summary="Delete an account (its content is erased in the background)",
)
async def admin_delete_user(
    username: UsernamePath, principal: Admin, session: DbSession
) -> DeletionAccepted:
    return DeletionAccepted.model_validate(await service.admin_delete(session, principal, username))
