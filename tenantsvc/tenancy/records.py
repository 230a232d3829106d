"""The registry's records (tenants, keys, events, usage) as tenantctl's ``--json`` gives them."""

from dataclasses import asdict
from datetime import date
from typing import Any


def as_json(record: Any) -> dict[str, Any]:
    """A dataclass's fields, dates and times as ISO 8601 strings."""
    return {k: v.isoformat() if isinstance(v, date) else v for k, v in asdict(record).items()}
