"""A PostgreSQL of a test's own (pgserver's binaries) that the test may stop, kill and start again."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "XDG_RUNTIME_DIR is not set")
    import pgserver
    from pgserver._commands import pg_ctl
    from pgserver.utils import ensure_prefix_permissions


class OwnPostgres:
    """PostgreSQL in ``data_dir`` on a Unix socket there, started at once; ``url`` stays the same across
    restarts."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self._server: Any = pgserver.get_server(data_dir, cleanup_mode=None)
        self.data_dir = Path(self._server.pgdata)
        self.url = str(self._server.get_uri())
        socket = self._server._postmaster_info.socket_path
        self._socket_dir = socket.parent if socket is not None else self.data_dir

    def _ctl(self, *args: str) -> None:
        if self._server.system_user is not None:  # as root, PostgreSQL runs as its own user, who must reach the
            ensure_prefix_permissions(self.data_dir)  # data: another pytest session makes pytest-of-<user> 0700
        pg_ctl(list(args), pgdata=self.data_dir, user=self._server.system_user, timeout=30)

    def stop(self) -> None:
        """A fast shutdown (clients are disconnected, as in a restart for maintenance)."""
        self._ctl("-w", "-m", "fast", "stop")

    def kill(self) -> None:
        """SIGKILL of the postmaster (a crash: PostgreSQL recovers from its WAL when started again)."""
        os.kill(self.pid(), signal.SIGKILL)

    def start(self, wait: float = 20.0) -> None:
        """Start it again; after a kill, the old server's backends hold its shared memory until they
        notice, so a refused start is tried again for ``wait`` seconds."""
        deadline = time.monotonic() + wait
        while True:
            try:
                self._ctl("-w", "-o", '-h ""', "-o", f"-k {self._socket_dir}", "-l", str(self.data_dir / "log"),
                          "start")
                return
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def pid(self) -> int:
        return int((self.data_dir / "postmaster.pid").read_text().split()[0])

    def running(self) -> bool:
        try:
            os.kill(self.pid(), 0)
        except (OSError, ValueError):
            return False
        return True

    def close(self) -> None:
        if self.running():
            with contextlib.suppress(subprocess.CalledProcessError):
                self._ctl("-w", "-m", "immediate", "stop")
