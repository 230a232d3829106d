"""README.md's settings table lists every setting, and only settings that exist, and it names
every metric the service exports: an operator configures and watches a deployment from it."""

import re
from pathlib import Path

from tenantsvc.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _documented() -> set[str]:
    section = README.read_text().split("## Settings", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Z0-9_]+)` \|", section, re.MULTILINE))


def test_the_settings_table_matches_the_settings() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    documented = _documented()
    assert fields - documented == set(), "settings missing from README.md"
    assert documented - fields == set(), "README.md documents settings that do not exist"


def test_every_metric_is_in_the_readme() -> None:
    source = (ROOT / "tenantsvc" / "observability" / "metrics.py").read_text()
    defined = set(re.findall(r'"(tenantsvc_[a-z_]+)"', source))
    assert len(defined) > 5
    assert defined - set(re.findall(r"tenantsvc_[a-z_]+", README.read_text())) == set()
