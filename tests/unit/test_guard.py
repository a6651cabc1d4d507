"""Guards on a fake transport: the guarded code runs only after an ALLOW, with the target and context computed
from its arguments, and a DENY or an unreachable gate keeps it from running."""

from __future__ import annotations

import msgspec
import pytest
from claiim import ActionDenied, AsyncGate, Gate, GateUnavailableError
from claiim_core.schemas import DecisionReply

from tests.unit.test_sdk import REPLY, TOKEN, FakeTransport, replying, unavailable

DENIED = msgspec.structs.replace(REPLY, outcome="DENY", reason="policy:no-prod-v1 -- action explicitly denied",
                                 rule="deny[0]: deploy:production", chron_id="chr_01denied")


def test_a_guarded_function_runs_after_an_allow_with_its_arguments_as_target_and_context() -> None:
    fake, ran = replying(), []
    with Gate("deploy-bot", TOKEN, transport=fake) as gate:
        @gate.guard("deploy:staging", target=lambda service, version: service,
                    context=lambda service, version: {"version": version})
        def deploy(service: str, version: str) -> str:
            ran.append((service, version))
            return f"deployed {service}"

        assert deploy("api-v2", version="1.4") == "deployed api-v2"
    assert ran == [("api-v2", "1.4")]
    ((_, body, _),) = fake.sent
    assert (body["action"], body["target"], body["context"]) == ("deploy:staging", "api-v2", {"version": "1.4"})


def test_a_denied_function_does_not_run_and_the_error_carries_the_decision() -> None:
    ran = []
    with Gate("deploy-bot", TOKEN, transport=replying(DENIED)) as gate:
        @gate.guard("deploy:production", target="api-v2")
        def deploy() -> None:
            ran.append(1)

        with pytest.raises(ActionDenied) as denied:
            deploy()
    assert ran == []
    assert denied.value.decision == DENIED and denied.value.action == "deploy:production"
    assert str(denied.value) == ("DENY deploy:production on api-v2: policy:no-prod-v1 -- action explicitly denied "
                                 "(rule deny[0]: deploy:production; chron id chr_01denied)")


def test_a_with_block_gets_the_decision_or_never_starts() -> None:
    with Gate("deploy-bot", TOKEN, transport=replying()) as gate, gate.guard("deploy:staging", "api-v2") as decision:
        assert decision.chron_id == REPLY.chron_id
    entered = []
    with (Gate("deploy-bot", TOKEN, transport=replying(DENIED)) as gate, pytest.raises(ActionDenied),
          gate.guard("deploy:production", "api-v2")):
        entered.append(1)
    assert entered == []


def test_an_unreachable_gate_raises_and_nothing_runs() -> None:
    ran = []
    with Gate("deploy-bot", TOKEN, timeout=0.2, transport=unavailable()) as gate:
        @gate.guard("deploy:staging")
        def deploy() -> None:
            ran.append(1)

        with pytest.raises(GateUnavailableError):
            deploy()
    assert ran == []


def test_a_computed_target_needs_a_function_and_the_kind_of_function_must_fit() -> None:
    with Gate("deploy-bot", TOKEN, transport=replying()) as gate:
        with pytest.raises(TypeError, match="needs a function"), gate.guard("x:y", target=lambda: "t"):
            pass

        async def coroutine() -> None:
            pass

        with pytest.raises(TypeError, match=r"AsyncGate\.guard"):
            gate.guard("x:y")(coroutine)
    with pytest.raises(TypeError, match=r"with Gate\.guard"):
        AsyncGate("deploy-bot", TOKEN, transport=replying()).guard("x:y")(lambda: None)


async def test_async_guards_run_after_an_allow_and_not_after_a_deny() -> None:
    fake: FakeTransport = replying()
    gate = AsyncGate("deploy-bot", TOKEN, transport=fake)

    @gate.guard("pr:comment", target=lambda pr: f"pr-{pr}")
    async def comment(pr: int) -> str:
        return f"commented on {pr}"

    assert await comment(7) == "commented on 7"
    assert fake.sent[0][1]["target"] == "pr-7"
    async with gate.guard("pr:comment", "pr-8") as decision:
        assert isinstance(decision, DecisionReply)
    denied = AsyncGate("deploy-bot", TOKEN, transport=replying(DENIED))
    entered = []
    with pytest.raises(ActionDenied):
        async with denied.guard("pr:merge", "pr-8"):
            entered.append(1)
    assert entered == []
