"""What the load generators send: the request mix and the single-endpoint workloads.

Both generators (the Python one in :mod:`tidings.bench.load`, wrk with ``mix.lua``) implement
the same workloads from the same data (:class:`Workload`): the seeded users' access tokens with
their usernames, the user count (targets ``bu1 .. buN``) and recent public post ids (likes go to
posts every user may see, so a like never fails for lack of visibility).

Modes: ``mix`` (60 % home feed, 30 % a user's timeline, 7 % compose, 2 % like, 1 % follow),
one endpoint alone (``feed``, ``timeline``, ``compose``, ``like``, ``follow``: throughput of that
endpoint by itself) or a baseline path (``/json``, ``/pk``).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

USER_PREFIX = "bu"  # seeded usernames: bu1 .. buN (the API wants 3 to 30 characters)

MIX = (("feed", 60), ("timeline", 30), ("compose", 7), ("like", 2), ("follow", 1))
ENDPOINTS = tuple(label for label, _ in MIX)
BASELINES = ("json", "pk")
MODES = ("mix", *ENDPOINTS, *BASELINES)

# (method, path, headers, body, endpoint label)
Request = tuple[str, str, dict[str, str], bytes, str]
NextRequest = Callable[[random.Random], Request]


@dataclass(frozen=True)
class Workload:
    users: int  # targets of timelines and follows: bu1 .. bu<users>
    clients: list[tuple[str, str]]  # (access token, username) of the seeded sign-in sessions
    posts: list[int]  # recent public post ids (like targets)

    def write(self, path: Path) -> None:
        """The data file ``mix.lua`` reads in ``init``: one record per line."""
        lines = [f"U {self.users} {USER_PREFIX}"]
        lines += [f"T {token} {username}" for token, username in self.clients]
        lines += [f"P {post}" for post in self.posts]
        path.write_text("\n".join(lines) + "\n")


def _labels(mode: str) -> list[str]:
    if mode == "mix":
        return [label for label, weight in MIX for _ in range(weight)]
    if mode in ENDPOINTS:
        return [mode]
    raise ValueError(f"unknown mode {mode!r}")


def requests_for(mode: str, workload: Workload) -> NextRequest:
    """A ``next_request(rng) -> Request`` for the Python generator."""
    if mode in BASELINES:

        def baseline(rng: random.Random) -> Request:
            return "GET", f"/{mode}", {}, b"", mode

        return baseline

    labels = _labels(mode)
    clients, users, posts = workload.clients, workload.users, workload.posts

    def next_request(rng: random.Random) -> Request:
        token, username = rng.choice(clients)
        auth = {"Authorization": f"Bearer {token}"}
        label = rng.choice(labels)
        if label == "compose":
            body = json.dumps({"text": f"bench post #tag{rng.randrange(50)}"}).encode()
            headers = {**auth, "Content-Type": "application/json"}
            return "POST", "/api/v1/posts", headers, body, label
        if label == "like" and posts:
            return "PUT", f"/api/v1/posts/{rng.choice(posts)}/like", auth, b"", label
        if label == "follow":
            n = rng.randrange(1, users + 1)
            if (
                f"{USER_PREFIX}{n}" == username
            ):  # following yourself is a 422: the next account instead
                n = n % users + 1
            return "PUT", f"/api/v1/users/{USER_PREFIX}{n}/follow", auth, b"", label
        if label == "timeline":
            path = f"/api/v1/users/{USER_PREFIX}{rng.randrange(1, users + 1)}/posts?limit=20"
            return "GET", path, auth, b"", label
        return "GET", "/api/v1/feed?limit=20", auth, b"", "feed"

    return next_request
