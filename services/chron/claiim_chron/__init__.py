"""Chron: consumes decision and control events into PostgreSQL, append-only, losing nothing."""
