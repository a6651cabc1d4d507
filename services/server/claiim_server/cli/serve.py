"""``claiim serve gate|control|chron|ocsf|auth|admin|all``: run services against existing NATS and
PostgreSQL. ``--workers N`` runs the gate as N supervised processes (:mod:`claiim_server.workers`)."""

from __future__ import annotations

import asyncio
import sys

from claiim_runtime.logs import configure
from claiim_runtime.settings import ConfigError, Settings
from claiim_runtime.stopping import run_until_signalled

from claiim_server.bootstrap import SERVICES, start_services
from claiim_server.servers import StackError
from claiim_server.workers import Workers, supervisor_gone


def serve(services: list[str], workers: int = 1, http_port: int | None = None) -> int:
    which = SERVICES if "all" in services else tuple(dict.fromkeys(services))
    if workers < 1 or (workers > 1 and "gate" not in which):
        print("error: --workers N (1 or more) runs N gate processes: serve the gate to use it", file=sys.stderr)
        return 2

    async def run(stop: asyncio.Event) -> None:
        watch = asyncio.create_task(supervisor_gone(stop))
        settings = Settings()
        configure(settings, ",".join(which))
        if http_port is not None:
            settings = settings.model_copy(update={"http_port": http_port})
        gates = Workers(settings.model_copy(update={"http_port": 0}) if settings.http_port is not None else settings,
                        "gate", workers) if workers > 1 else None
        running = await start_services(settings, tuple(s for s in which if s != "gate") if gates else which)
        try:
            if gates is not None:
                await gates.start()
            print(f"claiim serving {', '.join(which)}" + (f" ({workers} gate workers)" if gates else "")
                  + (f"; metrics and health at {running.http.url}" if running.http else ""), flush=True)
            await stop.wait()
        finally:
            if gates is not None:
                await gates.stop()
            await running.stop()
            watch.cancel()

    try:
        run_until_signalled(run)
    except (ConfigError, StackError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
