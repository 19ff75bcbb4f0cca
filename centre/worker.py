"""`python -m centre.worker STAGE`: one stage's worker process, as the local stack starts it
(and as `centre worker STAGE` runs it). The kernel's own entry point, so that starting a
worker needs nothing above the kernel."""

from __future__ import annotations

import logging
import sys

from centre import settings
from centre.runtime import run_worker


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m centre.worker STAGE")
    logging.basicConfig(level=logging.WARNING)
    run_worker(settings.load(), args[0])


if __name__ == "__main__":
    main()
