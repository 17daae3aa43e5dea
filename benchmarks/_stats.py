"""Shared reporting helpers: latency summaries, the ``targets`` entries and the machine every benchmark prints."""
import contextlib
import functools
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np


def summary(seconds: Sequence[float], scale: float = 1.0, digits: int = 3) -> dict:
    """Median, p90, min and count of timings (multiplied by ``scale``, e.g. 1000 for milliseconds)."""
    values = np.asarray(seconds, dtype=float) * scale
    return {"median": round(float(np.median(values)), digits), "p90": round(float(np.percentile(values, 90)), digits),
            "min": round(float(values.min()), digits), "n": int(len(values))}


def target(name: str, ratio: float, required: float, detail: str = "", extra_ok: bool = True) -> dict:
    """One entry of the top-level ``targets`` list; ``extra_ok`` carries a side condition (e.g. a tolerance)."""
    return {"name": name, "ratio": round(float(ratio), 2), "target": required,
            "met": bool(ratio >= required and extra_ok), "detail": detail}


@functools.lru_cache(maxsize=1)
def machine() -> dict:
    """The machine the figures belong to: CPU model and vendor, cores, L1d / L2 (per core) and L3 sizes, AVX-512 /
    AVX2, the measured memory bandwidth, and the scorer settings chosen from these facts."""
    from pyterrier_disco.index._machine import machine as facts, settings

    out = {**facts(), "python": platform.python_version(), "memory_bandwidth_gbs": memory_bandwidth_gbs()}
    out["scorer"] = settings()
    return out


def memory_bandwidth_gbs(mib: int = 256, rounds: int = 5) -> float:
    """Best ``np.copyto`` rate of a ``mib`` MiB float32 array (far larger than any L3), counting the read and the
    write, in GB/s."""
    src = np.ones(mib * 2**20 // 4, np.float32)
    dst = np.zeros_like(src)
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return round(2 * src.nbytes / best / 1e9, 2)


def add_pipeline_args(ap) -> None:
    """The options of the benchmarks that run a query pipeline over an index."""
    ap.add_argument("--student", help="a DiSCo student folder")
    ap.add_argument("--index", help="an existing index folder (default: index the dataset's passages)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")


def print_report(run: Callable, args) -> None:
    """``run(args, tmp_folder)`` with library output sent to stderr; its report as JSON on stdout."""
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        report = run(args, Path(tmp))
    print(json.dumps(report, indent=2))
