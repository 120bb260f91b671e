"""Comment request and response bodies."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from tidings.core.schemas import Id, IdIn, RequestModel, ResponseModel, Timestamp
from tidings.posts.schemas import AuthorOut

MAX_TEXT = 2000
MAX_DEPTH = 8  # a top-level comment has depth 0; replies may nest down to depth 8
CommentText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT)]
CommentSort = Literal["oldest", "newest"]


class CommentCreate(RequestModel):
    text: CommentText
    parent_comment_id: IdIn | None = Field(
        default=None, description="Reply to this comment (same post, not deleted)."
    )


class CommentUpdate(RequestModel):
    text: CommentText


class CommentOut(ResponseModel):
    id: Id
    post_id: Id
    parent_comment_id: Id | None = None
    depth: int
    author: AuthorOut | None = Field(
        default=None, description="Null for a deleted comment (a tombstone)."
    )
    text: str = Field(description='Empty ("") for a deleted comment.')
    deleted: bool = False
    reply_count: int = Field(description="Direct replies still shown in the thread.")
    version: int
    created_at: Timestamp
    edited_at: Timestamp | None = None
