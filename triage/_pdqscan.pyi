"""Types of the PDQ candidate scans compiled from triage/_pdqscan.c (see triage/pdq_index.py).

The arguments are read through the buffer protocol (`y*`: bytes or contiguous numpy arrays;
numpy's stubs give arrays `__buffer__` only from Python 3.12). Each scan returns (query no.,
row, distance) as three buffers of native int64 of one length; `scan_hits` reads them.
"""

from typing import Any, TypeAlias

import numpy as np
from typing_extensions import Buffer

_Buffer: TypeAlias = Buffer | np.ndarray[Any, Any]

def main(
    q: _Buffer,
    codes: _Buffer,
    order: _Buffer,
    starts: _Buffer,
    dead: _Buffer,
    n: int,
    cap: int,
    maxd: int,
    one_bit: bool,
    /,
) -> tuple[bytes, bytes, bytes]:
    """Multi-index candidate scan of the main segment."""

def brute(
    q: _Buffer, codes: _Buffer, dead: _Buffer, n: int, maxd: int, /
) -> tuple[bytes, bytes, bytes]:
    """Brute-force scan of a small segment."""
