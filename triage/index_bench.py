"""Benchmark of PDQIndex: build time, memory, per-query latency, batched throughput and recall
against brute force, on random 256-bit codes.

    python -m triage.index_bench --sizes 1000000 10000000 --queries 10000

Each size runs in a fresh process (so its peak RSS is its own). Query mix: half near-duplicates
of stored codes (0..31 random bits flipped, so each has at least one true match), half random
codes. Uniform random codes spread evenly over the 65,536 buckets of each table; real PDQ
hashes are less even, so buckets (and latency) there can be larger.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing
import resource
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import psutil

from triage.pdq_index import PDQIndex

TARGETS: dict[int, dict[str, float]] = {  # the targets, by index size
    1_000_000: {"build_s": 60.0, "p50_ms": 1.0, "p99_ms": 5.0, "peak_rss_mb": 400.0},
    10_000_000: {"p50_ms": 2.0, "peak_rss_mb": 2048.0},
}
MAX_DISTANCE = 31
MB = 1 << 20


def _rss() -> int:
    return int(psutil.Process().memory_info().rss)


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _log(verbose: bool, msg: str) -> None:
    if verbose:
        print(msg, file=sys.stderr, flush=True)


def make_queries(
    codes: npt.NDArray[np.uint8], count: int, rng: np.random.Generator
) -> npt.NDArray[np.uint8]:
    """`count` queries, shuffled: half stored codes with 0..31 random bits flipped, half random."""
    near = count // 2
    src = codes[rng.integers(0, codes.shape[0], size=near)]
    flips = rng.integers(0, MAX_DISTANCE + 1, size=near)
    ranks = np.argsort(rng.random((near, 256)), axis=1).argsort(axis=1)
    masks = np.packbits(ranks < flips[:, None], axis=1, bitorder="little")  # exactly k bits
    q = np.concatenate([src ^ masks, rng.integers(0, 256, size=(count - near, 32), dtype=np.uint8)])
    return np.ascontiguousarray(q[rng.permutation(count)])


def brute_force(
    codes: npt.NDArray[np.uint8],
    queries: npt.NDArray[np.uint8],
    max_distance: int = MAX_DISTANCE,
    threads: int = 2,
    code_block: int = 4096,
    query_block: int = 32,
) -> set[tuple[int, int]]:
    """Every (query, row) pair within `max_distance`, comparing each query with every code.

    Blocks of codes are shared between threads (numpy releases the GIL in its loops). Within a
    block, words 0 and 1 (128 bits) of every pair are counted; pairs already more than
    `max_distance` apart there cannot match, the rest get their full 256-bit distance.
    """
    c64 = codes.view(np.uint64)
    q64 = queries.view(np.uint64)
    qw0 = np.ascontiguousarray(q64[:, 0:1])
    qw1 = np.ascontiguousarray(q64[:, 1:2])
    nq = queries.shape[0]

    def run(block_nos: range) -> set[tuple[int, int]]:
        found: set[tuple[int, int]] = set()
        x = np.empty((query_block, code_block), dtype=np.uint64)
        a = np.empty((query_block, code_block), dtype=np.uint8)
        b = np.empty_like(a)
        m = np.empty((query_block, code_block), dtype=np.bool_)
        for bn in block_nos:
            lo = bn * code_block
            blk = c64[lo : lo + code_block]
            w0 = np.ascontiguousarray(blk[:, 0])
            w1 = np.ascontiguousarray(blk[:, 1])
            width = w0.size
            for qlo in range(0, nq, query_block):
                h = min(query_block, nq - qlo)
                xs, as_, bs, ms = x[:h, :width], a[:h, :width], b[:h, :width], m[:h, :width]
                np.bitwise_xor(qw0[qlo : qlo + h], w0, out=xs)
                np.bitwise_count(xs, out=as_)
                np.bitwise_xor(qw1[qlo : qlo + h], w1, out=xs)
                np.bitwise_count(xs, out=bs)
                np.add(as_, bs, out=as_)
                np.less_equal(as_, max_distance, out=ms)
                if ms.any():
                    qi, j = np.nonzero(ms)
                    qi += qlo
                    j += lo
                    d = np.bitwise_count(c64[j] ^ q64[qi]).sum(axis=1)
                    ok = d <= max_distance
                    found.update(zip(qi[ok].tolist(), j[ok].tolist()))
        return found

    blocks = -(-codes.shape[0] // code_block)
    if blocks == 0 or nq == 0:
        return set()
    with cf.ThreadPoolExecutor(threads) as pool:
        parts = pool.map(run, [range(i, blocks, threads) for i in range(threads)])
        return set().union(*parts)


def _bench_one(n: int, queries: int, seed: int, batch: int, verbose: bool) -> dict[str, Any]:
    rss_start = _rss()
    rng = np.random.default_rng(seed)
    codes = np.frombuffer(rng.bytes(n * 32), dtype=np.uint8).reshape(n, 32)
    ids = np.arange(n, dtype=np.int64)
    qs = make_queries(codes, queries, rng)
    q_hex = [bytes(c).hex() for c in qs]
    rss_data = _rss()

    _log(verbose, f"[{n:,}] building")
    t0 = time.perf_counter()
    index = PDQIndex.build(ids, codes, MAX_DISTANCE)
    build_s = time.perf_counter() - t0
    rss_built = _rss()
    peak_build = _peak_rss()

    _log(verbose, f"[{n:,}] {queries:,} single queries")
    for h in q_hex[:100]:  # warm-up
        index.query([h])
    lat = np.empty(queries, dtype=np.float64)
    single: list[list[tuple[int, int]]] = []
    clock = time.perf_counter
    for i, h in enumerate(q_hex):
        t = clock()
        r = index.query([h])
        lat[i] = clock() - t
        single.append(r[0])
    lat_ms = lat * 1e3

    _log(verbose, f"[{n:,}] batched queries of {batch}")
    t0 = time.perf_counter()
    batched: list[list[tuple[int, int]]] = []
    for lo in range(0, queries, batch):
        batched.extend(index.query(qs[lo : lo + batch]))
    batch_s = time.perf_counter() - t0
    rss_queried = _rss()
    peak_index = _peak_rss()

    _log(verbose, f"[{n:,}] brute force")
    t0 = time.perf_counter()
    truth = brute_force(codes, qs)
    brute_s = time.perf_counter() - t0
    got = {(qi, rid) for qi, r in enumerate(single) for rid, _d in r}  # ids are rows here
    c64, q64 = codes.view(np.uint64), qs.view(np.uint64)
    distances_ok = all(
        d == int(np.bitwise_count(c64[rid] ^ q64[qi]).sum())
        for qi, r in enumerate(single)
        for rid, d in r
    )
    near_half = int(np.count_nonzero([bool(r) for r in single]))
    return {
        "size": n,
        "queries": queries,
        "build_s": build_s,
        "nbytes_mb": index.nbytes / MB,
        "rss_start_mb": rss_start / MB,
        "rss_data_mb": rss_data / MB,  # after generating the codes (n * 32 B) and queries
        "rss_after_build_mb": rss_built / MB,
        "index_rss_mb": (rss_built - rss_data) / MB,
        "rss_after_queries_mb": rss_queried / MB,
        "peak_rss_build_mb": peak_build / MB,
        "peak_rss_mb": peak_index / MB,  # through build and all queries, before brute force
        "peak_index_rss_mb": (peak_index - rss_data) / MB,
        "p50_ms": float(np.percentile(lat_ms, 50)),
        "p90_ms": float(np.percentile(lat_ms, 90)),
        "p99_ms": float(np.percentile(lat_ms, 99)),
        "max_ms": float(lat_ms.max()),
        "mean_ms": float(lat_ms.mean()),
        "single_qps": queries / float(lat.sum()),
        "batch": batch,
        "batch_qps": queries / batch_s,
        "batch_equals_single": batched == single,
        "queries_with_match": near_half,
        "true_pairs": len(truth),
        "found_pairs": len(got),
        "recall": len(got & truth) / len(truth) if truth else 1.0,
        "false_positives": len(got - truth),
        "distances_ok": distances_ok,
        "brute_s": brute_s,
    }


def run_index_bench(
    sizes: Sequence[int] = (1_000_000, 10_000_000),
    queries: int = 10_000,
    seed: int = 0,
    *,
    batch: int = 500,
    isolate: bool = True,
    verbose: bool = False,
) -> list[dict[str, Any]]:
    """One row of figures per index size (see `_bench_one` for the keys). With `isolate`, each
    size runs in a fresh spawned process so its RSS figures are its own."""
    rows = []
    for n in sizes:
        if isolate:
            ctx = multiprocessing.get_context("spawn")
            with cf.ProcessPoolExecutor(1, mp_context=ctx) as pool:
                rows.append(pool.submit(_bench_one, n, queries, seed, batch, verbose).result())
        else:
            rows.append(_bench_one(n, queries, seed, batch, verbose))
    return rows


def _check(row: dict[str, Any], key: str, text: str) -> str:
    limit = TARGETS.get(row["size"], {}).get(key)
    if limit is None:
        return text
    return f"[green]{text}[/]" if row[key] <= limit else f"[red]{text}[/] (> {limit:g})"


def print_index_bench(rows: list[dict[str, Any]]) -> None:
    """The figures as a rich table; targeted figures green when met, red when missed."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"PDQIndex, distance <= {MAX_DISTANCE}")
    table.add_column("")
    for r in rows:
        table.add_column(f"{r['size']:,} hashes", justify="right")

    def line(label: str, key: str, fmt: str, checked: bool = False) -> None:
        cells = []
        for r in rows:
            text = format(r[key], fmt)
            cells.append(_check(r, key, text) if checked else text)
        table.add_row(label, *cells)

    line("build (s)", "build_s", ".1f", True)
    line("index arrays, nbytes (MB)", "nbytes_mb", ".0f")
    line("RSS added by building (MB)", "index_rss_mb", ".0f")
    line("RSS before building (codes, queries) (MB)", "rss_data_mb", ".0f")
    line("peak RSS during build (MB)", "peak_rss_build_mb", ".0f")
    line("peak RSS of the process (MB)", "peak_rss_mb", ".0f", True)
    line("peak RSS minus codes and queries (MB)", "peak_index_rss_mb", ".0f")
    line("single query p50 (ms)", "p50_ms", ".3f", True)
    line("single query p90 (ms)", "p90_ms", ".3f")
    line("single query p99 (ms)", "p99_ms", ".3f", True)
    line("single query max (ms)", "max_ms", ".2f")
    line("single queries/s", "single_qps", ",.0f")
    line("batched queries/s", "batch_qps", ",.0f")
    line("queries", "queries", ",")
    line("queries with a match", "queries_with_match", ",")
    line("true pairs (brute force)", "true_pairs", ",")
    table.add_row(
        "recall",
        *[
            f"[green]{r['recall']:.4%}[/]" if r["recall"] == 1.0 else f"[red]{r['recall']:.4%}[/]"
            for r in rows
        ],
    )
    line("false positives", "false_positives", ",")
    table.add_row(
        "distances exact, batch = single",
        *[f"{r['distances_ok']}, {r['batch_equals_single']}" for r in rows],
    )
    line("brute force (s)", "brute_s", ".1f")
    Console().print(table)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    p.add_argument("--queries", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=500)
    a = p.parse_args(argv)
    rows = run_index_bench(a.sizes, a.queries, a.seed, batch=a.batch, verbose=True)
    print_index_bench(rows)


if __name__ == "__main__":
    main()
