"""The gate's Prometheus metrics. Labels are bounded: orgs (created by the operator), outcomes and
reason categories; never agent ids."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class GateMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.decisions = Counter(
            "claiim_gate_decisions", "Decisions answered, by org, outcome and reason category "
            "(policy, skill, auth, agent, request, approval, chron, gate)", ["org", "outcome", "category"],
            registry=registry)
        self.latency = Histogram("claiim_gate_decision_seconds", "From a request's arrival to its reply being sent",
                                 buckets=LATENCY_BUCKETS, registry=registry)
        self.puback = Histogram("claiim_gate_puback_seconds", "From publishing a decision to its PubAck",
                                buckets=LATENCY_BUCKETS, registry=registry)
        self.puback_failures = Counter(
            "claiim_gate_puback_failures", "Decisions JetStream did not store (answered DENY chron:unavailable), "
            "by kind: timeout or error", ["kind"], registry=registry)
        for kind in ("timeout", "error"):  # every series exists from the start, at 0
            self.puback_failures.labels(kind)
        self.in_flight = Gauge("claiim_gate_in_flight", "Requests received and not yet answered", registry=registry)
        self.control_seq = Gauge("claiim_gate_registry_control_seq",
                                 "The control-stream sequence the gate's registry has applied", registry=registry)
        self.control_lag = Gauge("claiim_gate_registry_control_lag",
                                 "Control-stream messages the gate's registry has not applied yet", registry=registry)
