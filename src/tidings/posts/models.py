"""Posts (including shares, which are posts that point at another), hashtags, mentions, likes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from tidings.core.db import Base, utcnow
from tidings.core.ids import new_id


class Post(Base):
    """A post, or a share (``kind='share'``, ``share_of_id`` set, no text of its own).

    Shares live in the same table so a user's timeline — their posts and shares, newest
    first — is one index range scan on ``(author_id, id)``.
    """

    __tablename__ = "posts"
    __table_args__ = (
        Index("ix_posts_author_id_id", "author_id", "id"),
        Index(
            "ix_posts_author_id_id_media",
            "author_id",
            "id",
            postgresql_where=text("has_media"),
            sqlite_where=text("has_media"),
        ),
        UniqueConstraint("author_id", "share_of_id", name="uq_posts_author_id_share_of_id"),
        Index("ix_posts_share_of_id", "share_of_id"),
        Index("ix_posts_quote_of_id", "quote_of_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id, autoincrement=False)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8), default="post")
    text: Mapped[str] = mapped_column(Text, default="")
    visibility: Mapped[str] = mapped_column(String(10), default="public")
    share_of_id: Mapped[int | None] = mapped_column(
        ForeignKey("posts.id", ondelete="CASCADE"), default=None
    )
    quote_of_id: Mapped[int | None] = mapped_column(
        ForeignKey("posts.id", ondelete="SET NULL"), default=None
    )
    media: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    links: Mapped[list[str]] = mapped_column(JSON, default=list)
    has_media: Mapped[bool] = mapped_column(Boolean, default=False)
    like_count: Mapped[int] = mapped_column(Integer, default=0)
    share_count: Mapped[int] = mapped_column(Integer, default=0)
    comment_count: Mapped[int] = mapped_column(Integer, default=0)
    quote_count: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    edited_at: Mapped[datetime | None] = mapped_column(default=None)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)


class PostTag(Base):
    """Hashtag index: ``(tag, post_id)`` serves "newest public posts with #tag"; the index on
    ``post_id`` serves an edit's replacement of a post's tags and a post's deletion (the
    cascade), which otherwise scan the table."""

    __tablename__ = "post_tags"
    __table_args__ = (Index("ix_post_tags_post_id", "post_id"),)

    tag: Mapped[str] = mapped_column(String(100), primary_key=True)
    post_id: Mapped[int] = mapped_column(
        ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True
    )


class PostMention(Base):
    __tablename__ = "post_mentions"
    __table_args__ = (Index("ix_post_mentions_user_id_post_id", "user_id", "post_id"),)

    post_id: Mapped[int] = mapped_column(
        ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )


class Like(Base):
    __tablename__ = "likes"
    __table_args__ = (
        UniqueConstraint("post_id", "user_id", name="uq_likes_post_id_user_id"),
        Index("ix_likes_post_id_id", "post_id", "id"),
        Index("ix_likes_user_id_id", "user_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id, autoincrement=False)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Bookmark(Base):
    """A post saved by a user for later, seen by nobody else."""

    __tablename__ = "bookmarks"
    __table_args__ = (
        UniqueConstraint("user_id", "post_id", name="uq_bookmarks_user_id_post_id"),
        Index("ix_bookmarks_user_id_id", "user_id", "id"),  # the list, newest first
        Index("ix_bookmarks_post_id", "post_id"),  # deleting a post cascades here
    )

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id, autoincrement=False)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
