"""Hashtags, mentions and links found in post text (tidings.posts.parsing)."""

from __future__ import annotations

import unicodedata

import pytest

from tidings.posts import parsing
from tidings.posts.parsing import MAX_LINKS, MAX_MENTIONS, MAX_TAGS, hashtags, links, mentions

# -- hashtags -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("#hello", ["hello"]),
        ("hello #world!", ["world"]),
        ("#one #two #three", ["one", "two", "three"]),
        ("#snake_case and #with123digits", ["snake_case", "with123digits"]),
        ("(#paren) [#bracket] #comma, #dot.", ["paren", "bracket", "comma", "dot"]),
        ("line\n#start\tof line", ["start"]),
        ("#東京 #Москва #café #ελλάδα", ["東京", "москва", "café", "ελλάδα"]),
        ("#日本語のタグ", ["日本語のタグ"]),
        ("#2024goals", ["2024goals"]),
        ("no tags here", []),
        ("", []),
    ],
)
def test_hashtags_found(text: str, expected: list[str]) -> None:
    assert hashtags(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("#Python #PYTHON #python #pYtHoN", ["python"]),
        ("#Москва #МОСКВА #москва", ["москва"]),  # noqa: RUF001 (Cyrillic on purpose)
        ("#Café #CAFÉ", ["café"]),
        ("#ΕΛΛΆΔΑ #Ελλάδα", ["ελλάδα"]),
    ],
)
def test_hashtags_case_fold_and_dedupe(text: str, expected: list[str]) -> None:
    assert hashtags(text) == expected


def test_hashtags_keep_first_appearance_order() -> None:
    assert hashtags("#b #a #B #c #A") == ["b", "a", "c"]


@pytest.mark.parametrize("text", ["#123", "#2024", "#0", "#١٢٣", "year #1999!"])
def test_digits_only_is_not_a_tag(text: str) -> None:
    assert hashtags(text) == []


@pytest.mark.parametrize(
    "text",
    [
        "foo#bar",
        "C#",
        "issue#42",
        "https://example.com/page#section",
        "https://example.com/a.html#top",
        "https://example.com/page?x=1#frag",
        "&#39;quoted&#39;",
        "##double",
        "# spaced",
        "#",
        "#!bang",
        "#-dash",
    ],
)
def test_hash_inside_words_urls_and_entities_is_not_a_tag(text: str) -> None:
    assert hashtags(text) == []


def test_adjacent_hashes_take_only_the_first_tag() -> None:
    assert hashtags("#first#second") == ["first"]


@pytest.mark.parametrize(
    "text", ["https://example.com/#section", "see https://example.com/docs/#install now"]
)
def test_url_fragment_after_a_slash_is_not_a_tag(text: str) -> None:
    assert hashtags(text) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (unicodedata.normalize("NFD", "#café"), "café"),
        ("#हिन्दी", "हिन्दी"),
    ],
)
def test_tags_with_combining_marks_are_whole(text: str, expected: str) -> None:
    tags = hashtags(text)
    assert [unicodedata.normalize("NFC", t) for t in tags] == [expected]


def test_hashtags_use_full_unicode_case_folding() -> None:
    assert len(hashtags("#Straße #STRASSE #strasse")) == 1


def test_hashtags_are_capped() -> None:
    text = " ".join(f"#tag{i}" for i in range(MAX_TAGS + 15))
    tags = hashtags(text)
    assert len(tags) == MAX_TAGS
    assert tags == [f"tag{i}" for i in range(MAX_TAGS)]


def test_duplicates_do_not_count_against_the_cap() -> None:
    text = " ".join(["#same"] * 100 + [f"#t{i}" for i in range(MAX_TAGS)])
    tags = hashtags(text)
    assert len(tags) == MAX_TAGS
    assert tags[0] == "same"


def test_tags_fit_the_tag_column() -> None:
    """post_tags.tag is VARCHAR(100): a parsed tag never exceeds it."""
    assert all(len(t) <= 100 for t in hashtags("#" + "a" * 150 + " #" + "é" * 300))


