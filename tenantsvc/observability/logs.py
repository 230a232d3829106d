"""Structured JSON logs: one object per line, with the request id and tenant of the request
that logged it. Secrets never reach a log: the service logs no headers and no bodies."""

import logging
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from tenantsvc.observability.context import request_id, tenant_slug

# uvicorn attaches the message again with terminal colour codes, for its own console format;
# in a JSON line it is the same text twice, once with escape sequences in it.
_CONSOLE_ONLY = ("color_message",)
_FORMAT: dict[str, Any] = {
    "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(tenant)s",
    "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
}


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        record.tenant = tenant_slug.get()
        for name in _CONSOLE_ONLY:
            record.__dict__.pop(name, None)
        return True


def json_handler() -> logging.Handler:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(**_FORMAT))
    handler.addFilter(ContextFilter())
    return handler


# Libraries' INFO chatter, not events of the service: alembic announces each plugin it loads
# (seven lines at every start), and the pool its disposal at every stop (a SQLAlchemy pool, but
# under tenantsvc's module name, so outside SQLAlchemy's own WARNING default).
_CHATTY = ("alembic", "tenantsvc.db.affinity")


def _chatter_level(level: str) -> str:
    """DEBUG shows everything; otherwise the chatter needs at least a warning."""
    if level == "DEBUG" or logging.getLevelName(level) > logging.WARNING:
        return level
    return "WARNING"


def uvicorn_log_config(level: str = "INFO") -> dict[str, Any]:
    """For ``uvicorn.run(log_config=...)``: JSON on stdout in every worker process."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {"json": {"()": JsonFormatter, **_FORMAT}},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": "json",
                "filters": ["context"],
            },
        },
        "root": {"handlers": ["stdout"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False, "level": "WARNING"},
            **{name: {"level": _chatter_level(level)} for name in _CHATTY},
        },
    }
