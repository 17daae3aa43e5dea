"""Streaming indexing of a large synthetic collection and memory-mapped loading. Prints JSON.

    python benchmarks/scale.py [--docs 1000000] [--quick]
    python benchmarks/scale.py --shards 4 --shard-docs 250000 [--cpus 2]   # sharded, on Ray (see _sharded.py)

Documents (synthetic SPLADE-tiny-like, ``_synthetic.generate``) are produced 50,000 at a time and fed as
``{"docno", "toks"}`` records to the public streaming indexer, so the collection never sits in memory. A
thread samples the process's resident memory; peak memory is reported above the baseline before indexing.
The index is then opened (its arrays memory-mapped) and queried with real long conversational queries.
"""
import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

import _synthetic
from _stats import machine, summary, target
from pyterrier_disco import SparseIndex
from pyterrier_disco.index._scoring import search

BLOCK = 50_000


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Samples resident memory every 20 ms while active."""

    def __enter__(self):
        self.baseline = self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def records(stats, terms, timing: dict, start: int, stop: int):
    """Synthetic documents ``start <= i < stop`` as indexer records, generated block by block (generation time
    kept apart); block ``b`` is always drawn whole with seed ``b * BLOCK``, so a document is the same whatever
    slice asks for it (the shards of the sharded configuration hold the single index's documents)."""
    for first in range(start - start % BLOCK, stop, BLOCK):
        t0 = time.perf_counter()
        block = _synthetic.generate(stats, BLOCK, seed=first)
        timing["generate_s"] += time.perf_counter() - t0
        for i in range(max(start, first) - first, min(BLOCK, stop - first)):
            lo, hi = block.indptr[i], block.indptr[i + 1]
            yield {"docno": f"d{first + i}", "toks": dict(zip(terms[block.indices[lo:hi]], block.data[lo:hi].tolist()))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="100,000 documents (with --shards: 4 x 25,000)")
    ap.add_argument("--shards", type=int, default=None,
                    help="the sharded configuration: this many shards written by Ray tasks, against one index")
    ap.add_argument("--shard-docs", type=int, default=250_000, help="documents per shard (with --shards)")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster (with --shards)")
    args = ap.parse_args()
    if args.shards:
        from _sharded import run

        print(json.dumps(run(args.shards, 25_000 if args.quick else args.shard_docs, args.cpus), indent=2))
        return
    n_docs = 100_000 if args.quick else args.docs
    stats = _synthetic.load_statistics()
    terms = np.array([f"t{j}" for j in range(len(stats["vocab"]))], dtype=object)
    _synthetic.generate(stats, 10)  # numba compilation outside the timings
    timing = {"generate_s": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index"
        with PeakMemory() as memory:
            t0 = time.perf_counter()
            SparseIndex(path).indexer(verbose=False).index(records(stats, terms, timing, 0, n_docs))
            total_s = time.perf_counter() - t0
        index_s = total_s - timing["generate_s"]
        disk = sum(f.stat().st_size for f in path.iterdir())
        before_load = rss_bytes()
        index = SparseIndex(path)
        arrays, docnos, lexicon = index._load()
        load_growth = rss_bytes() - before_load
        postings_bytes = arrays["doc_ids"].nbytes + arrays["weights"].nbytes
        queries = [(np.array([lexicon[terms[t]] for t in q_terms if terms[t] in lexicon], np.int64), q_w[
            [terms[t] in lexicon for t in q_terms]]) for q_terms, q_w in _synthetic.queries(stats, "long")[:20]]
        latencies = []
        for q in queries:
            t0 = time.perf_counter()
            search(arrays, len(docnos), [q], 1000, threads=1)
            latencies.append(time.perf_counter() - t0)
        memmapped = all(isinstance(arrays[k], np.memmap) for k in ("doc_ids", "weights", "offsets"))
        peak_above = memory.peak - memory.baseline
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        report = {
            "benchmark": "scale", "machine": machine(), "docs": n_docs, "postings": int(len(arrays["doc_ids"])),
            "generate_s": round(timing["generate_s"], 1), "index_s": round(index_s, 1),
            "docs_per_s": round(n_docs / index_s), "index_bytes_on_disk": disk,
            "peak_rss_above_baseline_bytes": peak_above, "machine_ram_bytes": ram,
            "postings_bytes": int(postings_bytes), "memory_mapped": memmapped,
            "rss_growth_on_load_bytes": load_growth,
            "long_query_top1000_ms_first_20_queries_after_load": summary(latencies, 1000, 2),
            "targets": [
                target("streaming indexing: machine RAM / peak RSS of indexing", ram / max(peak_above, 1), 4.0,
                       detail=f"{peak_above / 2**30:.2f} GiB above baseline for {n_docs} documents "
                              f"({postings_bytes / 2**30:.2f} GiB of postings); RAM {ram / 2**30:.1f} GiB"),
                target("memory-mapped load: postings bytes / RSS growth on load", postings_bytes / max(load_growth, 1),
                       10.0, extra_ok=memmapped,
                       detail=f"opening the index grew RSS by {load_growth / 2**20:.1f} MiB for "
                              f"{postings_bytes / 2**20:.0f} MiB of postings; arrays memory-mapped: {memmapped}"),
            ],
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