# -- mentions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hi @alice", ["alice"]),
        ("@Alice @ALICE @alice", ["alice"]),
        ("@bob, @carol. (@dave) @erin!", ["bob", "carol", "dave", "erin"]),
        ("@alice's post", ["alice"]),
        ("@user_99 and @abc", ["user_99", "abc"]),
        ("@" + "a" * 30, ["a" * 30]),
        ("@zed @amy @zed", ["zed", "amy"]),
        ("", []),
    ],
)
def test_mentions_found(text: str, expected: list[str]) -> None:
    assert mentions(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "mail bob@example.com",
        "@ab",
        "@" + "a" * 31,
        "https://example.com/@carol",
        "@@double",
        "@ spaced",
        "@",
        "name@host",
    ],
)
def test_not_mentions(text: str) -> None:
    assert mentions(text) == []


def test_mentions_are_capped() -> None:
    text = " ".join(f"@user{i:03d}" for i in range(MAX_MENTIONS + 10))
    found = mentions(text)
    assert found == [f"user{i:03d}" for i in range(MAX_MENTIONS)]


# -- links ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("see https://example.com/x.", ["https://example.com/x"]),
        ("go to http://example.com!", ["http://example.com"]),
        ("(https://example.com/a)", ["https://example.com/a"]),
        ("[https://example.com/b]", ["https://example.com/b"]),
        (
            "https://example.com/c, https://example.com/d;",
            [
                "https://example.com/c",
                "https://example.com/d",
            ],
        ),
        ('"https://example.com/quoted"', ["https://example.com/quoted"]),
        ("https://example.com/q?a=1&b=2#frag", ["https://example.com/q?a=1&b=2#frag"]),
        ("HTTPS://EXAMPLE.COM/UP", ["HTTPS://EXAMPLE.COM/UP"]),
        ("<https://example.com/angle>", ["https://example.com/angle"]),
        ("https://example.com/wait?!...", ["https://example.com/wait"]),
        ("no links", []),
    ],
)
def test_links_found_with_trailing_punctuation_stripped(text: str, expected: list[str]) -> None:
    assert links(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "ftp://example.com/file",
        "javascript:alert(1)",
        "data:text/html,hi",
        "mailto:bob@example.com",
        "example.com/no-scheme",
        "xhttps://example.com",
    ],
)
def test_non_http_links_are_ignored(text: str) -> None:
    assert links(text) == []


def test_links_dedupe_after_stripping() -> None:
    text = "https://a.example/x. again https://a.example/x and https://b.example"
    assert links(text) == ["https://a.example/x", "https://b.example"]


def test_links_are_capped() -> None:
    text = " ".join(f"https://example.com/{i}" for i in range(MAX_LINKS + 5))
    assert links(text) == [f"https://example.com/{i}" for i in range(MAX_LINKS)]


def test_balanced_parentheses_inside_a_url_are_kept() -> None:
    assert links("see https://en.wikipedia.org/wiki/Foo_(bar) today") == [
        "https://en.wikipedia.org/wiki/Foo_(bar)"
    ]


# -- all together ---------------------------------------------------------------------------


def test_a_realistic_post() -> None:
    text = (
        "Shipped v2 of #Tidings 🎉 thanks @Alice and @bob_the_builder! "
        "Notes: https://example.com/releases/2.0. #OpenSource #tidings #100 mail me: x@y.io"
    )
    assert hashtags(text) == ["tidings", "opensource"]
    assert mentions(text) == ["alice", "bob_the_builder"]
    assert links(text) == ["https://example.com/releases/2.0"]


def test_module_limits_are_sane() -> None:
    assert (parsing.MAX_TAGS, parsing.MAX_MENTIONS, parsing.MAX_LINKS) == (30, 30, 20)


def test_repeated_parses_hand_out_their_own_lists() -> None:
    """Tags are memoised per text: a caller changing its list changes no later answer."""
    first = hashtags("cached #Once #twice")
    first.append("intruder")
    assert hashtags("cached #Once #twice") == ["once", "twice"]
    assert hashtags("no tags at all") == []
