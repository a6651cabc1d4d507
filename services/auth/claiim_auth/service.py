"""The auth service: answers nats-server's auth callout, and ends the NATS access of agents and
admins whose access ends.

nats-server hands every client that is not a service user to ``$SYS.REQ.USER.AUTH``. The service
decodes the request, checks the client's claiim token against the live registry
(:func:`claiim_auth.grants.grant`) and answers with a user JWT holding the client's permissions,
signed with the issuer account key the server trusts, or with an error (the client is refused).
Replicas share a queue group; each follows the control stream itself.

When an agent is suspended, its token rotated or revoked, or an admin revoked, the service finds
that principal's connections on every server (``$SYS.REQ.SERVER.PING.CONNZ``, by the user name it
gave them) and disconnects them (``$SYS.REQ.SERVER.<id>.KICK``); a reconnect goes through the
callout again and is refused. At start, once its registry is current, it does the same for every
connection that is no longer valid (one that outlived a change while no auth service ran). A token
rotated out with a grace period keeps its connections until the grace ends: those opened before the
rotation are disconnected then, and those opened during it hold a user JWT that expires then.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from claiim_core.events import (
    AdminRevoked,
    AgentSuspended,
    AgentTokenRevoked,
    AgentTokenRotated,
    ControlEvent,
)
from claiim_core.names import Names
from claiim_runtime.follower import RegistryFollower
from claiim_runtime.natsconf import AUTH_CALLOUT_SUBJECT, CONNZ_SUBJECT, KICK_SUBJECT
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from claiim_auth.grants import Denied, Grant, admin_name, agent_name, grant
from claiim_auth.jwt import AuthRequest, JwtError, decode_request, response, user_jwt
from claiim_auth.nkeys import KeyPair

log = logging.getLogger(__name__)
ACCOUNT = "$G"
"""The account services, agents and admins share: the server's global account."""
GATHER_S = 0.5
"""How long replies from every server to a CONNZ request are collected."""
PAGE = 1000
STOP_WAIT_S = 5.0


