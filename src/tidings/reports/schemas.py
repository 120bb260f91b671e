"""Report bodies."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from tidings.accounts.schemas import USERNAME_PATTERN
from tidings.core.schemas import (
    Id,
    IdIn,
    RequestModel,
    ResponseModel,
    Timestamp,
    describe_strings,
)
from tidings.reports.models import ReportReason, ReportStatus, TargetType

Note = Annotated[str, StringConstraints(max_length=1000)]
Username = Annotated[str, StringConstraints(pattern=USERNAME_PATTERN, max_length=30)]


TARGET_FIELDS = ("post_id", "comment_id", "username")


def _one_target_schema(schema: dict[str, Any]) -> None:
    """The strings' patterns (as every request body), and "exactly one target" stated in the
    JSON schema, so clients and schema-driven tests see the rule the validator enforces."""
    describe_strings(stripped=True)(schema)
    schema["oneOf"] = [{"required": [name]} for name in TARGET_FIELDS]
    for name in TARGET_FIELDS:  # absent, or a value: an explicit null is refused
        field = schema["properties"][name]
        [value] = [branch for branch in field.pop("anyOf") if branch.get("type") != "null"]
        field.update(value)


class ReportCreate(RequestModel):
    """Exactly one of ``post_id``, ``comment_id`` and ``username`` names what is reported."""

    model_config = ConfigDict(json_schema_extra=_one_target_schema)

    post_id: IdIn | None = None
    comment_id: IdIn | None = None
    username: Username | None = None
    reason: ReportReason
    note: Note = Field(default="", description="What a moderator should know (optional).")

    @model_validator(mode="after")
    def _one_target(self) -> ReportCreate:
        named = [name for name in TARGET_FIELDS if name in self.model_fields_set]
        if len(named) != 1 or getattr(self, named[0]) is None:
            raise ValueError("name exactly one of post_id, comment_id and username")
        return self


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


class ReportQueueSummary(ResponseModel):
    """The moderation queue at a glance (a badge, a dashboard)."""

    open: int = Field(description="Open reports, all kinds.")
    open_by_target_type: dict[TargetType, int] = Field(
        description="Open reports per kind of target (every kind listed, 0 included)."
    )
    oldest_open_at: Timestamp | None = Field(
        description="When the oldest open report was made; null when none is open."
    )
