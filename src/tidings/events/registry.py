"""Every consumer of domain events, registered in one place (no import-time side effects)."""

from __future__ import annotations

from tidings.events.consumers import ConsumerRegistry


def build_registry() -> ConsumerRegistry:
    registry = ConsumerRegistry()
    # Feature modules add their consumers here, e.g. notifications.consumers.register(registry).
    return registry
