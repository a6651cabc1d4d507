"""Chron's Prometheus metrics (labels: the stream only)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ChronMetrics:
    def __init__(self, registry: CollectorRegistry, streams: tuple[str, ...] = ()) -> None:
        """``streams``: those Chron consumes, whose series exist from the start, at 0."""
        self.leaves = Counter("claiim_chron_leaves", "Leaves stored (records appended to the Merkle log)",
                              ["stream"], registry=registry)
        self.batches = Counter("claiim_chron_batches", "Batches stored", ["stream"], registry=registry)
        self.batch_seconds = Histogram("claiim_chron_batch_seconds", "From a batch's fetch to its ack, after commit",
                                       buckets=BATCH_BUCKETS, registry=registry)
        self.failed_batches = Counter("claiim_chron_failed_batches",
                                      "Batches not stored and handed back for redelivery", ["stream"],
                                      registry=registry)
        self.pending = Gauge("claiim_chron_pending", "Messages of a stream not yet stored: JetStream's lag to Chron",
                             ["stream"], registry=registry)
        self.tree_size = Gauge("claiim_chron_tree_size", "Leaves in the Merkle log", registry=registry)
        self.checkpoint_size = Gauge("claiim_chron_checkpoint_size", "Tree size of the newest signed checkpoint",
                                     registry=registry)
        self.checkpoint_age = Gauge("claiim_chron_checkpoint_age_seconds",
                                    "Seconds since the newest signed checkpoint was signed (-1: none yet)",
                                    registry=registry)
        self.checkpoint_errors = Counter("claiim_chron_checkpoint_errors", "Checkpoints that could not be signed "
                                         "(a refused fork, PostgreSQL away)", registry=registry)
        self.parked = Counter("claiim_chron_parked", "Messages parked instead of stored (not authentic, replayed, "
                              "undecodable)", ["stream"], registry=registry)
        self.pg_reconnects = Counter("claiim_chron_postgres_reconnects",
                                     "Times the writer's PostgreSQL connection broke and was replaced",
                                     registry=registry)
        for stream in streams:
            for labelled in (self.leaves, self.batches, self.failed_batches, self.parked, self.pending):
                labelled.labels(stream)
