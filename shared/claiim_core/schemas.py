"""Message schemas on the wire (JSON via msgspec) for the gate, decisions and Chron queries.

Schema versions are in the ``schema`` field of every event so that consumers (Chron, SIEMs) can
evolve. Control events live in :mod:`claiim_core.events`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from claiim_core.document import RuleLike
from claiim_core.policy import matches
from claiim_core.reasons import category

MAX_REQUEST_BYTES = 16 * 1024
"""Largest gate request the gate evaluates; larger ones are answered DENY ``request:oversized``."""

Outcome = Literal["ALLOW", "DENY", "PENDING"]
DECISION_SCHEMA = "claiim.decision/1"

ShortStr = Annotated[str, Meta(max_length=256)]
Action = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-]+(:[A-Za-z0-9_.\-]+)*\Z")]
Context = Annotated[dict[Annotated[str, Meta(max_length=64)], ShortStr], Meta(max_length=32)]


class EventAuth(Struct, frozen=True, omit_defaults=True, forbid_unknown_fields=True):
    """Who vouches for an event: a MAC or signature over its canonical bytes without this field.

    Decision events carry ``hmac-sha256`` by a gate key, control events ``ed25519`` by a control
    key (:mod:`claiim_core.eventauth` says exactly what is signed). ``key`` names the key; ``prev``
    (control events only) is the stream sequence of the message before it on its subject, so a
    genuine event cannot be replayed later or elsewhere.
    """

    alg: Literal["hmac-sha256", "ed25519"]
    key: Annotated[str, Meta(max_length=128)]
    sig: Annotated[str, Meta(max_length=128)]
    """Base64."""
    prev: int | None = None


class CheckRequest(Struct, forbid_unknown_fields=True, frozen=True):
    """What an agent sends to the gate before it acts."""

    agent_id: Annotated[str, Meta(min_length=1, max_length=128)]
    token: Annotated[str, Meta(min_length=1, max_length=512)]
    action: Action
    target: ShortStr = ""
    context: Context = msgspec.field(default_factory=dict)
    request_id: Annotated[str, Meta(max_length=128)] | None = None


class SkillsRequest(Struct, forbid_unknown_fields=True, frozen=True):
    """An agent asks what its skills cover (``<ns>.gate.skills``): not a decision, and not recorded."""

    agent_id: Annotated[str, Meta(min_length=1, max_length=128)]
    token: Annotated[str, Meta(min_length=1, max_length=512)]


class SkillsReply(Struct, frozen=True, kw_only=True):
    """The agent's skill versions and the action patterns they list (empty while the agent is not
    active). An MCP gateway shows only the tools these cover; every call is still checked."""

    ok: bool
    code: str = ""
    """A :class:`claiim_core.codes.Code` when ``ok`` is false (``unauthenticated``: the token does not
    prove the agent)."""
    error: str | None = None
    status: str = ""
    """The agent's status: ``active``, ``suspended`` or ``retired``."""
    skills: list[str] = []
    actions: list[str] = []

    def covers(self, action: str) -> bool:
        """Whether one of the action patterns matches ``action`` (as the gate's skill step does)."""
        return any(matches(pattern, action) for pattern in self.actions)


class ShadowDecision(Struct, frozen=True, kw_only=True):
    """What the agent's log-only candidate policy version would have decided (it changed nothing)."""

    policy: str
    outcome: Outcome
    rule: str


ApproverKind = Literal["anchor", "admins"]


