"""`centre victims …`: tools for case handlers working with a victim's own pictures.

Mounted by the main command line as `app.add_typer(victims_app, name="victims")`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import orjson
import typer

from triage.hashing import HashingError, hash_paths

victims_app = typer.Typer(
    help="Help for victims: work out the fingerprints (hashes) of their pictures and videos "
         "on this computer, so that copies can be found without the pictures leaving it.",
    no_args_is_help=True, add_completion=False, rich_markup_mode="markdown",
)


@victims_app.callback()
def _victims() -> None:
    """Help for victims: work out the fingerprints (hashes) of their pictures and videos on
    this computer, so that copies can be found without the pictures leaving it."""


_HASH_HELP = """Work out the fingerprints (hashes) of pictures and videos, here on this computer.

The pictures and videos never leave this machine. They are only read: they are not copied,
uploaded, converted or changed in any way, and nothing is sent over the network. The only
thing written is a list of their hashes, and only where you say with --out (otherwise it is
shown on the screen).

Give one or more files or folders; folders are searched with all their subfolders. What a
file is comes from its content, not from its name, so a picture called "notes.txt" is still
hashed as a picture.

For each file you get one line with the file's name (without its folder), whether it is a
picture or a video, and its hashes: SHA-256 and MD5, which only match a copy that is exactly
the same file, and for pictures also PDQ, which also matches copies that were resized,
saved again at a different quality or very slightly cut at the edges. PDQ comes with a quality
from 0 to 100: below 50 the picture has too little detail (for example a single colour) for
its PDQ to be used for matching. Videos get SHA-256 and MD5 only.

The list contains the file names, so keep it with the case. Files that are neither a picture
nor a video, or cannot be read, are reported on the screen with their name and skipped; the
other files are still hashed, and the command then ends with exit code 1."""


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


@victims_app.command("hash", help=_HASH_HELP, no_args_is_help=True)
def hash_command(
    paths: Annotated[list[Path], typer.Argument(
        help="pictures, videos, or folders containing them")],
    out: Annotated[Optional[Path], typer.Option(
        "--out", metavar="FILE",
        help="write the list of hashes to this file instead of the screen")] = None,
) -> None:
    skip: list[Path] = []
    if out is not None:
        out_real = Path(os.path.realpath(out))
        for p in paths:
            p_real = Path(os.path.realpath(p))
            if out_real == p_real or (out.exists() and p.is_dir() and _inside(out_real, p_real)):
                typer.echo(f"error: --out {out} would overwrite a file that is to be hashed; "
                           "choose a new file name outside the folders given", err=True)
                raise typer.Exit(2)
        skip.append(out)  # a new output file inside a folder given is not hashed itself
        try:
            sink = open(out, "wb")
        except OSError as exc:
            typer.echo(f"error: cannot write --out {out}: {exc.strerror or exc}", err=True)
            raise typer.Exit(2) from None
    else:
        sink = None

    hashed = failed = 0
    try:
        for result in hash_paths(paths, skip=skip):
            if isinstance(result, HashingError):
                failed += 1
                typer.echo(f"error: {result.path}: {result.reason}", err=True)
                continue
            hashed += 1
            line = orjson.dumps(result) + b"\n"
            if sink is not None:
                sink.write(line)
                sink.flush()
            else:
                sys.stdout.write(line.decode())
                sys.stdout.flush()
    finally:
        if sink is not None:
            sink.close()

    if hashed == 0 and failed == 0:
        typer.echo("error: no files found in: " + ", ".join(str(p) for p in paths), err=True)
        raise typer.Exit(1)
    typer.echo(f"{hashed} file(s) hashed, {failed} could not be"
               + (f"; hashes written to {out}" if out is not None else ""), err=True)
    if failed:
        raise typer.Exit(1)
