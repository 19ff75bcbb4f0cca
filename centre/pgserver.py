"""A private PostgreSQL server (Debian's packages) in a directory of its own, for the chaos
test and `centre bench chaos --postgres`, which restart the database mid-stream.

Production points CENTRE_DATABASE_URL at its own server and never touches this module.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from centre.broker import free_port


class PostgresError(RuntimeError):
    """No PostgreSQL server binaries, or the server did not start; the message says which."""


def server_bin() -> Path | None:
    """The newest installed server's bin directory (Debian: /usr/lib/postgresql/N/bin)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


@dataclass
class PrivatePostgres:
    """initdb, start, restart and stop of one throw-away cluster on a free loopback port. As
    root, the server runs as the `postgres` user (PostgreSQL refuses to run as root)."""

    directory: Path
    port: int = 0

    def __post_init__(self) -> None:
        self.bin = server_bin()
        if self.bin is None:
            raise PostgresError(
                "no PostgreSQL server installed (Debian: apt-get install postgresql)"
            )
        self.port = self.port or free_port()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        assert self.bin is not None
        cmd = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise PostgresError(f"{args[0]} failed: {(proc.stdout + proc.stderr)[-1500:]}")

    def start(self) -> None:
        data = self.directory / "data"
        if not data.is_dir():
            self.directory.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                shutil.chown(self.directory, "postgres")
            self._run("initdb", "-D", str(data), "-U", "postgres", "-A", "trust")
        self._pg_ctl("start")

    def _pg_ctl(self, action: str) -> None:
        opts = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.directory} "
            "-c fsync=off -c max_connections=200"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.directory / "data"),
            "-l",
            str(self.directory / "log"),
            "-w",
            "-m",
            "fast",
            "-o",
            opts,
            action,
        )

    def restart(self) -> None:
        """Stop (fast: every connection is cut) and start again on the same port."""
        self._pg_ctl("restart")

    def stop(self) -> None:
        if (self.directory / "data" / "postmaster.pid").exists():
            self._pg_ctl("stop")

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def private_postgres() -> PrivatePostgres:
    """A new, started cluster in a fresh temporary directory (remove() when done)."""
    pg = PrivatePostgres(Path(tempfile.mkdtemp(prefix="centre-pg-")))
    pg.start()
    return pg
