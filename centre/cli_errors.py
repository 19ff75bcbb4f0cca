"""How a command of the `centre` CLI says that it failed."""

from __future__ import annotations

import os
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

err = Console(stderr=True)


def failed(exc: Exception) -> typer.Exit:
    """Print why, in red on stderr; the exit to raise (1: database, 2: keys or input)."""
    from sqlalchemy.exc import SQLAlchemyError

    if isinstance(exc, SQLAlchemyError):
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        err.print(
            f"[red]database error:[/] {escape(detail)} (is the database at the newest "
            "migration? `centre db upgrade` brings it there)",
            soft_wrap=True,
        )
        return typer.Exit(1)
    err.print(f"[red]{escape(str(exc))}[/]", soft_wrap=True)
    return typer.Exit(2)


def load_settings() -> Any:
    """The settings from the environment; a bad variable ends the command (exit 2)."""
    from centre import settings as settings_mod

    try:
        return settings_mod.load()
    except settings_mod.SettingsError as exc:
        err.print(f"[red]configuration error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None


def me() -> str:
    """The login of whoever runs the command (a case handler's actions are recorded by it)."""
    return os.environ.get("USER") or "case-handler"
