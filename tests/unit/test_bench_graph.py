"""The seed's graph is drawn from a seeded PRNG: the same parameters give the same rows."""

from tidings.bench.seed import Scale, build_graph

TINY = Scale(users=300, posts=3_000, active=40)
NOW_MS = 1_790_000_000_000


def test_the_same_seed_draws_the_same_graph() -> None:
    a, b = build_graph(TINY, NOW_MS), build_graph(TINY, NOW_MS)
    assert (a.followees, a.author, a.share_of) == (b.followees, b.author, b.share_of)
    assert (a.likers, a.commenter) == (b.likers, b.commenter)


def test_another_seed_draws_another_graph() -> None:
    assert build_graph(TINY, NOW_MS, seed=1).followees != build_graph(TINY, NOW_MS).followees


def test_counters_agree_with_the_drawn_rows() -> None:
    g = build_graph(TINY, NOW_MS)
    assert sum(g.follower_count) == sum(g.following_count) == sum(1 for r in g.followees if r)
    assert sum(g.post_count) == sum(1 for k, a in enumerate(g.author) if a and not g.share_of[k])
    assert sum(g.share_count) == sum(1 for t in g.share_of if t)
    assert sum(g.like_count) == sum(1 for u in g.likers if u)