class AuthService:
    def __init__(self, nc: Client, sys_nc: Client | None, names: Names, follower: RegistryFollower,
                 token_secret: bytes, operator_token: str, issuer: KeyPair,
                 clock: Callable[[], float] = time.time) -> None:
        """``follower`` must not be started yet: the service listens to every event from the first.
        ``sys_nc`` (the ``sys`` user) finds and disconnects connections; None: nobody is disconnected."""
        self._nc = nc
        self._sys = sys_nc
        self._names = names
        self._follower = follower
        self._secret = token_secret
        self._operator_token = operator_token
        self._issuer = issuer
        self._clock = clock
        self._live = False
        self._token_changed: dict[tuple[str, str], tuple[str, str]] = {}
        """Per agent: when its token was last replaced and, for a rotation with grace, when it ends."""
        self._sub: Subscription | None = None
        self._tasks: set[asyncio.Future[object]] = set()
        self.admitted = 0
        self.refused = 0
        self.disconnected = 0
        follower.listen(self._on_event)

    async def start(self) -> None:
        """Answer callouts (the follower has been started and is current), then disconnect stale
        connections in the background."""
        self._sub = await self._nc.subscribe(AUTH_CALLOUT_SUBJECT, queue=f"{self._names.namespace}-auth",
                                             cb=self._on_request)
        self._live = True
        if self._sys is None:
            log.warning("no NATS system user: agents and admins whose access ends stay connected until they "
                        "reconnect")
        else:
            self._spawn(self.reconcile())
            for (org, agent_id), (_, grace_until) in self._token_changed.items():
                if grace_until and _time(grace_until) > self._now():  # graces that began before this start
                    self._spawn(self._disconnect_later(org, agent_id, grace_until))

    async def stop(self) -> None:
        self._live = False
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=STOP_WAIT_S)

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the callout -------------------------------------------------------------------------

    async def _on_request(self, msg: Msg) -> None:
        try:
            request = decode_request(msg.data.decode("utf-8", "replace"))
        except JwtError as e:  # not the server asking: no answer, the asker times out
            log.warning("ignored an auth callout request that does not verify: %s", e)
            return
        now = int(self._clock())
        try:
            granted = await self._grant(request)
        except Denied as e:
            self.refused += 1
            log.warning("NATS connection refused (client %s from %s, user %r): %s", request.client_id,
                        request.client_host, request.user, e)
            answer = response(request, self._issuer, now, error=str(e))
        else:
            self.admitted += 1
            user = user_jwt(request, granted.name, ACCOUNT, granted.permissions, self._issuer, now,
                            granted.expires)
            answer = response(request, self._issuer, now, user=user)
        if msg.reply:
            await msg.respond(answer)

    async def _grant(self, request: AuthRequest) -> Grant:
        password = request.password or request.token
        registry = self._follower.registry
        try:
            return grant(registry, self._secret, self._operator_token, self._names, request.user, password,
                         self._now())
        except Denied:
            # A principal registered a moment ago may not be in this replica's registry yet.
            with contextlib.suppress(TimeoutError):
                await self._follower.wait_caught_up(timeout=1.0)
            return grant(self._follower.registry, self._secret, self._operator_token, self._names, request.user,
                         password, self._now())

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    # -- ending access -----------------------------------------------------------------------

    def _on_event(self, seq: int, event: ControlEvent) -> None:
        match event:
            case AgentTokenRotated() if event.grace_until:
                # The old token's connections stay until the grace ends; those it opens meanwhile
                # hold a user JWT that expires then, those opened before are disconnected then.
                self._token_changed[(event.org, event.agent_id)] = (event.at, event.grace_until)
                if self._live and self._sys is not None:
                    self._spawn(self._disconnect_later(event.org, event.agent_id, event.grace_until))
                return
            case AgentTokenRotated() | AgentTokenRevoked():
                self._token_changed[(event.org, event.agent_id)] = (event.at, "")
                name, why = agent_name(event.org, event.agent_id), "its token was replaced"
            case AgentSuspended():
                name, why = agent_name(event.org, event.agent_id), "it was suspended"
            case AdminRevoked():
                name, why = admin_name(event.org, event.name), "it was revoked"
            case _:
                return
        if self._live and self._sys is not None:
            self._spawn(self._disconnect_user(name, why))

    async def _disconnect_later(self, org: str, agent_id: str, grace_until: str) -> None:
        """At the end of a rotation's grace period, disconnect the agent's connections opened before
        the rotation (unless a later change has been handled since)."""
        await asyncio.sleep(max(0.0, (_time(grace_until) - self._now()).total_seconds()))
        if self._token_changed.get((org, agent_id), ("", ""))[1] != grace_until or self._sys is None:
            return
        try:
            for server, conn in await self._connections({"user": agent_name(org, agent_id)}):
                if self._ended(conn) is not None:
                    await self._kick(server, conn, "its token's grace period ended")
        except Exception as e:  # NATS unavailable: the reconcile at the next start catches it
            log.error("could not disconnect agent %s/%s at the end of its grace: %r", org, agent_id, e)

    async def _disconnect_user(self, name: str, why: str) -> None:
        try:
            for server, conn in await self._connections({"user": name}):
                await self._kick(server, conn, why)
        except Exception as e:  # NATS unavailable: the reconcile at the next start catches it
            log.error("could not disconnect %s (%s): %r", name, why, e)

    async def reconcile(self) -> int:
        """Disconnect every callout user whose access has ended; returns how many."""
        kicked = 0
        try:
            for server, conn in await self._connections({}):
                why = self._ended(conn)
                if why is not None:
                    await self._kick(server, conn, why)
                    kicked += 1
        except Exception as e:
            log.error("could not check the connections of agents and admins: %r", e)
        return kicked

    def _ended(self, conn: dict[str, object]) -> str | None:
        """Why the connection's access has ended, or None (also for connections not ours)."""
        user = str(conn.get("authorized_user", ""))
        kind, _, who = user.partition(":")
        org, _, name = who.partition("/")
        registry = self._follower.registry
        if kind == "admin":
            return None if (org, name) in registry.admins else "it is no longer an admin"
        if kind != "agent":
            return None
        agent = registry.agents.get((org, name))
        if agent is None or agent.status != "active" or not agent.token_hash:
            return "it is unknown, suspended or without a token"
        changed, grace_until = self._token_changed.get((org, name), ("", ""))
        started = str(conn.get("start", ""))
        if grace_until and self._now() < _time(grace_until):
            return None
        if changed and started and _time(started) < _time(changed):
            return "it connected before its token was replaced"
        return None

    async def _connections(self, filters: dict[str, object]) -> list[tuple[str, dict[str, object]]]:
        """``(server id, connection)`` of the callout users matching ``filters``, on every server."""
        assert self._sys is not None
        found: list[tuple[str, dict[str, object]]] = []
        offset = 0
        while True:
            replies = await self._gather(CONNZ_SUBJECT, {"auth": True, "acc": ACCOUNT, "limit": PAGE,
                                                         "offset": offset, **filters})
            full = False
            for reply in replies:
                server = str((reply.get("server") or {}).get("id", ""))
                conns = (reply.get("data") or {}).get("connections") or []
                found += [(server, c) for c in conns]
                full |= len(conns) == PAGE
            if not full:
                return found
            offset += PAGE

    async def _gather(self, subject: str, request: dict[str, object]) -> list[dict[str, Any]]:
        assert self._sys is not None
        inbox = self._sys.new_inbox()
        replies: list[dict[str, Any]] = []
        sub = await self._sys.subscribe(inbox)
        try:
            await self._sys.publish(subject, json.dumps(request).encode(), reply=inbox)
            deadline = asyncio.get_running_loop().time() + GATHER_S
            while (left := deadline - asyncio.get_running_loop().time()) > 0:
                try:
                    msg = await sub.next_msg(timeout=left)
                except Exception:  # nats-py raises its TimeoutError when the window ends
                    break
                replies.append(json.loads(msg.data))
        finally:
            await sub.unsubscribe()
        return replies

    async def _kick(self, server: str, conn: dict[str, object], why: str) -> None:
        assert self._sys is not None
        cid = conn.get("cid")
        await self._sys.request(KICK_SUBJECT.format(server), json.dumps({"cid": cid}).encode(), timeout=2.0)
        self.disconnected += 1
        log.warning("disconnected %s (connection %s on server %s): %s", conn.get("authorized_user"), cid,
                    server[:8], why)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
