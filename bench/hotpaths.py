"""Request/reply hot paths side by side: bare nats-py, FastStream, nats-py + JetStream, the claiim gate.

Run: ``.venv/bin/python bench/hotpaths.py [--duration 5] [--warmup 1] [--inflight 128] [--single 2]``

It starts its own nats-server (JetStream, in a temporary directory, on a free port of 127.0.0.1).
The responders run in this process, on one asyncio loop; the load generator is raw nats-py in a
separate process (spawned), so that client CPU does not compete with the server loop's thread.
Every path receives the same payload: the gate's CheckRequest for the demo agent ``deploy-bot``
(``deploy:staging``), and every reply is checked for ``"outcome":"ALLOW"``.

The nats-server runs claiim's configuration (every party its own user, agents admitted by the auth
service): the stub responders and their load log in as an all-permissions maintenance user, the gate
as its service user, and the gate's load as the agent deploy-bot with its token.

Paths:
  bare       nats-py subscriber: msgspec-decode the CheckRequest, respond.
  faststream FastStream 0.7.8 NatsBroker subscriber, msgspec decoder, handler returns the reply bytes
             (broker logger disabled, default sequential consumption).
  nats+js    nats-py subscriber, a task per message: decode, publish to a JetStream stream (file storage,
             Nats-Msg-Id header) and await the PubAck, then respond.
  gate       the real claiim gate (control and auth services started alongside) with the demo bundle: each
             decision event carries the gate's HMAC-SHA256 (claiim_core.eventauth).
  gate, no MAC  the same gate publishing its decision events without the MAC, the cost of authenticating
             events by difference. Nothing but this benchmark runs a gate so; Chron would park every event.
With ``--repeat N`` the two gate paths are measured N times each, alternately.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing as mp
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import nats
from claiim import AsyncAdmin
from claiim_core.canonical import canonical_bytes
from claiim_core.checkpoint import Signer
from claiim_core.eventauth import GateKey, seal_decision
from claiim_core.names import Names, service_inbox
from claiim_core.schemas import CheckRequest, DecisionEvent
from claiim_core.tokens import inbox_prefix
from claiim_gate.service import GateService
from claiim_runtime.follower import RegistryFollower
from claiim_runtime.natsconf import MAINTENANCE_USER
from claiim_runtime.settings import Settings
from claiim_server.bootstrap import RunningServices, start_services
from claiim_server.servers import NatsCredentials, free_port, new_password, start_nats
from claiim_server.stack import demo_bundle
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import StorageType, StreamConfig

ALLOW = b'"outcome":"ALLOW"'
_decode_request = msgspec.json.Decoder(CheckRequest).decode
_encode = msgspec.json.Encoder().encode

SUBJECT_BARE = "bench.bare"
SUBJECT_FS = "bench.faststream"
SUBJECT_JS = "bench.jsreq"
JS_STREAM = "BENCH_JS"
JS_SUBJECTS = "bench.js.>"


def answer(req: CheckRequest) -> bytes:
    """The stub responders' reply: small, but shaped like the gate's."""
    return _encode({"outcome": "ALLOW", "reason": "bench", "agent_id": req.agent_id, "action": req.action,
                    "request_id": req.request_id})


# ---------------------------------------------------------------------------------------------------------
# Load generator (runs in a spawned child process)


@dataclass(frozen=True)
class Login:
    """Who the load generator connects as."""

    user: str
    password: str
    inbox: str


@dataclass
class LoadResult:
    total_requests: int  # all requests of the run, warm-up included (for CPU per request)
    inflight_done: int
    inflight_seconds: float
    inflight_lat: list[float]
    single_lat: list[float]
    errors: int
    unexpected: int

    @property
    def rps(self) -> float:
        return self.inflight_done / self.inflight_seconds


def run_load(url: str, login: Login, subject: str, payload: bytes, warmup: float, duration: float, inflight: int,
             single: float) -> LoadResult:
    return asyncio.run(_load(url, login, subject, payload, warmup, duration, inflight, single))


async def _load(url: str, login: Login, subject: str, payload: bytes, warmup: float, duration: float, inflight: int,
                single: float) -> LoadResult:
    nc = await nats.connect(url, name="bench-load", user=login.user, password=login.password,
                            inbox_prefix=login.inbox)
    errors = 0
    unexpected = 0
    total = 0

    async def caller(stop_at: float, lat: list[float]) -> None:
        nonlocal errors, unexpected, total
        perf = time.perf_counter
        while (t0 := perf()) < stop_at:
            try:
                msg = await nc.request(subject, payload, timeout=5)
            except Exception:
                errors += 1
                continue
            lat.append(perf() - t0)
            total += 1
            if ALLOW not in msg.data:
                unexpected += 1

    async def phase(seconds: float, callers: int) -> tuple[list[float], float]:
        lat: list[float] = []
        start = time.perf_counter()
        await asyncio.gather(*(caller(start + seconds, lat) for _ in range(callers)))
        return lat, time.perf_counter() - start

    try:
        await phase(warmup, inflight)
        inflight_lat, inflight_seconds = await phase(duration, inflight)
        single_lat, _ = await phase(single, 1)
    finally:
        await nc.close()
    return LoadResult(total, len(inflight_lat), inflight_seconds, inflight_lat, single_lat, errors, unexpected)


# ---------------------------------------------------------------------------------------------------------
# Responders (run in this process)

Stopper = Callable[[], Awaitable[None]]


async def connect(url: str, name: str, login: Login) -> Client:
    return await nats.connect(url, name=name, user=login.user, password=login.password, inbox_prefix=login.inbox)


async def start_bare(url: str, login: Login) -> Stopper:
    nc = await connect(url, "bench-bare", login)

    async def on_request(msg: Msg) -> None:
        await msg.respond(answer(_decode_request(msg.data)))

    await nc.subscribe(SUBJECT_BARE, queue="bench-bare", cb=on_request, pending_msgs_limit=100_000)
    return nc.drain


async def start_faststream(url: str, login: Login) -> Stopper:
    from faststream.nats import NatsBroker, NatsMessage

    with_login = url.replace("nats://", f"nats://{login.user}:{login.password}@")  # FastStream takes no user
    broker = NatsBroker(with_login, logger=None, inbox_prefix=login.inbox)

    async def decoder(msg: NatsMessage) -> Any:
        return _decode_request(msg.body)

    @broker.subscriber(SUBJECT_FS, queue="bench-fs", decoder=decoder)
    async def handle(req: Any) -> bytes:
        return answer(req)

    await broker.start()
    return broker.stop


async def start_js_responder(url: str, login: Login) -> Stopper:
    nc = await connect(url, "bench-js", login)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=JS_STREAM, subjects=[JS_SUBJECTS], storage=StorageType.FILE,
                                     duplicate_window=120.0))
    tasks: set[asyncio.Task[None]] = set()

    async def handle(msg: Msg) -> None:
        req = _decode_request(msg.data)
        await js.publish(f"bench.js.{req.agent_id}", msg.data, timeout=2.0, stream=JS_STREAM,
                         headers={"Nats-Msg-Id": os.urandom(10).hex()})
        await msg.respond(answer(req))

    async def on_request(msg: Msg) -> None:
        task = asyncio.create_task(handle(msg))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    await nc.subscribe(SUBJECT_JS, queue="bench-js", cb=on_request, pending_msgs_limit=100_000)

    async def stop() -> None:
        if tasks:
            await asyncio.wait(set(tasks), timeout=5)
        await nc.drain()

    return stop


@dataclass
class GateBench:
    running: RunningServices
    settings: Settings
    nc: Client
    """The gates' connection, as the `gate` user."""
    follower: RegistryFollower
    login: Login
    payload: bytes

    async def start(self, seal: Callable[[DecisionEvent], bytes]) -> Stopper:
        """A gate on the check subject with this way of sealing its events (the only one subscribed)."""
        s = self.settings
        gate = GateService(self.nc, s.names, self.follower, s.require_token_secret(), "bench-gate",
                           s.publish_timeout, seal, s.gate_keyring_with(s.require_gate_key()))
        await gate.start()
        return gate.stop


