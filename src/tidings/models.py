"""Every table, imported in one place for Alembic and the test schema."""

from tidings.accounts.models import User
from tidings.auth.models import AuthSession, RefreshToken
from tidings.core.db import Base

__all__ = ["AuthSession", "Base", "RefreshToken", "User"]
