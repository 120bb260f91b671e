"""Every consumer of domain events, registered in one place (no import-time side effects)."""

from __future__ import annotations

from tidings.accounts.erasure import run_erasure
from tidings.events.consumers import ConsumerRegistry
from tidings.feeds import fanout as feed_consumers
from tidings.graph import consumers as graph_consumers
from tidings.mail.delivery import run_mail
from tidings.notifications import consumers as notification_consumers
from tidings.retention.service import run_retention
from tidings.webhooks import consumers as webhook_consumers


def build_registry(*, shared_row_cache: bool = True) -> ConsumerRegistry:
    """Every consumer; ``shared_row_cache``: the row cache is on Redis
    (``TIDINGS_ROW_CACHE=redis``), whose lost evictions the ``relations`` consumer repairs
    (an in-process cache loses none: without it the consumer would apply nothing)."""
    registry = ConsumerRegistry()
    # Feature modules add their consumers here, e.g. notifications.consumers.register(registry).
    notification_consumers.register(registry)
    webhook_consumers.register(registry)
    feed_consumers.register(registry)  # a no-op without a feed store (TIDINGS_FEED_STORE)
    if shared_row_cache:
        graph_consumers.register(registry)
    # a no-op with TIDINGS_RETENTION_ENABLED=false
    registry.add_loop("retention", run_retention)
    registry.add_loop("erasure", run_erasure)  # deleted accounts' content: always on
    registry.add_loop("mail", run_mail)  # queued mail (TIDINGS_MAIL_BACKEND)
    return registry
