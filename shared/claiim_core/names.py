"""Subjects, stream and consumer names, all derived from one namespace.

The default namespace is ``claiim``. A different namespace gives an isolated set of subjects and
streams on a shared NATS server (the test suite uses one per test).

Subjects (namespace ``claiim``)::

    claiim.gate.check                               gate request/reply (queue group claiim-gate)
    claiim.gate.skills                              gate request/reply: what an agent's skills cover
    claiim.gate.wait                                gate request/reply: wait for an approval's outcome
    claiim.decision.<org>.<agent>.<allow|deny>      decision events   (stream CLAIIM_DECISIONS)
    claiim.decision.<org>.<agent>.approval.<id>     an approval's PENDING decision and the ALLOW or DENY
                                                    that ends it      (stream CLAIIM_DECISIONS)
    claiim.control.<org>.<kind>.<name>              control events    (stream CLAIIM_CONTROL)
    claiim.admin.apply                              admin request/reply: apply a bundle
    claiim.admin.agent                              admin request/reply: suspend, reactivate, set anchor, tokens
    claiim.admin.admins                             admin request/reply: enrol and revoke admins
    claiim.admin.org                                admin request/reply: create an org, set its approval rule
    claiim.admin.proposal                           admin request/reply: approve or reject a proposal
    claiim.admin.approval                           admin request/reply: list, grant, refuse approvals
    claiim.admin.query                              admin request/reply: read the registry, explain
    claiim.chron.query                              Chron request/reply: records, proofs, checkpoints
    claiim.chron.leaves                             Chron's leaf batches         (stream CLAIIM_PROOFS)
    claiim.chron.checkpoint                         signed checkpoints           (stream CLAIIM_PROOFS)
    claiim.ocsf.<org>.<agent>.<allow|deny>          decisions rendered as OCSF   (stream CLAIIM_OCSF)
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

# A subject token: what may stand between two dots. Agent ids, org and resource names use it.
# \Z, not $: "$" would also accept a trailing newline.
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
UNKNOWN = "_unknown"


SERVICE_INBOX_ROOT = "_INBOX_"


def service_inbox(service: str) -> str:
    """The reply-subject prefix of one claiim service (``_INBOX_gate``): each service's NATS user may
    subscribe to its own only."""
    return f"{SERVICE_INBOX_ROOT}{service}"


def subject_token(value: str) -> str:
    """Return ``value`` if it is a safe subject token, else the placeholder ``_unknown``."""
    return value if TOKEN_RE.match(value) else UNKNOWN


def name_token(value: str) -> str:
    """``value`` if it is a safe subject token, else ``h`` and a hash of it: one subject per name, for the
    names of people, which may hold dots (``s.emp1``)."""
    return value if TOKEN_RE.match(value) else "h" + hashlib.sha256(value.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Names:
    """Every subject, stream and durable name of one claiim installation."""

    namespace: str = "claiim"

    def __post_init__(self) -> None:
        if not re.match(r"^[A-Za-z0-9_-]{1,32}\Z", self.namespace):
            raise ValueError(f"namespace must match [A-Za-z0-9_-]{{1,32}}, got {self.namespace!r}")

    @property
    def _upper(self) -> str:
        return self.namespace.upper().replace("-", "_")

    # -- request/reply subjects
    @property
    def gate_check(self) -> str:
        return f"{self.namespace}.gate.check"

    @property
    def gate_skills(self) -> str:
        return f"{self.namespace}.gate.skills"

    @property
    def gate_wait(self) -> str:
        return f"{self.namespace}.gate.wait"

    @property
    def gate_queue(self) -> str:
        return f"{self.namespace}-gate"

    @property
    def admin_apply(self) -> str:
        return f"{self.namespace}.admin.apply"

    @property
    def admin_agent(self) -> str:
        return f"{self.namespace}.admin.agent"

    @property
    def admin_admins(self) -> str:
        return f"{self.namespace}.admin.admins"

    @property
    def admin_org(self) -> str:
        return f"{self.namespace}.admin.org"

    @property
    def admin_proposal(self) -> str:
        return f"{self.namespace}.admin.proposal"

    @property
    def admin_approval(self) -> str:
        return f"{self.namespace}.admin.approval"

    @property
    def admin_query(self) -> str:
        return f"{self.namespace}.admin.query"

    @property
    def admin_queue(self) -> str:
        return f"{self.namespace}-control"

    @property
    def chron_query(self) -> str:
        return f"{self.namespace}.chron.query"

    @property
    def chron_queue(self) -> str:
        return f"{self.namespace}-chron"

    # -- streams
    @property
    def decisions_stream(self) -> str:
        return f"{self._upper}_DECISIONS"

    @property
    def control_stream(self) -> str:
        return f"{self._upper}_CONTROL"

    @property
    def proofs_stream(self) -> str:
        return f"{self._upper}_PROOFS"

    @property
    def ocsf_stream(self) -> str:
        return f"{self._upper}_OCSF"

    @property
    def chron_leaves(self) -> str:
        return f"{self.namespace}.chron.leaves"

    @property
    def chron_checkpoint(self) -> str:
        return f"{self.namespace}.chron.checkpoint"

    @property
    def ocsf_wildcard(self) -> str:
        return f"{self.namespace}.ocsf.>"

    def ocsf_subject(self, org: str, agent_id: str, outcome: str) -> str:
        return f"{self.namespace}.ocsf.{subject_token(org)}.{subject_token(agent_id)}.{outcome.lower()}"

    @property
    def decisions_wildcard(self) -> str:
        return f"{self.namespace}.decision.>"

    @property
    def control_wildcard(self) -> str:
        return f"{self.namespace}.control.>"

    def decision_subject(self, org: str, agent_id: str, outcome: str) -> str:
        return (
            f"{self.namespace}.decision.{subject_token(org)}."
            f"{subject_token(agent_id)}.{outcome.lower()}"
        )

    def approval_subject(self, org: str, agent_id: str, approval_id: str) -> str:
        """Where an approval's PENDING decision and the ALLOW or DENY that ends it are published."""
        return (f"{self.namespace}.decision.{subject_token(org)}.{subject_token(agent_id)}.approval."
                f"{subject_token(approval_id)}")

    @property
    def approvals_wildcard(self) -> str:
        """Every approval's subject."""
        return f"{self.namespace}.decision.*.*.approval.*"

    def control_subject(self, org: str, kind: str, name: str) -> str:
        return f"{self.namespace}.control.{subject_token(org)}.{kind}.{name_token(name)}"

    # -- consumers
    @property
    def chron_durable(self) -> str:
        return "chron"

    @property
    def approval_notify_durable(self) -> str:
        """Control's consumer of waiting approvals, which it announces to the org's webhook."""
        return "approval-notify"
