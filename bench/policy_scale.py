"""How the gate's own work grows with agents, orgs and rules: the pure decision path, no network.

Run: ``.venv/bin/python bench/policy_scale.py [--calls 20000]``

For each registry shape it folds the control events in as a gate replica does
(``Registry.apply``: orgs, one skill, one policy of R rules per org, A agents spread over the orgs),
then times, per call, what the gate does between receiving a request and publishing its event:
``decide`` (decode the request, check the agent's token, evaluate skills and policy, build the
event) and ``seal_decision`` (canonical bytes and the gate's MAC). The request asks for an action
only the policy's last allow rule permits (every deny rule and every allow rule before it is
tried first), as one of the registered agents. Also: the fold's time and the process's memory
growth (RSS) for the registry.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import msgspec
import psutil
from claiim_core.document import PolicyDocument, Rule
from claiim_core.eventauth import GateKey, seal_decision
from claiim_core.events import AgentRegistered, ControlEvent, OrgCreated, PolicyPublished, SkillPublished, aggregate
from claiim_core.names import Names
from claiim_core.registry import Registry
from claiim_core.schemas import CheckRequest
from claiim_core.tokens import hash_token
from claiim_gate.decide import Moment, decide

SECRET = b"bench-token-secret"
AT = "2026-01-02T03:04:05.000000Z"
SHAPES = ((10, 1, 10), (1_000, 10, 10), (100_000, 100, 10), (1_000, 10, 1_000), (100_000, 100, 1_000))
"""(agents, orgs, rules per policy)."""


def token(org: str, i: int) -> str:
    return f"clm_{org}.bench-agent-{i:06d}-" + "x" * 24


def events(agents: int, orgs: int, rules: int) -> list[ControlEvent]:
    """Orgs, each with a skill ``ops-v1`` (``ops:*``) and a policy ``p-v1`` of ``rules`` rules (half deny
    rules on targets, half allow rules, the last allowing ``ops:last``), and agents bound to both."""
    ids = iter(range(1, 10**9))

    def base(org: str) -> dict[str, str]:
        return {"event_id": f"chr_bench{next(ids):021d}", "at": AT, "actor": "admin", "org": org}
    deny = tuple(Rule(action=f"ops:d{j}", target=f"prod-{j}-*") for j in range(rules // 2))
    allow = (*(f"ops:a{j}" for j in range(rules - rules // 2 - 1)), "ops:last")
    doc = PolicyDocument(skill="ops-v1", allow=allow, deny=deny)
    out: list[ControlEvent] = []
    for o in range(orgs):
        org = f"org{o}"
        out += [OrgCreated(**base(org)),
                SkillPublished(name="ops", version=1, description="", actions=("ops:*",),
                               content_hash="sha256:" + "0" * 64, **base(org)),
                PolicyPublished(name="p", version=1, description="", document=doc,
                                content_hash="sha256:" + "1" * 64, **base(org))]
    for i in range(agents):
        org = f"org{i % orgs}"
        out.append(AgentRegistered(agent_id=f"agent-{i}", anchor="s.owner", description="", skills=("ops-v1",),
                                   policy="p-v1", token_hash=hash_token(SECRET, token(org, i)), **base(org)))
    return out


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


def measure(agents: int, orgs: int, rules: int, calls: int) -> tuple[float, int, float, float]:
    """Fold seconds, RSS growth (bytes), decide p50 µs, decide + seal p50 µs."""
    names = Names()
    stream = events(agents, orgs, rules)
    before = rss()
    start = time.perf_counter()
    registry = Registry()
    for seq, event in enumerate(stream, 1):
        kind, name = aggregate(event)
        registry.apply(seq, names.control_subject(event.org, kind, name), event)
    fold = time.perf_counter() - start
    grown = rss() - before
    del stream
    who = agents - 1
    org = f"org{who % orgs}"
    request = msgspec.json.encode(CheckRequest(agent_id=f"agent-{who}", token=token(org, who), action="ops:last",
                                               target="svc-1"))
    key = GateKey("bench", os.urandom(32))
    moment = Moment(time.time_ns() // 1000, os.urandom(10))
    event = decide(request, registry, SECRET, "bench", moment)
    if event.outcome != "ALLOW":
        raise RuntimeError(f"the bench request was not allowed: {event.reason}")
    perf = time.perf_counter_ns
    plain, sealed = [], []
    for _ in range(calls):
        t0 = perf()
        event = decide(request, registry, SECRET, "bench", moment)
        t1 = perf()
        seal_decision(event, key)
        t2 = perf()
        plain.append(t1 - t0)
        sealed.append(t2 - t0)
    return fold, grown, statistics.median(plain) / 1000, statistics.median(sealed) / 1000


def main(args: argparse.Namespace) -> None:
    print(f"{'agents':>8} {'orgs':>5} {'rules':>6} {'fold s':>8} {'RSS MiB':>8} {'decide µs':>10} "
          f"{'+ seal µs':>10}")
    for agents, orgs, rules in SHAPES:
        fold, grown, plain, sealed = measure(agents, orgs, rules, args.calls)
        print(f"{agents:>8,} {orgs:>5} {rules:>6} {fold:>8.2f} {grown / 2**20:>8.1f} {plain:>10.1f} {sealed:>10.1f}",
              flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20_000)
    main(parser.parse_args(sys.argv[1:]))
