"""NATS server URLs as claiim takes them: one URL, or several separated by commas (a cluster)."""

from __future__ import annotations


def nats_servers(url: str) -> list[str]:
    """The servers of ``url``: ``nats://a:4222,nats://b:4222`` gives both; empty parts are dropped."""
    return [part.strip() for part in url.split(",") if part.strip()]
