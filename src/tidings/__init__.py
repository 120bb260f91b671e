"""Tidings: a self-hostable backend for social sharing."""

__version__ = "0.1.0"
