"""Structured logs: one JSON object per line on stderr.

Fields passed with ``extra={...}`` become keys of the line; the request id and
the control id of the message being handled are added by
:class:`huizhen.request_id.LogContext`. Patient data is never passed to a
logger, except under keys starting with ``phi_``, which are dropped unless the
``log_patient_data`` setting is on (off by default, like Google's MLLP adapter).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

from huizhen.request_id import LogContext

_STD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}
PHI_PREFIX = "phi_"
# a WebSocket's bearer token travels as ?token= (browsers cannot set its headers); uvicorn logs the path
_TOKEN_IN_URL = re.compile(r"([?&]token=)[^&\s\"']+")


class JsonFormatter(logging.Formatter):
    def __init__(self, *, patient_data: bool = False) -> None:
        super().__init__()
        self.patient_data = patient_data

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": _TOKEN_IN_URL.sub(r"\1[redacted]", record.getMessage()),
        }
        line.update(
            {k: v for k, v in record.__dict__.items()
             if k not in _STD and (self.patient_data or not k.startswith(PHI_PREFIX))}
        )
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(level: str = "INFO", *, patient_data: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(patient_data=patient_data))
    handler.addFilter(LogContext())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
