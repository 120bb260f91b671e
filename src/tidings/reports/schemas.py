"""Report bodies."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints, model_validator

from tidings.accounts.schemas import USERNAME_PATTERN
from tidings.core.schemas import Id, IdIn, RequestModel, ResponseModel, Timestamp
from tidings.reports.models import ReportReason, ReportStatus, TargetType

Note = Annotated[str, StringConstraints(max_length=1000)]
Username = Annotated[str, StringConstraints(pattern=USERNAME_PATTERN, max_length=30)]


class _Report(RequestModel):
    reason: ReportReason
    note: Note = Field(default="", description="What a moderator should know (optional).")


class PostReport(_Report):
    post_id: IdIn


class CommentReport(_Report):
    comment_id: IdIn


class UserReport(_Report):
    username: Username


# Exactly one target: each variant forbids the others' fields (unknown fields are an error).
ReportCreate = PostReport | CommentReport | UserReport


class ReportOut(ResponseModel):
    """A report as its reporter sees it."""

    id: Id
    target_type: TargetType
    target_id: Id
    reason: ReportReason
    note: str
    status: ReportStatus
    created_at: Timestamp


class ModerationReportOut(ReportOut):
    """A report as moderators see it: who reported it (not shown to the moderator it is
    about), whose content it is, how it ended."""

    reporter_id: Id | None
    target_owner_id: Id
    resolved_at: Timestamp | None
    resolved_by_id: Id | None
    resolution_note: str


class ReportDecision(RequestModel):
    status: Annotated[
        ReportStatus,
        Field(description="`resolved` (acted on) or `dismissed` (nothing to act on)."),
    ]
    resolution_note: Note = ""

    @model_validator(mode="after")
    def _closing(self) -> ReportDecision:
        if self.status is ReportStatus.OPEN:
            raise ValueError("a decision is 'resolved' or 'dismissed'")
        return self
