"""Webhooks: admin-owned subscriptions, signed Standard Webhooks deliveries, SSRF-safe sending."""
