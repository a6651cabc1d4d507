"""``claiim serve gate|control|chron|all``: run services against existing NATS and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from claiim_runtime.settings import ConfigError, Settings

from claiim._services import SERVICES, start_services


def serve(services: list[str]) -> int:
    which = SERVICES if "all" in services else tuple(dict.fromkeys(services))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        running = await start_services(Settings(), which)
        print(f"claiim serving {', '.join(which)}", flush=True)
        try:
            await stop.wait()
        finally:
            await running.stop()

    try:
        asyncio.run(run())
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
