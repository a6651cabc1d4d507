"""Storage on the real stack: the OCSF stream is bounded (an older, unbounded one gets the limits), the streams
are compressed when asked, and `chron status` says what each stream and table holds."""

from __future__ import annotations

import asyncio

import pytest
from claiim import AsyncAdmin, AsyncGate
from claiim_runtime.settings import Settings
from claiim_runtime.streams import StreamOptions, ensure_streams
from claiim_server.bootstrap import start_services
from nats.js.api import StoreCompression, StreamConfig

from tests.conftest import backend, connect_as, load_demo

pytestmark = pytest.mark.integration


async def test_the_ocsf_stream_is_bounded_and_the_streams_compressed_when_asked(stack_settings: Settings) -> None:
    names = stack_settings.names
    nc = await connect_as(stack_settings)
    try:
        js = nc.jetstream()
        # an OCSF stream as an older claiim made it: no limits
        await js.add_stream(StreamConfig(name=names.ocsf_stream, subjects=[names.ocsf_wildcard]))
        settings = stack_settings.model_copy(update={"stream_compression": "s2", "ocsf_max_age": 3600.0,
                                                     "ocsf_max_bytes": 10 * 2**20})
        running = await start_services(settings, backend(settings))
        try:
            ocsf = (await js.stream_info(names.ocsf_stream)).config
            assert (ocsf.max_age, ocsf.max_bytes) == (3600.0, 10 * 2**20), "the old unbounded stream got the limits"
            decisions = (await js.stream_info(names.decisions_stream)).config
            assert decisions.compression == StoreCompression.S2
            assert (decisions.max_age or 0, decisions.max_bytes or -1) == (0, -1), "decisions are kept"
        finally:
            await running.stop()
        await ensure_streams(js, names, StreamOptions(ocsf_max_age=60.0))
        ocsf = (await js.stream_info(names.ocsf_stream)).config
        assert ocsf.max_age == 3600.0, "limits an operator set (or an earlier start) are kept"
    finally:
        await nc.close()


async def test_chron_status_says_what_each_stream_and_table_holds(stack_settings: Settings) -> None:
    running = await start_services(stack_settings, backend(stack_settings))
    try:
        tokens = await load_demo(stack_settings)
        async with AsyncGate("deploy-bot", tokens["deploy-bot"], stack_settings.url,
                             namespace=stack_settings.namespace) as gate:
            for _ in range(20):
                await gate.check("deploy:staging", "api-v2")
        admin = AsyncAdmin(stack_settings.url, stack_settings.require_admin_token(),
                           namespace=stack_settings.namespace)
        try:
            for _ in range(100):
                status = await admin.chron_status()
                if status.pending == 0 and status.tree_size >= 20:
                    break
                await asyncio.sleep(0.1)
        finally:
            await admin.close()
        names = stack_settings.names
        disk = status.disk
        for stream in (names.decisions_stream, names.control_stream, names.ocsf_stream):
            assert disk[stream] > 0, (stream, disk)
        assert disk["table:chron_events"] > 20 * 200, disk
        assert names.proofs_stream in disk and "table:chron_tree" in disk, disk
    finally:
        await running.stop()
