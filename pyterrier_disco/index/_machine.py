"""Facts about the CPU the scorer runs on, and the scorer settings chosen from them.

Exhaustive scoring adds each posting's product into a float32 score array; how fast that goes depends on the
machine (``benchmarks/retrieval.py``, ``benchmarks/README.md``), so two settings come from its facts:

- **pass size**: documents are scored a pass at a time, each query term adding its postings in the pass before
  the next pass starts, so the scores being updated stay in the core's L2 cache. A pass holds the largest power
  of two of documents whose scores fill at most half the L2 (the other half holds the postings streaming
  through): 2^18 on a 2 MiB L2 (Intel Xeon, where this was measured best), 2^16 on a 512 KiB L2 (AMD EPYC Zen 3).
- **kernel**: ``"vector"`` adds 16 postings at a time with an AVX-512 gather and scatter (the ids of one posting
  list are distinct, so lanes never collide); ``"scalar"`` adds one posting at a time with software prefetching
  of the posting stream. Rule: vector where the CPU has AVX-512 and is an Intel one (scatter is native and fast
  there: 2.1x the reference on an Intel Xeon); scalar where there is no AVX-512 (LLVM emulates a scatter with
  scalar stores, and the gather costs more than it saves: measured on an AMD EPYC Zen 3). Where the facts do
  not decide (AVX-512 on another vendor, e.g. AMD Zen 4/5 whose scatter is microcoded), a calibration at first
  use times both kernels on a synthetic in-cache workload (about 0.2 s) and keeps the faster; its result is
  cached in the user cache folder, keyed by the CPU model.

``DISCO_KERNEL=vector|scalar`` and ``DISCO_PASS_DOCS=<power of two>`` override the choice (for measurements).
"""
import functools
import json
import os
import platform
import time
from pathlib import Path
from typing import Optional

from .._utils import cpu_caches

CALIBRATION_VERSION = 1


def _sysconf(name: str) -> Optional[int]:
    try:
        value = os.sysconf(name)
    except (ValueError, OSError, AttributeError):
        return None
    return value if value and value > 0 else None


def _cpuinfo(field: str) -> Optional[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


@functools.lru_cache(maxsize=1)
def machine() -> dict:
    """CPU model, vendor, LLVM's name for it, AVX-512 / AVX2, core count and L1d / L2 / L3 sizes in bytes
    (per core for L1/L2; ``None`` where the OS does not say)."""
    import llvmlite.binding as llvm

    caches = cpu_caches()
    features = llvm.get_host_cpu_features()
    return {
        "cpu": _cpuinfo("model name") or platform.processor() or platform.machine(),
        "vendor": _cpuinfo("vendor_id") or "unknown",
        "llvm_cpu": llvm.get_host_cpu_name(),
        "avx512f": bool(features.get("avx512f", False)),
        "avx2": bool(features.get("avx2", False)),
        "cores": os.cpu_count(),
        "l1d_bytes": caches.get(1) or _sysconf("SC_LEVEL1_DCACHE_SIZE"),
        "l2_bytes": caches.get(2) or _sysconf("SC_LEVEL2_CACHE_SIZE"),
        "l3_bytes": caches.get(3) or _sysconf("SC_LEVEL3_CACHE_SIZE"),
    }


def pass_shift(l2_bytes: Optional[int]) -> int:
    """log2 of the documents per pass: their float32 scores fill at most half the L2 (2^15..2^20; 2^18 if unknown)."""
    if not l2_bytes:
        return 18
    return max(15, min(20, (l2_bytes // 8).bit_length() - 1))


def kernel_by_rule(facts: dict) -> Optional[str]:
    """The kernel the machine's facts decide, or ``None`` when they do not (then calibrate)."""
    if not facts["avx512f"]:
        return "scalar"
    if facts["vendor"] == "GenuineIntel":
        return "vector"
    return None


@functools.lru_cache(maxsize=1)
def settings() -> dict:
    """``{"kernel", "pass_shift", "why"}``: the scorer's machine-dependent choices (see the module docstring)."""
    facts = machine()
    shift = pass_shift(facts["l2_bytes"])
    why = [f"pass of 2^{shift} documents from L2 = {facts['l2_bytes']} bytes"]
    if os.environ.get("DISCO_PASS_DOCS"):
        shift = int(os.environ["DISCO_PASS_DOCS"]).bit_length() - 1
        why[0] = f"pass of 2^{shift} documents from DISCO_PASS_DOCS"
    kernel = os.environ.get("DISCO_KERNEL")
    if kernel:
        if kernel not in ("vector", "scalar"):
            raise ValueError(f"DISCO_KERNEL must be 'vector' or 'scalar', got {kernel!r}")
        why.append("kernel from DISCO_KERNEL")
    else:
        kernel = kernel_by_rule(facts)
        if kernel is not None:
            why.append(f"{kernel} kernel: {'Intel with AVX-512' if kernel == 'vector' else 'no AVX-512 scatter'}")
        else:
            kernel = calibrated_kernel(facts, shift)
            why.append(f"{kernel} kernel: calibrated (AVX-512 on {facts['vendor']})")
    return {"kernel": kernel, "pass_shift": shift, "why": "; ".join(why)}


def cache_file() -> Path:
    """Where calibrations are kept: ``kernel.json`` in the user cache folder, one entry per CPU model."""
    from .._utils import cache_dir

    return cache_dir("calibration") / "kernel.json"


def calibrated_kernel(facts: dict, shift: int) -> str:
    """The faster kernel on a synthetic workload, cached per CPU model in the user cache folder."""
    from .._utils import write_json

    key = f"{facts['cpu']}|{facts['llvm_cpu']}|v{CALIBRATION_VERSION}"
    file = cache_file()
    try:
        known = json.loads(file.read_text())
    except (OSError, ValueError):
        known = {}
    if key not in known:
        known[key] = {"kernel": _time_kernels(shift), "when": time.strftime("%Y-%m-%d")}
        write_json(file, known)
    return known[key]["kernel"]


def _time_kernels(shift: int) -> str:
    """Time both kernels (thread CPU time, best of 5, alternating) on random sorted posting lists over one pass."""
    import numpy as np

    from ._kernels import time_kernel

    rng = np.random.default_rng(0)
    n_docs = 1 << min(shift, 16)
    lists = [np.sort(rng.choice(n_docs, size=int(n_docs * df), replace=False)) for df in (0.5, 0.2, 0.05, 0.01)]
    ids = np.concatenate(lists * 8).astype(np.uint16)
    weights = rng.random(len(ids), dtype=np.float32)
    bounds = np.concatenate([[0], np.cumsum([len(x) for x in lists * 8])]).astype(np.int64)
    best = {"vector": float("inf"), "scalar": float("inf")}
    for _ in range(5):
        for kernel in best:
            best[kernel] = min(best[kernel], time_kernel(kernel == "vector", ids, weights, bounds, n_docs))
    return min(best, key=best.get)
