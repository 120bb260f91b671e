"""Outgoing email: a transactional outbox of messages and the loop that sends them."""
