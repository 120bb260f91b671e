"""Request and response bodies of the sign-in provider routes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from tidings.accounts.schemas import Reauthentication
from tidings.auth.providers.base import ProviderKind
from tidings.core.schemas import RequestModel, ResponseModel, Timestamp

PKCE_PATTERN = r"^[A-Za-z0-9\-._~]{43,128}$"
RedirectUri = Annotated[str, StringConstraints(min_length=1, max_length=2048)]
AppState = Annotated[str, StringConstraints(max_length=512, pattern=r"^[\x21-\x7e]*$")]


class ProviderInfo(BaseModel):
    name: str = Field(description="Use in /api/v1/auth/{name}/authorize.")
    type: ProviderKind
    display_name: str
    authorize_url: str = Field(description="Relative URL that starts sign-in in a browser.")


class ProviderList(BaseModel):
    data: list[ProviderInfo]


class BrowserReturn(RequestModel):
    redirect_uri: RedirectUri = Field(
        description="Where the browser returns afterwards; must be in TIDINGS_OAUTH_REDIRECT_URIS."
    )
    state: AppState | None = Field(
        default=None, description="Opaque value echoed back to redirect_uri."
    )


class LinkRequest(Reauthentication, BrowserReturn):
    """Where to come back (with ?linked=), and the holder's proof (as for deleting the
    account): linking a provider gives whoever controls that provider account a way into this
    one."""


class ReauthRequest(BrowserReturn):
    """Where to come back (with ?reauthenticated=&code=) once the provider confirmed the
    holder, and the PKCE challenge of a verifier only the asking app holds."""

    code_challenge: Annotated[str, StringConstraints(pattern=PKCE_PATTERN)] = Field(
        description="BASE64URL(SHA-256(code_verifier)) of a fresh verifier (RFC 7636)."
    )
    code_challenge_method: Literal["S256"] = "S256"


class StepUpFinish(RequestModel):
    code: Annotated[str, StringConstraints(min_length=1, max_length=128)] = Field(
        description="The code the browser came back to redirect_uri with."
    )
    code_verifier: Annotated[str, StringConstraints(pattern=PKCE_PATTERN)] = Field(
        description="The verifier whose challenge started this confirmation."
    )


class StepUpDone(ResponseModel):
    provider: str
    expires_at: Timestamp = Field(
        description="Until when this session counts as confirmed by its holder."
    )


class LinkStarted(BaseModel):
    """A flow waiting for the user's browser (to link a provider, or to confirm the holder)."""

    authorization_url: str = Field(
        description="Open this in the user's browser (it works once, for ten minutes)."
    )
    expires_in: int


class Identity(ResponseModel):
    provider: str
    email: str | None
    email_verified: bool
    created_at: Timestamp
    last_login_at: Timestamp | None


class IdentityList(BaseModel):
    data: list[Identity]
