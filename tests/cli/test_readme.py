"""The README's tenantctl lines name commands and options that exist, and every command is in
the README: the docs cannot drift from the CLI unnoticed. (What each command does is tested
where the command is.)"""

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer.main

from cli.main import app
from tests.command import leaf_commands

README = Path(__file__).resolve().parents[2] / "README.md"
CLI: Any = typer.main.get_command(app)


def _readme_lines() -> Iterator[str]:
    """Each ``tenantctl`` line of the README's shell blocks, without its comment."""
    in_shell = False
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            in_shell = line.strip() == "```sh"
            continue
        command = line.removeprefix("$ ")
        if in_shell and command.startswith("tenantctl "):
            yield re.split(r"\s+#\s", command)[0]


def _segments(line: str) -> Iterator[list[str]]:
    """``show acme | suspend acme`` and ``keys create|list acme ; tenantctl keys revoke``:
    one token list per command written; a segment of options alone (``| --all``) belongs to
    the command before it; ``| ssh host tenantctl import -`` is the import it runs there."""
    previous: list[str] = []
    for part in re.split(r" [|;] ", line):
        tokens = shlex.split(part)
        if tokens[0] == "ssh":
            tokens = tokens[2:]
        if tokens[0] == "tenantctl":
            tokens = tokens[1:]
        elif tokens[0].startswith("-"):
            tokens = previous[:1] + tokens
        previous = tokens
        yield tokens


def _resolve(tokens: list[str]) -> Iterator[tuple[str, Any, list[str]]]:
    """The commands a token list names (``keys create|list`` names two): each one's full name,
    the command, and the tokens after its name."""
    group, rest, prefix = CLI, tokens, ""
    if rest[0].startswith("--"):  # ``tenantctl --version``: an option of tenantctl itself
        assert rest[0] in {opt for param in CLI.params for opt in param.opts}, tokens
        return
    while rest:
        names, rest = rest[0].split("|"), rest[1:]
        found = {name: group.commands.get(name) for name in names}
        assert all(found.values()), f"README names an unknown command in {tokens}"
        first = next(iter(found.values()))
        if hasattr(first, "commands"):  # a group: its subcommand comes next
            group, prefix = first, f"{prefix}{names[0]} "
            continue
        for name, command in found.items():
            yield prefix + name, command, rest
        return


def _long_options(tokens: list[str]) -> set[str]:
    return {t.strip("[]").split("=")[0] for t in tokens if t.strip("[").startswith("--")}


def _written() -> Iterator[tuple[str, str, Any, list[str]]]:
    for line in _readme_lines():
        for tokens in _segments(line):
            for name, command, rest in _resolve(tokens):
                yield line, name, command, rest


def test_every_readme_line_names_real_commands_and_options() -> None:
    written = list(_written())
    assert len(written) > 25
    for line, name, command, rest in written:
        known = {opt for param in command.params for opt in param.opts}
        unknown = _long_options(rest) - known
        assert not unknown, f"{line!r}: {name} has no {sorted(unknown)}"


def test_every_command_is_in_the_readme() -> None:
    missing = {name for name, _ in leaf_commands(CLI)} - {name for _, name, _, _ in _written()}
    assert not missing, f"not in README.md's tenantctl lines: {sorted(missing)}"
