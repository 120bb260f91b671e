"""Notifications: generated from domain events, grouped for reading."""
