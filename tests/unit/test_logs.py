"""CLAIIM_LOG_FORMAT=json: one JSON object a line, with the service and, where known, org, agent and chron id."""

from __future__ import annotations

import json
import logging
import sys

from claiim_runtime.logs import JsonFormatter, configure
from claiim_runtime.settings import Settings


def record(message: str, *args: object, exc: bool = False, **extra: str) -> logging.LogRecord:
    r = logging.LogRecord("claiim.test", logging.WARNING, __file__, 1, message, args, None)
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            r.exc_info = sys.exc_info()
    r.__dict__.update(extra)
    return r


def test_a_record_is_one_json_object_with_the_known_fields() -> None:
    line = JsonFormatter("gate").format(record("decision %s not recorded", "chr_1", org="demo", agent="bot",
                                               chron_id="chr_1", token="clm_demo.secret"))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry.pop("time").endswith("Z")
    assert entry == {"level": "WARNING", "logger": "claiim.test", "service": "gate",
                     "message": "decision chr_1 not recorded", "org": "demo", "agent": "bot", "chron_id": "chr_1"}


def test_an_exception_stays_inside_its_line() -> None:
    entry = json.loads(JsonFormatter("chron").format(record("failed", exc=True)))
    assert "ValueError: boom" in entry["exception"]


def test_configure_sets_the_format_and_level() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure(Settings(log_format="json", log_level="ERROR"), "up")
        assert root.level == logging.ERROR and isinstance(root.handlers[0].formatter, JsonFormatter)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
