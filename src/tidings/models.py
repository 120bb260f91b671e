"""Every table, imported in one place for Alembic and the test schema."""

from tidings.accounts.models import User
from tidings.audit.models import AuditEvent
from tidings.auth.models import AuthSession, RefreshToken
from tidings.auth.providers.models import OAuthAuthorization, OAuthLoginCode, UserIdentity
from tidings.comments.models import Comment
from tidings.core.db import Base
from tidings.core.nodes import IdNode
from tidings.events.models import (
    DeadLetter,
    IdempotencyRecord,
    OutboxMessage,
    ProcessedEvent,
)
from tidings.graph.models import Block, Follow, FollowRequest, Mute
from tidings.mail.models import OutgoingMail
from tidings.mfa.models import MfaRecoveryCode, MfaTotp
from tidings.notifications.models import NotificationActor, NotificationGroup
from tidings.posts.models import Bookmark, Like, Post, PostMention, PostTag
from tidings.recovery.models import EmailToken
from tidings.reports.models import Report
from tidings.webhooks.models import WebhookDelivery, WebhookSubscription

__all__ = [
    "AuditEvent",
    "AuthSession",
    "Base",
    "Block",
    "Bookmark",
    "Comment",
    "DeadLetter",
    "EmailToken",
    "Follow",
    "FollowRequest",
    "IdNode",
    "IdempotencyRecord",
    "Like",
    "MfaRecoveryCode",
    "MfaTotp",
    "Mute",
    "NotificationActor",
    "NotificationGroup",
    "OAuthAuthorization",
    "OAuthLoginCode",
    "OutboxMessage",
    "OutgoingMail",
    "Post",
    "PostMention",
    "PostTag",
    "ProcessedEvent",
    "RefreshToken",
    "Report",
    "User",
    "UserIdentity",
    "WebhookDelivery",
    "WebhookSubscription",
]
