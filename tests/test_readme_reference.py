"""README.md's settings table lists every setting, and only settings that exist; it names every
metric the service exports and every endpoint it serves: operators and clients work from it."""

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


def test_every_endpoint_is_in_the_readme() -> None:
    from tenantsvc.main import create_app

    section = README.read_text().split("\n## API", 1)[1].split("\n## ", 1)[0]
    endpoint = r"`(GET|POST|PATCH|DELETE|PUT) (/[^`?\s]*)"
    written = {" ".join(found) for found in re.findall(endpoint, section)}
    paths = create_app().openapi()["paths"]
    served = {f"{method.upper()} {re.sub(r'{[a-z_]+}', '{id}', path)}"
              for path, operations in paths.items() if path not in ("/healthz", "/readyz")
              for method in operations}  # fmt: skip
    assert len(served) > 10
    assert served - written == set(), "endpoints missing from README.md's API section"
