"""Data retention: pruning the tables that would otherwise grow forever."""
