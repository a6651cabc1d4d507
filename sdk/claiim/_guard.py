"""Guards: ask the gate before a block or a function runs, and raise :class:`ActionDenied` instead
of running it unless the answer is ALLOW.

::

    @gate.guard("deploy:staging", target=lambda service, version: service)
    def deploy(service: str, version: str) -> None: ...

    with gate.guard("db:migrate", target="orders") as decision:   # decision.chron_id
        migrate()

``target`` and ``context`` are values, or callables that get the guarded function's own arguments
(only for functions: a ``with`` block has none). ``AsyncGate.guard`` guards coroutine functions and
``async with`` blocks the same way.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, Protocol, TypeVar

from claiim_core.schemas import DecisionReply

from claiim.errors import ActionDenied

P = ParamSpec("P")
R = TypeVar("R")
Target = str | Callable[..., str]
Context = dict[str, str] | Callable[..., dict[str, str]] | None


class Checks(Protocol):
    """What a :class:`Guard` needs of a ``Gate``."""

    def check(self, action: str, target: str = "", context: dict[str, str] | None = None) -> DecisionReply: ...


class AsyncChecks(Protocol):
    """What an :class:`AsyncGuard` needs of an ``AsyncGate``."""

    async def check(self, action: str, target: str = "", context: dict[str, str] | None = None) -> DecisionReply: ...


class _Rule:
    def __init__(self, action: str, target: Target, context: Context) -> None:
        self.action, self._target, self._context = action, target, context

    def resolve(self, args: tuple[Any, ...] | None, kwargs: dict[str, Any] | None) -> tuple[str, dict[str, str]]:
        """The target and context, computed from the guarded function's arguments where callables."""
        if args is None and (callable(self._target) or callable(self._context)):
            raise TypeError(f"guard({self.action!r}): a target or context computed from arguments needs a function "
                            "to guard; a with block has none")
        target = self._target(*args or (), **kwargs or {}) if callable(self._target) else self._target
        context = self._context(*args or (), **kwargs or {}) if callable(self._context) else self._context
        return target, dict(context or {})

    def allowed(self, target: str, decision: DecisionReply) -> DecisionReply:
        if decision.outcome != "ALLOW":
            raise ActionDenied(self.action, target, decision)
        return decision


class Guard(_Rule):
    """:meth:`Gate.guard`: a decorator of functions and a context manager."""

    def __init__(self, gate: Checks, action: str, target: Target, context: Context) -> None:
        super().__init__(action, target, context)
        self._gate = gate

    def _check(self, args: tuple[Any, ...] | None, kwargs: dict[str, Any] | None) -> DecisionReply:
        target, context = self.resolve(args, kwargs)
        return self.allowed(target, self._gate.check(self.action, target, context))

    def __enter__(self) -> DecisionReply:
        return self._check(None, None)

    def __exit__(self, *exc: object) -> None:
        return None

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(func):
            raise TypeError(f"{func.__name__} is a coroutine function: guard it with AsyncGate.guard")

        @functools.wraps(func)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            self._check(args, kwargs)
            return func(*args, **kwargs)

        return guarded


class AsyncGuard(_Rule):
    """:meth:`AsyncGate.guard`: a decorator of coroutine functions and an async context manager."""

    def __init__(self, gate: AsyncChecks, action: str, target: Target, context: Context) -> None:
        super().__init__(action, target, context)
        self._gate = gate

    async def _check(self, args: tuple[Any, ...] | None, kwargs: dict[str, Any] | None) -> DecisionReply:
        target, context = self.resolve(args, kwargs)
        return self.allowed(target, await self._gate.check(self.action, target, context))

    async def __aenter__(self) -> DecisionReply:
        return await self._check(None, None)

    async def __aexit__(self, *exc: object) -> None:
        return None

    def __call__(self, func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        if not inspect.iscoroutinefunction(func):
            raise TypeError(f"{func.__name__} is not a coroutine function: guard it with Gate.guard")

        @functools.wraps(func)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            await self._check(args, kwargs)
            return await func(*args, **kwargs)

        return guarded
