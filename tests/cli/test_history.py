"""tenantctl history: every change to a tenant, whoever made it and however, in order."""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cli.common import duration, spoken
from tenantsvc.tenancy.doctor import AUDITED
from tenantsvc.tenancy.history import Event
from tests.cli.test_cli import tenantctl, use_database
from tests.cli.test_lifecycle_cli import _scalar, fresh_cli
from tests.tenancy.revisions import add_sku_revision

__all__ = ["fresh_cli"]  # the fixture, used here by name


def _trail(slug: str | None = None) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = tenantctl("history", *([slug] if slug else []), "--json")
    return events[::-1]  # oldest first


def test_every_change_is_in_the_trail_with_who_made_it(
    fresh_cli: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENANTSVC_ACTOR", "deploy-bot run 42")
    use_database(monkeypatch, fresh_cli)
    first_key = tenantctl("create", "audited", "--name", "Audited", "--json")["key_id"]
    key = tenantctl("keys", "create", "audited", "--expires-in", "1d", "--json")["key_id"]
    tenantctl("keys", "revoke", "audited", str(key))
    for command in ("suspend", "read-only", "resume"):
        tenantctl(command, "audited")
    tenantctl("rename", "audited", "--name", "Audited Ltd")
    old, new = add_sku_revision(tmp_path, monkeypatch)
    tenantctl("migrate-all")
    tenantctl("drop", "audited", "--yes")
    tenantctl("restore", "audited")
    tenantctl("drop", "audited", "--purge", "--yes")
    trail = _trail("audited")
    assert [(e["action"], e["detail"].get("from"), e["detail"].get("to")) for e in trail] == [
        ("created", None, None), ("key_created", None, None), ("key_created", None, None),
        ("key_revoked", None, None), ("status", "active", "suspended"),
        ("status", "suspended", "read_only"), ("status", "read_only", "active"),
        ("renamed", "Audited", "Audited Ltd"), ("migrated", old, new),
        ("status", "active", "archived"), ("status", "archived", "active"), ("purged", None, None),
    ]  # fmt: skip
    assert [e["detail"]["key_id"] for e in trail[1:4]] == [first_key, key, key]
    assert trail[2]["detail"]["expires_at"] is not None
    assert {e["actor"] for e in trail} == {"tenantctl deploy-bot run 42"}
    assert [e["id"] for e in trail] == sorted(e["id"] for e in trail)
    assert _trail() == trail  # the fleet's trail holds the same, a purged tenant's included


def test_changes_made_outside_tenantctl_are_recorded_too(
    fresh_cli: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TENANTSVC_ACTOR", raising=False)
    tenantctl("create", "direct")
    by_hand = ("WITH named AS (SELECT set_config('application_name', 'dba console', true)) "
               "UPDATE tenantsvc.tenants SET status = 'suspended' "
               "WHERE slug = 'direct' AND EXISTS (SELECT FROM named)")  # fmt: skip
    _scalar(fresh_cli, by_hand)
    created, _first_key, suspended = _trail("direct")
    assert created["actor"].startswith("tenantctl ")
    assert "@" in created["actor"]  # user@host
    assert (suspended["action"], suspended["actor"]) == ("status", "dba console")
    assert suspended["db_user"] == created["db_user"] != ""


def test_one_update_of_name_and_status_is_two_events(fresh_cli: str) -> None:
    tenantctl("create", "both")
    _scalar(fresh_cli, "UPDATE tenantsvc.tenants SET name = 'B', status = 'suspended'")
    changed = [(e["action"], e["detail"]) for e in _trail("both")][2:]
    assert changed == [("renamed", {"from": "both", "to": "B"}),
                       ("status", {"from": "active", "to": "suspended"})]  # fmt: skip


def test_a_change_that_rolls_back_leaves_no_event(fresh_cli: str) -> None:
    tenantctl("create", "kept")
    with pytest.raises(Exception, match="status_known"):  # the status check refuses it
        _scalar(fresh_cli, "UPDATE tenantsvc.tenants SET name = 'x', status = 'bogus'")
    assert [e["action"] for e in _trail("kept")] == ["created", "key_created"]


def test_history_since(fresh_cli: str) -> None:
    tenantctl("create", "old")
    _scalar(fresh_cli, "UPDATE tenantsvc.tenant_events SET at = at - interval '3 days'")
    assert tenantctl("history", "old", "--since", "2d", "--json") == []  # a quiet tenant
    assert tenantctl("history", "old", "--since", "2d").stdout == (
        "no events for old in the last 2 days\n"
    )
    tenantctl("suspend", "old")
    recent = tenantctl("history", "old", "--since", "2d", "--json")
    assert [e["action"] for e in recent] == ["status"]
    assert len(tenantctl("history", "old", "--since", "4d", "--json")) == 3
    tenantctl("history", "--since", "2 days", code=2)
    said = [spoken(duration(v)) for v in ("1m", "90m", "12h", "2w")]
    assert said == ["1 minute", "90 minutes", "12 hours", "14 days"]


def test_history_text_limit_and_bad_input(fresh_cli: str) -> None:
    for i in range(3):
        tenantctl("create", f"many{i}")
    text = tenantctl("history", "--limit", "2").stdout
    assert ("many2" in text, "many0" in text) == (True, False)
    assert "created" in text
    assert "error: " in tenantctl("history", "Bad-Slug", code=1).stderr
    # A slug no tenant ever had is a typo, not a tenant with nothing in its trail.
    assert "unknown tenant 'many9'" in tenantctl("history", "many9", code=1).stderr
    tenantctl("history", "--limit", "0", code=2)


def test_doctor_fails_when_the_trail_stops_recording(fresh_cli: str) -> None:
    def audit(code: int) -> dict[str, Any]:
        result = tenantctl("doctor", "--json", code=code)
        checks = result if code == 0 else json.loads(result.stdout)
        found: dict[str, Any] = {c["check"]: c for c in checks}["audit trail"]
        return found

    assert audit(0)["status"] == "ok"
    # Doctor's list is the migrations' triggers, no fewer (a new audited table is checked too).
    audited = _scalar(
        fresh_cli,
        "SELECT array_agg(c.relname::text) FROM pg_trigger g "
        "JOIN pg_class c ON c.oid = g.tgrelid WHERE g.tgname = 'record_event'",
    )
    assert sorted(audited) == sorted(AUDITED)
    _scalar(fresh_cli, "ALTER TABLE tenantsvc.api_keys DISABLE TRIGGER record_event")
    failed = audit(1)
    assert failed["status"] == "fail"
    assert "changes to api_keys are not recorded" in failed["detail"]


def test_history_text_says_each_event_in_a_few_words() -> None:
    def said(action: str, **detail: Any) -> str:
        return Event(1, 1, "t", datetime.now(UTC), action, detail, "a", "u").summary()

    assert said("status", **{"from": "active", "to": "suspended"}) == "active -> suspended"
    ends = "2026-12-01T10:00:00+00:00"
    assert said("key_created", key_id=4, prefix="tsk_ab", expires_at=None) == "key 4 (tsk_ab)"
    assert said("key_expiry", key_id=4, prefix="tsk_ab", to=ends, **{"from": None}) == (
        "key 4 (tsk_ab), ends 2026-12-01T10:00"
    )
    assert said("purged", schema="tenant_t") == "schema tenant_t"
