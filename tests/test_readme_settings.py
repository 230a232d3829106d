"""README.md's settings table lists every setting, and only settings that exist: an operator
reads it to configure a deployment."""

import re
from pathlib import Path

from tenantsvc.settings import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def _documented() -> set[str]:
    section = README.read_text().split("## Settings", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Z0-9_]+)` \|", section, re.MULTILINE))


def test_the_settings_table_matches_the_settings() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    documented = _documented()
    assert fields - documented == set(), "settings missing from README.md"
    assert documented - fields == set(), "README.md documents settings that do not exist"
