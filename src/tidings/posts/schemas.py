"""Post request and response bodies."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from tidings.core.schemas import Id, IdIn, RequestModel, ResponseModel, Timestamp, WebUrl

MAX_TEXT = 5000
MAX_MEDIA = 4
Visibility = Literal["public", "followers", "private"]
PostText = Annotated[str, StringConstraints(max_length=MAX_TEXT)]


class MediaIn(RequestModel):
    url: WebUrl
    type: Literal["image", "video", "gif", "audio"]
    alt_text: Annotated[str, StringConstraints(max_length=1500)] = ""


class PostCreate(RequestModel):
    text: PostText = ""
    visibility: Visibility = "public"
    links: Annotated[list[WebUrl], Field(max_length=10)] | None = None
    media: Annotated[list[MediaIn], Field(max_length=MAX_MEDIA)] | None = None
    quote_post_id: IdIn | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> PostCreate:
        if not self.text and not self.media and self.quote_post_id is None:
            raise ValueError("a post needs text, media or a quoted post")
        return self


class PostUpdate(RequestModel):
    text: PostText | None = None
    visibility: Visibility | None = None


class AuthorOut(ResponseModel):
    id: Id
    username: str
    display_name: str
    avatar_url: str | None


class MediaOut(ResponseModel):
    url: str
    type: str
    alt_text: str = ""


class CountsOut(ResponseModel):
    likes: int
    shares: int
    comments: int
    quotes: int


class ViewerStateOut(ResponseModel):
    liked: bool
    shared: bool


class PostOut(ResponseModel):
    id: Id
    kind: Literal["post", "share"]
    author: AuthorOut
    text: str
    visibility: Visibility
    hashtags: list[str]
    mentions: list[str]
    links: list[str]
    media: list[MediaOut]
    quote_post_id: Id | None = None
    quoted_post: PostOut | None = Field(
        default=None, description="The quoted post, when the viewer may see it."
    )
    shared_post: PostOut | None = Field(
        default=None, description="For kind=share: the post that was shared."
    )
    counts: CountsOut
    viewer: ViewerStateOut | None = Field(
        default=None, description="The signed-in viewer's state; null when anonymous."
    )
    version: int
    created_at: Timestamp
    edited_at: Timestamp | None = None


class LikeStateOut(ResponseModel):
    liked: bool
    likes: int


class BookmarkStateOut(ResponseModel):
    bookmarked: bool


class ShareStateOut(ResponseModel):
    shared: bool
    shares: int
    share_id: Id | None = None
