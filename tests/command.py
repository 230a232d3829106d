"""The installed ``tenantctl`` in a process of its own, as an operator runs it: its exit code
and its own stderr (Typer's CliRunner mixes them, and frames usage errors in a panel)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TENANTCTL = [sys.executable, "-m", "cli.main"]


def tenantctl_process(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TENANTCTL, *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, check=False)  # fmt: skip
