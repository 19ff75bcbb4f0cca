"""Kafka work done in a child process, for a parent that must outlive the broker.

librdkafka can abort the whole process it runs in (an assertion, or a client destroyed while
its broker restarts). The supervisor of the local stack (`centre up`) must outlive whatever
it supervises, the broker included, so it holds no Kafka client at all: the few questions it
asks the broker (is it up, make the topics, have the workers joined their groups) are asked
by a short-lived child process each. A child that dies is a failed question, asked again.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, TypeVar

T = TypeVar("T")


class ChildDied(RuntimeError):
    """The child process asking the broker died without an answer (an abort, a kill)."""


def _child(conn: Connection, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        result: tuple[bool, Any] = (True, fn(*args))
    except BaseException as exc:  # handed to the parent, which raises it there
        result = (False, exc)
    try:
        conn.send(result)
    except Exception as exc:  # an answer that does not pickle
        conn.send((False, RuntimeError(f"{type(exc).__name__}: {exc}")))
    conn.close()


def call(fn: Callable[..., T], *args: Any, timeout: float) -> T:
    """`fn(*args)` in a fresh child process (spawned, so it shares no library state with
    this one); its exception is raised here. ChildDied when the child dies, TimeoutError when
    it has not answered within `timeout` seconds (it is killed)."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args), daemon=True)
    proc.start()
    child.close()
    try:
        if not parent.poll(timeout):
            raise TimeoutError(
                f"{getattr(fn, '__name__', fn)} gave no answer within {timeout:.0f}s"
            )
        try:
            ok, value = parent.recv()
        except EOFError:
            proc.join(5)
            raise ChildDied(
                f"{getattr(fn, '__name__', fn)}: the child process died (exit {proc.exitcode})"
            ) from None
    finally:
        parent.close()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()
    if ok:
        return value  # type: ignore[no-any-return]
    raise value
