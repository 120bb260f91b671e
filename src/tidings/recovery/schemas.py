"""Bodies of the recovery routes."""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

from tidings.accounts.schemas import Email, Password, Reauthentication
from tidings.core.schemas import RequestModel, ResponseModel

Token = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class PasswordResetRequest(RequestModel):
    email: Email


class PasswordReset(RequestModel):
    token: Token
    new_password: Password


class EmailVerification(RequestModel):
    token: Token


class EmailChangeRequest(Reauthentication):
    """The new address, and the holder's proof (as for deleting the account)."""

    email: Email


class EmailChange(RequestModel):
    token: Token


class MailQueued(ResponseModel):
    """The same answer whether or not a mail was sent, so the route tells no one which
    addresses have accounts."""

    detail: str
