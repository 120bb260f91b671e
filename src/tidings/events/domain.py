"""Domain events: past-tense, frozen, written to the outbox in the same transaction."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar


def _stringify_ids(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_stringify_ids(v) for v in value]
    return value


@dataclass(frozen=True)
class DomainEvent:
    event_type: ClassVar[str] = "event"

    @property
    def aggregate_id(self) -> int:
        raise NotImplementedError

    @property
    def actor_id(self) -> int | None:
        return None

    def payload(self) -> dict[str, Any]:
        # ids as strings, also inside lists: JSON consumers in other languages lose precision
        # past 2**53
        return {k: _stringify_ids(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class _PostEvent(DomainEvent):
    post_id: int
    user_id: int

    @property
    def aggregate_id(self) -> int:
        return self.post_id

    @property
    def actor_id(self) -> int | None:
        return self.user_id


@dataclass(frozen=True)
class PostCreated(_PostEvent):
    event_type: ClassVar[str] = "post.created"
    visibility: str = "public"
    quote_of_id: int | None = None
    mentioned_user_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class PostUpdated(_PostEvent):
    event_type: ClassVar[str] = "post.updated"
    visibility: str = "public"


@dataclass(frozen=True)
class PostDeleted(_PostEvent):
    event_type: ClassVar[str] = "post.deleted"
    by_moderator: bool = False


@dataclass(frozen=True)
class PostShared(_PostEvent):
    event_type: ClassVar[str] = "post.shared"
    share_id: int = 0
    post_author_id: int = 0


@dataclass(frozen=True)
class PostUnshared(_PostEvent):
    event_type: ClassVar[str] = "post.unshared"
    share_id: int = 0


@dataclass(frozen=True)
class PostLiked(_PostEvent):
    event_type: ClassVar[str] = "post.liked"
    post_author_id: int = 0


@dataclass(frozen=True)
class PostUnliked(_PostEvent):
    event_type: ClassVar[str] = "post.unliked"


@dataclass(frozen=True)
class CommentCreated(DomainEvent):
    event_type: ClassVar[str] = "comment.created"
    comment_id: int
    post_id: int
    user_id: int
    parent_comment_id: int | None = None
    post_author_id: int = 0
    parent_author_id: int | None = None
    mentioned_user_ids: tuple[int, ...] = ()

    @property
    def aggregate_id(self) -> int:
        return self.comment_id

    @property
    def actor_id(self) -> int | None:
        return self.user_id


@dataclass(frozen=True)
class CommentUpdated(DomainEvent):
    event_type: ClassVar[str] = "comment.updated"
    comment_id: int
    post_id: int
    user_id: int

    @property
    def aggregate_id(self) -> int:
        return self.comment_id

    @property
    def actor_id(self) -> int | None:
        return self.user_id


@dataclass(frozen=True)
class CommentDeleted(DomainEvent):
    event_type: ClassVar[str] = "comment.deleted"
    comment_id: int
    post_id: int
    user_id: int

    @property
    def aggregate_id(self) -> int:
        return self.comment_id

    @property
    def actor_id(self) -> int | None:
        return self.user_id


@dataclass(frozen=True)
class _UserPairEvent(DomainEvent):
    user_id: int
    target_user_id: int

    @property
    def aggregate_id(self) -> int:
        return self.target_user_id

    @property
    def actor_id(self) -> int | None:
        return self.user_id


@dataclass(frozen=True)
class UserFollowed(_UserPairEvent):
    event_type: ClassVar[str] = "user.followed"
    approved: bool = False  # the followed (locked) account approved the follow request


@dataclass(frozen=True)
class FollowRequested(_UserPairEvent):
    """A follow of a locked account waits for its approval (``user.followed`` once it has)."""

    event_type: ClassVar[str] = "user.follow_requested"


@dataclass(frozen=True)
class UserUnfollowed(_UserPairEvent):
    event_type: ClassVar[str] = "user.unfollowed"


@dataclass(frozen=True)
class UserBlocked(_UserPairEvent):
    event_type: ClassVar[str] = "user.blocked"


@dataclass(frozen=True)
class UserUnblocked(_UserPairEvent):
    event_type: ClassVar[str] = "user.unblocked"


@dataclass(frozen=True)
class UserMuted(_UserPairEvent):
    event_type: ClassVar[str] = "user.muted"


@dataclass(frozen=True)
class UserUnmuted(_UserPairEvent):
    event_type: ClassVar[str] = "user.unmuted"


@dataclass(frozen=True)
class UserDeleted(DomainEvent):
    """An account's deletion was asked for, by its holder, an admin (``by_admin``) or the
    operator (``deleted_by`` null); its content is being erased. Systems holding copies of the
    user's data should erase them too."""

    event_type: ClassVar[str] = "user.deleted"
    user_id: int
    deleted_by: int | None = None
    by_admin: bool = False

    @property
    def aggregate_id(self) -> int:
        return self.user_id

    @property
    def actor_id(self) -> int | None:
        return self.deleted_by


@dataclass(frozen=True)
class UserErased(DomainEvent):
    """A deleted account's erasure is done: nothing it made is left."""

    event_type: ClassVar[str] = "user.erased"
    user_id: int

    @property
    def aggregate_id(self) -> int:
        return self.user_id


@dataclass(frozen=True)
class _ReportEvent(DomainEvent):
    report_id: int
    user_id: int  # the reporter (created) or the moderator (closed)
    target_type: str
    target_id: int

    @property
    def aggregate_id(self) -> int:
        return self.report_id

    @property
    def actor_id(self) -> int | None:
        return self.user_id


@dataclass(frozen=True)
class ReportCreated(_ReportEvent):
    """For moderators' tools (a webhook to a chat room, a ticket queue)."""

    event_type: ClassVar[str] = "report.created"
    reason: str = "other"


@dataclass(frozen=True)
class ReportClosed(_ReportEvent):
    event_type: ClassVar[str] = "report.closed"
    status: str = "resolved"