class Approval(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An approval a decision waits for or ends (:mod:`claiim_core.approvals`).

    On the PENDING decision that asks for it: its id (that decision's chron id), when it expires,
    who may decide it and the hash of the request it is for. The ALLOW or DENY that ends it carries
    the same fields and, once someone decided, who, when, their reason and the control event that
    recorded it: Chron links every approval's records through ``id``.
    """

    id: str
    expires_at: str
    approver: ApproverKind
    request_hash: str
    decided_by: str = ""
    """Who granted or refused it (empty when it expired)."""
    decided_at: str = ""
    note: str = ""
    """The grant's or refusal's reason."""
    event_id: str = ""
    """The chron id of the control event that recorded the grant, refusal or expiry."""


class DecisionEvent(Struct, frozen=True, kw_only=True):
    """One decision as published to the decisions stream and stored in Chron.

    It never carries the agent's token. ``control_seq`` is the control-stream sequence of the
    registry state the decision was evaluated against. ``auth`` is the deciding gate's MAC; Chron
    stores no decision without a valid one. ``trace_id`` is the W3C trace id of the agent's span
    (:mod:`claiim_core.tracecontext`), under the MAC like every field; it is left out of the
    encoding, not written as null, when the request carried no trace context, so that the bytes
    (and the MAC) of a decision without one are what they were before the field existed.
    """

    schema: str = DECISION_SCHEMA
    chron_id: str
    decided_at: str
    outcome: Outcome
    reason: str
    rule: str
    org: str
    agent_id: str
    anchor: str
    action: str
    target: str
    context: dict[str, str]
    request_id: str | None
    policy: str
    skill: str
    gate: str
    control_seq: int
    auth: EventAuth | None = None
    trace_id: Annotated[str, Meta(pattern=r"^[0-9a-f]{32}\Z")] | UnsetType = UNSET
    shadow: ShadowDecision | UnsetType = UNSET
    """The log-only candidate's decision, when the agent has one and the policy step was reached;
    left out of the encoding otherwise, as ``trace_id``."""
    approval: Approval | UnsetType = UNSET
    """On a PENDING decision the approval it waits for; on the ALLOW or DENY that ends an approval the
    link to it; left out of the encoding otherwise."""


class DecisionReply(Struct, frozen=True, kw_only=True):
    """The gate's answer. The agent may act only on ``outcome == "ALLOW"``: PENDING is not
    permission, it says that a person must approve first (``approval_id``, until ``expires_at``)."""

    outcome: Outcome
    reason: str
    rule: str
    chron_id: str
    policy: str
    skill: str
    anchor: str
    agent_id: str
    decided_at: str
    approval_id: str = ""
    """The approval a PENDING decision waits for, or that an ALLOW or DENY ends."""
    expires_at: str = ""
    """When that approval expires (ISO 8601)."""

    @property
    def allowed(self) -> bool:
        """Whether the agent may act: ALLOW only. PENDING (a person must approve first) and DENY are not."""
        return self.outcome == "ALLOW"

    @property
    def category(self) -> str:
        """What decided, from the reason: ``policy``, ``skill``, ``auth``, ``agent``, ``request``,
        ``approval``, ``chron`` (the decision could not be recorded) or ``gate``."""
        return category(self.reason)


def reply_for(event: DecisionEvent) -> DecisionReply:
    """The reply that answers the request behind ``event``."""
    return DecisionReply(
        outcome=event.outcome,
        reason=event.reason,
        rule=event.rule,
        chron_id=event.chron_id,
        policy=event.policy,
        skill=event.skill,
        anchor=event.anchor,
        agent_id=event.agent_id,
        decided_at=event.decided_at,
        approval_id=event.approval.id if event.approval else "",
        expires_at=event.approval.expires_at if event.approval else "",
    )


MAX_WAIT_S = 25.0
"""The longest one wait request is held by the gate; the SDK asks again until its own timeout."""


class WaitRequest(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """An agent waits for the outcome of one of its approvals (``<ns>.gate.wait``).

    The gate answers at once when the approval is decided or expired (the ALLOW or DENY that ends
    it, recorded), or after ``wait`` seconds with the PENDING decision again (nothing recorded).
    ``request_id`` makes a retried wait get the first answer instead of ``approval:used``.
    """

    agent_id: Annotated[str, Meta(min_length=1, max_length=128)]
    token: Annotated[str, Meta(min_length=1, max_length=512)]
    approval_id: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}\Z")]
    request_id: Annotated[str, Meta(max_length=128)]
    wait: Annotated[float, Meta(ge=0, le=MAX_WAIT_S)] = 0.0


# -- Chron queries ---------------------------------------------------------------------------


class RecordFilter(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Which Chron records a query names: its filters combine with AND; ``before``/``after`` page
    through them by leaf index. Declared once: Chron's search (``claiim_chron.search.Search``) and
    the SDK's ``chron_list`` take exactly these (a test keeps them in step)."""

    chron_id: str | None = None
    agent_id: str | None = None
    anchor: ShortStr | None = None
    action: ShortStr | None = None
    """Exact, or a prefix when it ends with ``*`` (``deploy:*``); ``%`` and ``_`` are plain characters."""
    outcome: Outcome | None = None
    since: str | None = None
    """ISO 8601; only records that occurred at or after it."""
    until: str | None = None
    """ISO 8601; only records that occurred before it."""
    kind: Literal["decision", "control"] | None = None
    approval_id: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}\Z")] | None = None
    """Every record of one approval: the PENDING decision, the grant, refusal or expiry, and the ALLOW or
    DENY that ended it."""
    trace_id: Annotated[str, Meta(pattern=r"^[0-9a-f]{32}\Z")] | None = None
    """The W3C trace id (32 lowercase hex digits) that decisions carry."""
    before: Annotated[int, Meta(ge=0)] | None = None
    """Only records of a smaller leaf index: the next older page is ``before=<last record's leaf_index>``."""
    after: Annotated[int, Meta(ge=0)] | None = None
    """Only records of a larger leaf index: the ``limit`` records just newer, still newest first."""
    limit: Annotated[int, Meta(ge=1, le=10_000)] = 50


class ChronQuery(RecordFilter, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A request to Chron's query subject: list records, show one by chron id, prove one
    (``prove``), prove that one checkpoint extends another (``consistency``), list checkpoints,
    or report how far recording has got (``status``).

    Records are those of ``org`` (default: the admin's own; the operator sees every org when
    ``org`` is empty), chosen by the :class:`RecordFilter` fields, newest first by leaf index.
    """

    admin_token: str
    op: Literal["list", "show", "prove", "consistency", "checkpoints", "status", "parked", "ack-parked"]
    org: str = ""
    first: Annotated[int, Meta(ge=0)] = 0
    """consistency: the smaller checkpoint's tree size (the larger is ``second``, 0: the newest)."""
    second: Annotated[int, Meta(ge=0)] = 0
    ids: Annotated[list[Annotated[int, Meta(ge=1)]], Meta(max_length=10_000)] = []
    """ack-parked: the parked messages to acknowledge (empty: every one not yet acknowledged)."""
    reason: Annotated[str, Meta(max_length=512)] = ""
    """ack-parked: why the operator acknowledges them (recorded)."""
    unacknowledged: bool = False
    """parked: only messages not yet acknowledged."""


class ChronRecord(Struct, frozen=True, kw_only=True):
    """One row of Chron as returned by queries."""

    chron_id: str
    kind: Literal["decision", "control"]
    recorded_at: str
    occurred_at: str
    stream: str
    stream_seq: int
    subject: str
    org: str
    agent_id: str
    actor: str
    outcome: str
    action: str
    target: str
    anchor: str
    policy: str
    skill: str
    reason: str
    rule: str
    gate: str
    control_seq: int
    leaf_index: int
    """The record's position in Chron's Merkle log."""
    event: msgspec.Raw
    trace_id: str | None = None
    """The W3C trace id of the agent's span, when its check carried one."""
    approval_id: str | None = None
    """The approval the record asks for, decides or ends (:mod:`claiim_core.approvals`)."""


class CheckpointInfo(Struct, frozen=True, kw_only=True):
    size: int
    root: str
    """Hex."""
    signed_at: str
    note: str


class ChronStatus(Struct, frozen=True, kw_only=True):
    """How far Chron has got, for the whole installation (no record's content)."""

    tree_size: int
    """Leaves stored."""
    last_recorded_at: str
    """When the newest leaf was stored, ISO 8601; empty when there is none."""
    checkpoint_size: int
    """Leaves in the newest signed checkpoint (0: none yet)."""
    checkpoint_signed_at: str
    """ISO 8601; empty when there is no checkpoint."""
    pending: int
    """Messages of the decision and control streams not yet stored (delivered to Chron or not); -1: unknown."""
    parked: int = 0
    """Parked messages no operator has acknowledged yet."""
    problems: list[str] = []
    """Why Chron is not ready (empty: ready): unacknowledged parked messages, a refused checkpoint."""
    disk: dict[str, int] = {}
    """Bytes each store holds: every claiim stream by name (one copy; a replicated stream takes this on
    each node that holds it) and each of Chron's tables as ``table:<name>`` (with its indexes and
    TOAST); a store that could not be read is left out."""
    archived: int = 0
    """Leaves archived (``CLAIIM_ARCHIVE``): the log's first ``archived`` leaves are in the archive."""
    archived_segments: int = 0
    archived_bytes: int = 0
    """The archive's segments, and their bytes."""


class ParkedInfo(Struct, frozen=True, kw_only=True):
    """A message Chron did not make a leaf: undecodable, not authentic, or a replay."""

    id: int
    stream: str
    stream_seq: int
    subject: str
    error: str
    parked_at: str
    data: str
    """The message as text (invalid UTF-8 replaced), at most 4 KiB."""
    acked_by: str = ""
    ack_reason: str = ""
    acked_at: str = ""


class ChronResult(Struct, frozen=True, kw_only=True):
    """``inclusion``/``consistency`` are proof bundles (:mod:`claiim_core.proofs`) as plain data."""

    records: list[ChronRecord] = []
    checkpoints: list[CheckpointInfo] = []
    parked: list[ParkedInfo] = []
    acknowledged: list[int] = []
    inclusion: dict[str, Any] | None = None
    consistency: dict[str, Any] | None = None
    status: ChronStatus | None = None
    ok: bool = True
    code: str = ""
    """A :class:`claiim_core.codes.Code` when ``ok`` is false."""
    error: str | None = None


# -- admin API -------------------------------------------------------------------------------


class ApplyRequest(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Apply a bundle (already parsed from YAML into plain data) to the bundle's org."""

    admin_token: str
    bundle: dict[str, Any]
    dry_run: bool = False


class Change(Struct, frozen=True, kw_only=True):
    """What a bundle did, or would do, to one org, skill, policy or agent."""

    op: Literal["created", "published", "registered", "updated", "unchanged"]
    kind: Literal["org", "skill", "policy", "agent"]
    name: str
    version: int = 0
    """The skill or policy version published, or found unchanged (0 for orgs and agents)."""

    def __str__(self) -> str:
        return f"{self.op} {self.kind} {self.name}" + (f"-v{self.version}" if self.version else "")

    def would(self) -> str:
        """The change as a dry run says it: ``would publish policy no-prod-v2`` (``unchanged ...`` as is)."""
        verb = {"created": "would create", "published": "would publish", "registered": "would register",
                "updated": "would update"}.get(self.op, self.op)
        return f"{verb} {self.kind} {self.name}" + (f"-v{self.version}" if self.version else "")


class ApplyReply(Struct, frozen=True, kw_only=True):
    """``tokens`` holds the token of each newly registered agent: it is shown once, here."""

    ok: bool
    code: str = ""
    """A :class:`claiim_core.codes.Code` when ``ok`` is false."""
    changed: list[Change] = []
    """Every entry of the bundle, in order, with what it came to."""
    changes: list[str] = []
    """``changed`` as text (``published policy no-prod-v2``), for people."""
    tokens: dict[str, str] = {}
    proposal_id: str = ""
    """Set when the change waits for approval: nothing is applied yet (tokens work once it is)."""
    pending: str = ""
    """What the proposal needs, e.g. ``1 approval by another admin of org demo before ...``."""
    error: str | None = None
    problems: list[str] = []
    """Each problem of an invalid bundle, starting with its path (``policies[0] (name).allow[1]: ...``)."""
    control_seq: int = 0
    warnings: list[str] = []
    """What is valid but will not work as meant: ``approve`` rules that nobody enrolled can grant."""
    dry_run: bool = False
    """Nothing was applied: ``changes`` say what would be (``would publish policy no-prod-v2``)."""
    would_propose: bool = False
    """Dry run: applied for real by the same admin, the change would wait as a proposal (it widens what
    agents may do and the admin is an org admin; the operator's changes apply at once)."""
    approvals_required: int = 0
    """Dry run, when ``would_propose``: how many admins of the org other than the proposer must approve."""


MAX_TOKEN_GRACE_S = 7 * 24 * 3600
"""The longest grace period a rotated-out token can get."""


class AgentCommand(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Suspend or reactivate an agent, change its anchor, rotate or revoke its token, or attach (or
    remove) a log-only candidate policy version."""

    admin_token: str
    op: Literal["suspend", "reactivate", "set-anchor", "rotate-token", "revoke-token", "set-shadow"]
    agent_id: str
    org: str = ""
    anchor: Annotated[str, Meta(max_length=128)] = ""
    reason: Annotated[str, Meta(max_length=512)] = ""
    policy: Annotated[str, Meta(max_length=256)] = ""
    """set-shadow: the candidate policy version evaluated log-only (empty: remove the candidate)."""
    grace: Annotated[int, Meta(ge=0, le=MAX_TOKEN_GRACE_S)] = 0
    """rotate-token: seconds the old token stays valid beside the new one (0: denied at once)."""


AdminName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.@+-]{1,128}\Z")]
"""A person's name: an anchor's is the name its agents give as their anchor (``s.emp1``, an e-mail address)."""


class AdminCommand(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Enrol an admin of an org with a role, or revoke one."""

    admin_token: str
    op: Literal["enrol", "revoke"]
    name: AdminName
    org: str = ""
    role: Literal["admin", "auditor", "anchor"] = "admin"
    reason: Annotated[str, Meta(max_length=512)] = ""


class OrgCommand(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Create an org (the operator only), set how many approvals its widening changes need, or set
    (empty: remove) the webhook told of every approval that waits."""

    admin_token: str
    op: Literal["create", "set-approvals", "set-webhook"]
    org: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{0,64}\Z")] = ""
    description: Annotated[str, Meta(max_length=512)] = ""
    approvals: Annotated[int, Meta(ge=1, le=10)] = 1
    webhook: Annotated[str, Meta(max_length=2048)] = ""


class ProposalCommand(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Approve or reject a proposal of the org. ``change_hash``, when given, must be the hash of the
    change as the approver reviewed it."""

    admin_token: str
    op: Literal["approve", "reject"]
    proposal_id: Annotated[str, Meta(min_length=1, max_length=64)]
    org: str = ""
    reason: Annotated[str, Meta(max_length=512)] = ""
    change_hash: str = ""


class ApprovalCommand(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """List, show, grant or refuse the approvals agents wait for (``<ns>.admin.approval``).

    An anchor sees and decides the approvals of the agents it anchors; an admin sees every approval
    of its org and decides those whose rule names ``admins`` (or the ones it anchors itself).
    ``list`` shows what still waits unless ``closed`` is set; ``agent_id`` narrows it to one agent.
    """

    admin_token: str
    op: Literal["list", "show", "grant", "refuse"]
    org: str = ""
    approval_id: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{0,64}\Z")] = ""
    reason: Annotated[str, Meta(max_length=512)] = ""
    agent_id: Annotated[str, Meta(max_length=128)] = ""
    closed: bool = False
    request_hash: str = ""
    """grant/refuse: the request hash the person reviewed; when given, it must be the approval's."""


class ApprovalView(Struct, frozen=True, kw_only=True):
    """One approval as people decide it: the request, the rule and policy version that asked for it,
    and where it stands (``pending``, ``granted``, ``refused``, ``expired``; ``final_outcome`` is set
    once the agent's ALLOW or DENY ending it is recorded)."""

    approval_id: str
    org: str
    agent_id: str
    anchor: str
    action: str
    target: str
    context: dict[str, str]
    rule: str
    policy: str
    skill: str
    approver: str
    request_hash: str
    requested_at: str
    expires_at: str
    status: Literal["pending", "granted", "refused", "expired"]
    decided_by: str = ""
    decided_at: str = ""
    note: str = ""
    final_outcome: str = ""
    final_chron_id: str = ""


class ApprovalReply(Struct, frozen=True, kw_only=True):
    ok: bool
    code: str = ""
    """A :class:`claiim_core.codes.Code` when ``ok`` is false."""
    error: str | None = None
    approvals: list[ApprovalView] = []
    change: str = ""
    control_seq: int = 0


class AgentCommandReply(Struct, frozen=True, kw_only=True):
    """The answer to agent, admin and org commands. ``token`` is set by rotate-token and enrol
    only: the new token, shown once, here."""

    ok: bool
    code: str = ""
    """A :class:`claiim_core.codes.Code` when ``ok`` is false."""
    change: str = ""
    token: str | None = None
    proposal_id: str = ""
    pending: str = ""
    error: str | None = None
    control_seq: int = 0


RegistryOp = Literal["whoami", "orgs", "agents", "agent", "skills", "skill-versions", "policies",
                     "policy-versions", "admins", "explain", "proposals", "proposal"]


class RegistryQuery(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Read the registry of ``org`` (default: the admin's own).

    ``name`` is the agent, skill or policy for ``agent``, ``skill-versions``,
    ``policy-versions`` and ``explain``; ``explain`` evaluates ``action`` on ``target`` with
    ``context`` (as a check would carry it, for rules' conditions) without recording anything.
    """

    admin_token: str
    op: RegistryOp
    org: str = ""
    name: str = ""
    action: str = ""
    target: str = ""
    context: Context = msgspec.field(default_factory=dict)


class OrgInfo(Struct, frozen=True, kw_only=True):
    name: str
    description: str
    agents: int
    skills: int
    policies: int
    admins: int


class AgentInfo(Struct, frozen=True, kw_only=True):
    """An agent as admins see it; ``skill_versions`` and ``policy_version`` are what its
    references resolve to now (empty when not found)."""

    org: str
    agent_id: str
    anchor: str
    description: str
    status: str
    skills: tuple[str, ...]
    skill_versions: tuple[str, ...]
    policy: str
    policy_version: str
    has_token: bool
    retired_tokens: int
    shadow: str = ""
    """The log-only candidate policy version, if any."""
    grace_until: str = ""
    """When the token last rotated out with a grace period stops being accepted (RFC 3339; it may have
    passed); empty when no rotation gave one, or a later rotation or a revocation ended it."""


class SkillVersionInfo(Struct, frozen=True, kw_only=True):
    label: str
    name: str
    version: int
    description: str
    actions: tuple[str, ...]
    content_hash: str


class PolicyVersionInfo(Struct, frozen=True, kw_only=True):
    label: str
    name: str
    version: int
    description: str
    skill: str
    allow: tuple[RuleLike, ...]
    deny: tuple[RuleLike, ...]
    content_hash: str
    approve: tuple[RuleLike, ...] = ()
    """Rules whose actions wait for a person's approval."""


class AdminInfo(Struct, frozen=True, kw_only=True):
    org: str
    name: str
    role: str


class ApprovalInfo(Struct, frozen=True, kw_only=True):
    admin: str
    at: str
    reason: str


class ProposalInfo(Struct, frozen=True, kw_only=True):
    """A proposal with the exact change it holds (``events``, as stored) and its state."""

    proposal_id: str
    org: str
    proposer: str
    created_at: str
    expires_at: str
    status: str
    summary: list[str]
    change_hash: str
    approvals_required: int
    approvals: list[ApprovalInfo]
    closed_by: str
    closed_at: str
    reason: str
    events: list[dict[str, Any]]


class RegistryQueryReply(Struct, frozen=True, kw_only=True):
    ok: bool
    code: str = ""
    """A :class:`claiim_core.codes.Code` when ``ok`` is false."""
    error: str | None = None
    principal: str = ""
    """Who asked, for people: ``admin alice of org demo`` or ``operator``."""
    name: str = ""
    """The asking admin's name (``alice``; ``operator`` for the operator token)."""
    role: str = ""
    org: str = ""
    orgs: list[OrgInfo] = []
    agents: list[AgentInfo] = []
    skills: list[SkillVersionInfo] = []
    versions: list[PolicyVersionInfo] = []
    admins: list[AdminInfo] = []
    proposals: list[ProposalInfo] = []
    approvals_required: int = 0
    outcome: str = ""
    reason: str = ""
    rule: str = ""
    steps: list[str] = []
    control_seq: int = 0