async def start_gate(url: str, credentials: NatsCredentials) -> GateBench:
    """Control and auth services with the demo bundle, and a registry follower for the gates to start."""
    control = Signer.from_seed("bench-control", os.urandom(32))
    gate_key = GateKey("bench", os.urandom(32))
    settings = Settings(url=url, database_url=None, token_secret="x" * 32, admin_token="adm", control_key=str(control),
                        control_verifiers=str(control.verifier), gate_key=str(gate_key), gate_keys=str(gate_key),
                        nats_passwords=credentials.passwords_setting, nats_issuer_seed=credentials.issuer_seed)
    running = await start_services(settings, which=("control", "auth"))
    admin = AsyncAdmin(url, "adm")
    try:
        reply = await admin.apply(demo_bundle())
    finally:
        await admin.close()
    token = reply.tokens["deploy-bot"]
    nc = await connect(url, "bench-gate", Login("gate", credentials.passwords["gate"], service_inbox("gate")))
    running.connections["gate"] = nc  # closed with the services
    follower = RegistryFollower(nc.jetstream(), settings.names, settings.require_control_keyring())
    await follower.start()
    running.followers.append(follower)
    request = CheckRequest(agent_id="deploy-bot", token=token, action="deploy:staging", target="api-v2",
                           request_id="bench")
    return GateBench(running, settings, nc, follower, Login("deploy-bot", token, inbox_prefix(token)),
                     _encode(request))


