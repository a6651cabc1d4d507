"""A SIEM consumer: claiim decisions from JetStream as JSON lines, OCSF API Activity with ``--ocsf``.

It reads through an ordered consumer (ephemeral, no acks) from the first decision, ``--from-seq`` or ``--since``,
and stops after ``--limit`` decisions or ``--idle`` quiet seconds; with neither it follows the stream. It logs in
as the NATS user ``siem`` (password ``--password`` or ``CLAIIM_SIEM_PASSWORD``), which may only read the decision
and OCSF streams, and receives under ``_INBOX_siem``. Example:
``python examples/siem_consumer.py 'claiim.decision.acme.*.deny' --since 2026-11-25T00:00:00Z --ocsf``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from datetime import datetime

import msgspec
import nats
from claiim_core.names import Names, service_inbox
from claiim_core.ocsf import ocsf_bytes
from claiim_core.schemas import DecisionEvent
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import ConsumerConfig, DeliverPolicy


def start_at(from_seq: int | None, since: str | None) -> ConsumerConfig:
    """Where the consumer starts: a stream sequence, a time, or the first decision."""
    if from_seq is not None:
        return ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=from_seq)
    if since is not None:
        return ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=datetime.fromisoformat(since))
    return ConsumerConfig(deliver_policy=DeliverPolicy.ALL)


async def consume(url: str, namespace: str = "claiim", subject: str | None = None, *, from_seq: int | None = None,
                  since: str | None = None, limit: int | None = None, idle: float | None = None,
                  ocsf: bool = False, user: str = "siem", password: str | None = None) -> AsyncIterator[bytes]:
    """Yield the decisions on ``subject`` (default: all of ``namespace``), each as one line of JSON."""
    names = Names(namespace)
    nc = await nats.connect(url, name="claiim-siem-consumer", user=user if password else None, password=password,
                            inbox_prefix=service_inbox(user))
    try:
        sub = await nc.jetstream().subscribe(subject or names.decisions_wildcard, stream=names.decisions_stream,
                                             ordered_consumer=True, config=start_at(from_seq, since))
        count = 0
        while limit is None or count < limit:
            try:
                msg = await sub.next_msg(timeout=idle)
            except NatsTimeoutError:
                return
            yield ocsf_bytes(msgspec.json.decode(msg.data, type=DecisionEvent)) if ocsf else msg.data
            count += 1
    finally:
        await nc.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print claiim decisions as JSON lines.")
    parser.add_argument("subject", nargs="?", help="subject filter, default <namespace>.decision.>")
    parser.add_argument("--url", default=os.environ.get("CLAIIM_URL", "nats://127.0.0.1:4222"))
    parser.add_argument("--namespace", default=os.environ.get("CLAIIM_NAMESPACE", "claiim"))
    parser.add_argument("--user", default="siem", help="NATS user (default: siem)")
    parser.add_argument("--password", default=os.environ.get("CLAIIM_SIEM_PASSWORD"),
                        help="its NATS password (default: CLAIIM_SIEM_PASSWORD)")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--from-seq", type=int, help="first stream sequence to read")
    start.add_argument("--since", help="RFC 3339 time to start from, e.g. 2026-11-25T10:00:00Z")
    parser.add_argument("--limit", type=int, help="stop after this many decisions")
    parser.add_argument("--idle", type=float, help="stop after this many seconds without a decision")
    parser.add_argument("--ocsf", action="store_true", help="print OCSF API Activity events")
    args = parser.parse_args(argv)

    async def run() -> None:
        async for line in consume(args.url, args.namespace, args.subject, from_seq=args.from_seq, since=args.since,
                                  limit=args.limit, idle=args.idle, ocsf=args.ocsf, user=args.user,
                                  password=args.password):
            print(line.decode(), flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
