"""The installed ``tenantctl`` in a process of its own, as an operator runs it: its exit code
and its own stderr (Typer's CliRunner mixes them, and frames usage errors in a panel)."""

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TENANTCTL = [sys.executable, "-m", "cli.main"]


def tenantctl_process(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TENANTCTL, *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, check=False)  # fmt: skip


def leaf_commands(group: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every command under ``group`` as click runs it (Typer's build of the app): its full
    name (``keys rotate``) and the command."""
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from leaf_commands(command, f"{prefix}{name} ")
        else:
            yield prefix + name, command
