"""Every dependency of every route is ``async``: FastAPI runs a plain ``def`` dependency in its
thread pool, a thread round trip on every request (py-spy showed ``get_container`` alone
costing ~5 % of a simple authenticated GET)."""

from __future__ import annotations

import inspect
from pathlib import Path

from fastapi.security.base import SecurityBase

from tests.conftest import make_settings
from tests.unit.test_route_policies import schema_routes
from tidings.app import create_app


def test_no_route_depends_on_a_sync_callable(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path}/t.db"))
    sync: set[str] = set()
    for route in schema_routes(app):
        stack = list(route.dependant.dependencies)
        while stack:
            node = stack.pop()
            stack.extend(node.dependencies)
            call = node.call
            if call is None or isinstance(call, SecurityBase):  # async __call__
                continue
            if not (inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call)):
                sync.add(f"{call.__module__}.{call.__qualname__}")
    assert not sync, f"make these dependencies async: {sorted(sync)}"
