"""Bodies of the two-step sign-in routes."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from tidings.accounts.schemas import Reauthentication
from tidings.core.schemas import RequestModel, Timestamp

OneTimeCode = Annotated[str, StringConstraints(strip_whitespace=True, min_length=6, max_length=32)]


class TotpStarted(BaseModel):
    secret: str = Field(description="Base32, for typing into an authenticator app by hand.")
    otpauth_uri: str = Field(description="The same as an otpauth:// URI, for a QR code.")
    detail: str


class TotpConfirm(RequestModel):
    code: OneTimeCode = Field(description="The 6-digit code the authenticator shows now.")


class RecoveryCodes(BaseModel):
    recovery_codes: list[str] = Field(
        description="Ten one-time codes for when the authenticator is lost: shown only now."
    )


class MfaOff(Reauthentication):
    """The holder's proof, and a code from the authenticator (or a recovery code): to turn
    two-step sign-in off, or to replace the recovery codes."""

    code: OneTimeCode


class MfaStatus(BaseModel):
    enabled: bool
    enabled_at: Timestamp | None
    recovery_codes_left: int
