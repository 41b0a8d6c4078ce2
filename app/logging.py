"""JSON logs with the request id; never personal data (only ids, counts and types)."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from app.middleware import request_id_var

# `color_message`: uvicorn's coloured copy of the message.
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}
# Every logger that writes to the process's output goes through the JSON formatter: uvicorn's
# own ("Exception in ASGI application" comes with the traceback of a database error, whose
# message quotes the row) and the root logger (libraries, the worker's job runner). The app
# factory calls this in every serving process, after uvicorn set up its loggers.
ROUTED_LOGGERS = ("esis_sync", "uvicorn", "uvicorn.error", "uvicorn.access", "")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = request_id_var.get()
        if rid is not None:
            out["request_id"] = rid
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            # The type only: exception messages can quote personal data.
            out["error_type"] = record.exc_info[0].__name__
        return json.dumps(out, default=str)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ROUTED_LOGGERS:
        logger = logging.getLogger(name or None)
        if name:
            logger.handlers[:] = [handler]
            logger.propagate = False  # written once, through their own handler
        elif not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
            logger.addHandler(handler)  # the root keeps what else is attached (pytest's)
    logging.getLogger("esis_sync").setLevel(level)
    # Libraries only from WARNING: httpx, for one, logs every request it makes at INFO.
    logging.getLogger().setLevel(logging.WARNING)
