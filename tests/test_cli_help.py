"""Help teaches and matches the code: every option a help text names exists."""

import re

import typer

from gpubench.cli import app


def _commands(command, path: str = "gpubench"):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():  # a group's subcommands
        yield from _commands(sub, f"{path} {name}")


def test_every_option_a_help_text_names_exists():
    commands = list(_commands(typer.main.get_command(app)))
    options = {opt for _, c in commands for p in c.params for opt in (*p.opts, *p.secondary_opts)}
    for path, command in commands:
        texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
        named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", " ".join(texts)))
        assert named <= options, f"{path}: help names {sorted(named - options)}"
