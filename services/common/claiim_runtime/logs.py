"""How a claiim process logs: ``CLAIIM_LOG_FORMAT`` ``text`` (one line a record, for people) or
``json`` (one JSON object a line, for collectors), at ``CLAIIM_LOG_LEVEL``.

A JSON record has ``time`` (RFC 3339, UTC), ``level``, ``logger``, ``service`` (what the process
runs: ``gate``, ``chron``, ``up``, ...), ``message`` and, where the code knows them, ``org``,
``agent`` and ``chron_id`` (passed as ``extra``), and ``exception`` with the traceback. Tokens
are never logged, in either format.
"""

from __future__ import annotations

import json
import logging
import time

from claiim_runtime.settings import Settings

FIELDS = ("org", "agent", "chron_id")
"""What a log call may add with ``extra=``; nothing else is copied from a record."""
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "service": self._service,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value:
                entry[name] = str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(settings: Settings, service: str) -> None:
    """Send every record of this process to stderr in the configured format and level."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(service) if settings.log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