# ---------------------------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile, in milliseconds."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s)) - 1))] * 1000


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@dataclass
class Row:
    path: str
    result: LoadResult
    server_cpu_us: float


async def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING)
    loop = asyncio.get_running_loop()
    generated = NatsCredentials.generate()
    credentials = NatsCredentials({**generated.passwords, MAINTENANCE_USER: new_password()}, generated.issuer_seed)
    maintenance = Login(MAINTENANCE_USER, credentials.passwords[MAINTENANCE_USER], service_inbox(MAINTENANCE_USER))
    with tempfile.TemporaryDirectory(prefix="claiim-bench-") as tmp, \
            ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        nats_server = start_nats(free_port(), Path(tmp) / "nats", credentials=credentials, names=Names())
        url = nats_server.url
        bench: GateBench | None = None
        rows: list[Row] = []
        try:
            # The load process starts (spawn + imports) before anything is measured.
            await loop.run_in_executor(pool, pct, [0.0], 50)
            bench = await start_gate(url, credentials)
            print(f"nats-server {url}; payload {len(bench.payload)} bytes; {args.inflight} in flight for "
                  f"{args.duration:g}s after {args.warmup:g}s warm-up; 1 caller for {args.single:g}s; "
                  f"cpus={os.cpu_count()}", flush=True)
            gate_key = bench.settings.require_gate_key()
            sealed = bench.start
            paths: list[tuple[str, str, Login, Callable[[], Awaitable[Stopper]]]] = [
                ("bare nats-py", SUBJECT_BARE, maintenance, lambda: start_bare(url, maintenance)),
                ("faststream 0.7.8", SUBJECT_FS, maintenance, lambda: start_faststream(url, maintenance)),
                ("nats-py + JetStream PubAck", SUBJECT_JS, maintenance, lambda: start_js_responder(url, maintenance)),
            ]
            for _ in range(args.repeat):
                paths += [("claiim gate", bench.settings.names.gate_check, bench.login,
                           lambda: sealed(lambda e: seal_decision(e, gate_key))),
                          ("claiim gate, no MAC", bench.settings.names.gate_check, bench.login,
                           lambda: sealed(canonical_bytes))]
            for name, subject, login, starter in paths:
                stop = await starter()
                try:
                    await ready(url, login, subject, bench.payload)
                    cpu0 = cpu_seconds()
                    result = await loop.run_in_executor(pool, run_load, url, login, subject, bench.payload,
                                                        args.warmup, args.duration, args.inflight, args.single)
                    cpu = cpu_seconds() - cpu0
                finally:
                    await stop()
                rows.append(Row(name, result, cpu / max(1, result.total_requests) * 1e6))
                print(f"  {name}: {result.rps:,.0f} req/s, 1 caller p50 {pct(result.single_lat, 50):.3f} ms",
                      flush=True)
        finally:
            if bench is not None:
                await bench.running.stop()
            nats_server.stop()
    report(rows, args.inflight)


