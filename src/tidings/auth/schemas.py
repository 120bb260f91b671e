"""Token endpoint bodies (RFC 6749 §4.1.3, §4.3, §6; RFC 7636; RFC 7009)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)

from tidings.core.schemas import describe_strings, reject_nul

Login = Annotated[str, StringConstraints(min_length=1, max_length=254)]
Secret = Annotated[str, StringConstraints(min_length=1, max_length=512, strip_whitespace=False)]


class _Form(BaseModel):
    # RFC 6749 §3.2: unrecognised parameters are ignored, not rejected.
    model_config = ConfigDict(extra="ignore", json_schema_extra=describe_strings(stripped=False))

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        return reject_nul(value)


Otp = Annotated[str, StringConstraints(min_length=1, max_length=32)]


class PasswordGrant(_Form):
    grant_type: Literal["password"]
    username: Login
    password: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    scope: Annotated[str, StringConstraints(max_length=200)] | None = None
    otp: Otp | None = None  # two-step sign-in: the authenticator's code or a recovery code


class RefreshGrant(_Form):
    grant_type: Literal["refresh_token"]
    refresh_token: Secret
    scope: Annotated[str, StringConstraints(max_length=200)] | None = None


class AuthorizationCodeGrant(_Form):
    """A one-time login code from a sign-in provider's callback (docs/oauth.md)."""

    grant_type: Literal["authorization_code"]
    code: Secret
    code_verifier: (
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9\-._~]{43,128}$")] | None
    ) = None
    redirect_uri: Annotated[str, StringConstraints(max_length=2048)] | None = None
    otp: Otp | None = None  # two-step sign-in, as for the password grant


TokenRequest = Annotated[
    PasswordGrant | RefreshGrant | AuthorizationCodeGrant, Field(discriminator="grant_type")
]


class RevokeRequest(_Form):
    token: Secret
    # Optional but never null: a form body cannot say null, so JSON may not either.
    token_type_hint: Annotated[
        Literal["refresh_token", "access_token"] | None,
        WithJsonSchema({"type": "string", "enum": ["refresh_token", "access_token"]}),
    ] = None

    @field_validator("token_type_hint", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("leave token_type_hint out instead of sending null")
        return value


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105
    expires_in: int
    refresh_token: str