async def ready(url: str, login: Login, subject: str, payload: bytes) -> None:
    """Wait until the path answers ALLOW (a gate's registry follower catches up asynchronously)."""
    nc = await connect(url, "bench-probe", login)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                msg = await nc.request(subject, payload, timeout=5)
                if ALLOW in msg.data:
                    return
            except nats.errors.NoRespondersError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{subject} does not allow the bench request")
            await asyncio.sleep(0.05)
    finally:
        await nc.close()


def report(rows: list[Row], inflight: int) -> None:
    bare = rows[0].result.rps
    head = (f"{'path':<28} {f'req/s @{inflight}':>12} {'p50 ms':>8} {'p99 ms':>8} │ {'1 caller p50':>12} "
            f"{'p99 ms':>8} {'req/s':>7} │ {'srv CPU µs/req':>14} {'% of bare':>9} {'errors':>6}")
    print()
    print(head)
    print("─" * len(head))
    for row in rows:
        r = row.result
        single_rps = len(r.single_lat) / sum(r.single_lat) if r.single_lat else float("nan")
        print(f"{row.path:<28} {r.rps:>12,.0f} {pct(r.inflight_lat, 50):>8.2f} {pct(r.inflight_lat, 99):>8.2f} │ "
              f"{pct(r.single_lat, 50):>12.3f} {pct(r.single_lat, 99):>8.3f} {single_rps:>7,.0f} │ "
              f"{row.server_cpu_us:>14.0f} {100 * r.rps / bare:>8.1f}% {r.errors + r.unexpected:>6}")
    gates = [r.result for r in rows if r.path == "claiim gate"]
    plain = [r.result for r in rows if r.path == "claiim gate, no MAC"]
    gate = statistics.median(r.rps for r in gates)
    print(f"\ngate (median of {len(gates)}) = {100 * gate / bare:.1f}% of the bare responder; "
          f"{100 * gate / rows[2].result.rps:.1f}% of nats-py + JetStream; "
          f"{gate / rows[1].result.rps:.2f}x FastStream")
    with_mac, without = statistics.median(r.rps for r in gates), statistics.median(r.rps for r in plain)
    p50 = statistics.median(pct(r.single_lat, 50) for r in gates)
    p50_plain = statistics.median(pct(r.single_lat, 50) for r in plain)
    print(f"event authentication: {with_mac:,.0f} vs {without:,.0f} req/s without the MAC "
          f"({100 * (with_mac / without - 1):+.1f}%); 1 caller p50 {p50:.3f} vs {p50_plain:.3f} ms (medians)")
    print("srv CPU µs/req: CPU time of the server process (responders, nats-py, idle gate) over all requests "
          "of the path, warm-up included; nats-server's own CPU is not counted.")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per path at full load")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before measuring")
    parser.add_argument("--inflight", type=int, default=128, help="requests in flight")
    parser.add_argument("--single", type=float, default=2.0, help="seconds of the single-caller loop")
    parser.add_argument("--repeat", type=int, default=3, help="measurements of each gate path, alternately")
    asyncio.run(main(parser.parse_args(sys.argv[1:])))
