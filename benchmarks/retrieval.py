"""Side-by-side top-k retrieval on synthetic SPLADE-tiny collections of 1M documents: the DiSCo reference scorer,
scipy, the project's numba index (exhaustive, pruned, quantised) and PISA. Prints JSON on stdout (progress and
library logs go to stderr), with the machine it ran on (CPU, cache sizes, measured memory bandwidth, the
scorer's machine-chosen settings) and the issue's targets.

    python benchmarks/retrieval.py --quick          # 1M docs, independent collection, 4 queries per type, 2 repeats
    python benchmarks/retrieval.py                  # 1M docs, both collections, 10 queries per type, 3 repeats
    python benchmarks/retrieval.py --sizes 100000 1000000 --queries 20 --k 1000 100
    python benchmarks/retrieval.py --collections independent --pisa-max-docs 1000000 --queries 10 --repeat 2
                                                    # PISA at 1M too (its Python-side indexing takes minutes)

(2 cores; the first run also encodes ~630 passages and 190 queries with SPLADE-tiny, ~15 s, cached in
``$DISCO_BENCH_CACHE`` or the temp folder; generating a 1M collection takes 20-80 s.)

Collections (``_synthetic``): ``independent`` draws documents from the statistics of real SPLADE-tiny passage
vectors (lengths, term document frequencies, weights per df band), every weight independently; ``topical``
mixes the terms of two real passage vectors per document with such background terms (see ``FLATTERY`` in
``_retrieval_report.py`` for what each flatters). Queries are real SPLADE-tiny vectors of the 95 iKAT 2023 train
turns: "short" = the human rewrite, "long" = the conversation context ``q_n [SEP] a_{n-1} ... q_1`` (256
tokens); ``--queries N`` of each, spread evenly over the turns.

Systems (each returns the top k of one query at a time):

- ``reference_t1`` / ``reference_t2``: naver/splade's ``SparseRetrieval`` scorer used by DiSCo (``_reference.py``)
  with 1 / 2 numba threads;
- ``scipy`` (not with ``--quick``): the query row (CSR) times the term-major document matrix, argpartition + sort;
- ``numba_index_t1`` / ``_t2``: ``pyterrier_disco.index._scoring.search`` over ``index_from_csr``, exhaustive;
- ``numba_pruned_t1`` / ``_t2``: the same with exact block-max pruning (``prune=True``), which prunes a block only
  where its cost model expects a gain and otherwise scores it exhaustively; the pruned share is reported;
- ``quantized_t1`` / ``_t2``: the 8-bit index (``quantized=True``), exhaustive; top-k overlap with the exact one;
- ``pisa_<algorithm>``: pyterrier-pisa's quantised index (``toks_indexer``, scale 100) with block-max WAND,
  MaxScore and ranked_or, timed at ``_pisathon.retrieve``, up to ``--pisa-max-docs`` documents (default 0).

Each round runs every system on the same query in a rotating order, after a warm-up (numba compilation, page
cache). Latencies are in ms (median, p90, min, n over queries x repeats). Exactness compares each system's top k
with the reference's (``_retrieval_report.compare``). Targets: at the largest size of the independent collection
(the issue's configuration), long queries top 1000: the numba index >= 2x the reference on one thread and >= 3.5x
on two, identical; short queries top 100 and top 1000: the pruned index >= 3x; quantised top-100 overlap >= 0.99.
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _synthetic  # noqa: E402
from _retrieval_report import (FLATTERY, bandwidth, exactness, overlap, pisa_vs_exact,  # noqa: E402
                               pruning_summary, targets)
from _retrieval_systems import (PISA_ALGORITHMS, describe_queries, json_stdout, measured,  # noqa: E402
                                numba_systems, pisa_system, pisa_transformer_overhead_ms, prepare_queries,
                                reference_breakdown, reference_system, scipy_system, timed)
from _stats import machine, summary  # noqa: E402

GENERATORS = {"independent": _synthetic.generate, "topical": _synthetic.generate_topical}
log = _synthetic.log


# -- measuring ------------------------------------------------------------------------------------------

def warm_up(systems: dict, queries, ks) -> None:
    for run in systems.values():
        for qs in queries.values():
            for q in qs[:2]:
                for k in ks:
                    run(q, k)


def time_all(systems: dict, queries, ks, repeat: int):
    """Interleaved, rotating-order timing. Returns (seconds[system][kind][k] lists, the calling thread's CPU
    seconds likewise, first results results[system][kind][k][query] = (ids, scores))."""
    labels = list(systems)
    times = {s: {kind: {k: [] for k in ks} for kind in queries} for s in labels}
    cpu = {s: {kind: {k: [] for k in ks} for kind in queries} for s in labels}
    results = {s: {kind: {k: [None] * len(qs) for k in ks} for kind, qs in queries.items()} for s in labels}
    turn = 0
    for r in range(repeat):
        for kind, qs in queries.items():
            for i, q in enumerate(qs):
                for k in ks:
                    for s in labels[turn % len(labels):] + labels[:turn % len(labels)]:
                        c0 = time.thread_time()
                        seconds, ids, scores = systems[s](q, k)
                        cpu[s][kind][k].append(time.thread_time() - c0)
                        times[s][kind][k].append(seconds)
                        if r == 0:
                            results[s][kind][k][i] = (np.asarray(ids, np.int64), np.asarray(scores, np.float64))
                    turn += 1
        log(f"  repeat {r + 1}/{repeat} done")
    return times, cpu, results


# -- one collection at one size -----------------------------------------------------------------------------

def bench_collection(name: str, n_docs: int, args, stats, queries, bandwidth_gbs, tmp: Path) -> dict:
    t_start = time.perf_counter()
    log(f"[{name} {n_docs} docs] generating ...")
    docs, gen = measured(lambda: GENERATORS[name](stats, n_docs, args.seed))
    vocab = [str(t) for t in stats["vocab"]]
    df = np.bincount(docs.indices, minlength=docs.shape[1])
    postings = {kind: [int(df[q.terms].sum()) for q in qs] for kind, qs in queries.items()}
    builds, systems = {}, {}
    log(f"[{name} {n_docs} docs] building the reference and numba indexes ...")
    builds["reference"], s, reference = reference_system(docs)
    systems.update(s)
    if not args.quick:
        builds["scipy"], s = scipy_system(docs)
        systems.update(s)
    infos, s, index_arrays, prune_stats = numba_systems(docs, vocab, tmp / f"{name}_{n_docs}")
    builds.update(infos)
    systems.update(s)
    pisa = n_docs <= args.pisa_max_docs
    if pisa:
        log(f"[{name} {n_docs} docs] building the PISA index (Python-side indexing: slow) ...")
        builds["pisa"], retriever, s = pisa_system(docs, vocab, tmp / f"pisa_{name}_{n_docs}", max(args.k))
        systems.update(s)
        builds["pisa"]["transformer_overhead_ms"] = pisa_transformer_overhead_ms(
            retriever, s["pisa_block_max_wand"], queries["short"])
    collection = {"generate_s": gen["build_s"], "generate_rss_delta_bytes": gen["rss_delta_bytes"],
                  **_synthetic.describe(stats, docs)}
    del docs
    log(f"[{name} {n_docs} docs] warming up and timing {len(systems)} systems ...")
    warm_up(systems, queries, args.k)
    load_before = os.getloadavg()[0]
    times, cpu, results = time_all(systems, queries, args.k, args.repeat)
    approximate = [s for s in systems if s.startswith(("pisa_", "quantized_"))]
    exact = [s for s in systems if s not in approximate]
    report = {
        "collection": collection,
        "mean_postings_per_query": {kind: round(float(np.mean(p))) for kind, p in postings.items()},
        "build": builds,
        "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "latency_ms": {s: {kind: {f"top{k}": summary(times[s][kind][k], 1000) for k in args.k}
                           for kind in queries} for s in systems},
        "thread_cpu_ms_one_thread_systems": {
            s: {kind: {f"top{k}": summary(cpu[s][kind][k], 1000)["median"] for k in args.k} for kind in queries}
            for s in systems if s.endswith("_t1") or s == "scipy"},
        "exactness_vs_reference": exactness(results, [s for s in exact if s != "reference_t1"], args.k),
        "overlap_with_exact": overlap(results, approximate, args.k),
        "bandwidth": bandwidth(times, postings, [s for s in systems if not s.startswith(("pisa_", "scipy"))],
                               args.k, bandwidth_gbs),
        "pruning": pruning_summary(prune_stats, postings, args.repeat),
        "numba_index_batch_ms_per_query": batch_throughput(index_arrays, n_docs, queries, max(args.k), args.repeat),
    }
    if not args.quick:
        report["reference_breakdown"] = reference_breakdown(reference, queries, max(args.k), args.repeat)
    report["wall_s"] = round(time.perf_counter() - t_start, 1)
    return report


def batch_throughput(arrays, n_docs: int, queries, k: int, repeat: int) -> dict:
    """ms per query when all queries of a kind go to the numba index as one batch (a pt.Experiment's case):
    with 2 threads each thread takes its own queries; medians over ``repeat`` rounds, threads alternating."""
    from pyterrier_disco.index._scoring import search

    out = {}
    for kind, qs in queries.items():
        batch = [(q.terms, q.weights64) for q in qs]
        seconds = {1: [], 2: []}
        for r in range(repeat + 1):
            for threads in ((1, 2) if r % 2 else (2, 1)):
                elapsed = timed(search, arrays, n_docs, batch, k, threads)
                if r:  # round 0 warms up
                    seconds[threads].append(elapsed)
        out[kind] = {f"threads_{t}": round(float(np.median(v)) / len(batch) * 1000, 3) for t, v in seconds.items()}
    return out


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--collections", nargs="+", choices=list(GENERATORS),
                    help="default: both; with --quick the independent one, on which the targets are defined")
    ap.add_argument("--k", type=int, nargs="+", default=[1000, 100])
    ap.add_argument("--queries", type=int, default=10, help="per query type (95 turns in all)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pisa-max-docs", type=int, default=0, help="run PISA only up to this many docs")
    ap.add_argument("--quick", action="store_true", help="the same 1M-document configuration (the targets' "
                    "independent collection) with 4 queries per type, 2 repeats, no scipy")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.quick:
        args.queries, args.repeat = 4, 2
    args.collections = args.collections or (["independent"] if args.quick else list(GENERATORS))
    return args


def run(args, tmp: Path) -> dict:
    t0 = time.perf_counter()
    stats = _synthetic.load_statistics()
    queries = prepare_queries(stats, args.queries)
    facts = {**machine(), "numba_threads": numba.config.NUMBA_NUM_THREADS}
    log(f"machine: {facts}")
    reports: Dict[str, Dict[int, dict]] = {}
    for name in args.collections:
        reports[name] = {n: bench_collection(name, n, args, stats, queries, facts["memory_bandwidth_gbs"], tmp)
                         for n in args.sizes}
    out = {
        "benchmark": "retrieval",
        "machine": facts,
        "settings": {"sizes": args.sizes, "collections": args.collections, "k": args.k,
                     "queries_per_type": args.queries, "repeat": args.repeat, "seed": args.seed, "quick": args.quick,
                     "pisa_max_docs": args.pisa_max_docs},
        "queries": describe_queries(queries, stats),
        "what_the_collections_flatter": FLATTERY,
        "collections": {name: {str(n): rep for n, rep in sizes.items()} for name, sizes in reports.items()},
        "pisa_vs_exact": {name: pisa_vs_exact(sizes, args.k, PISA_ALGORITHMS) for name, sizes in reports.items()},
        "runtime_s": round(time.perf_counter() - t0, 1),
    }
    if "independent" in reports:
        out["targets"] = targets(reports, args.k)
    else:
        out["targets"] = []
        out["targets_note"] = "the targets are defined on the independent collection, which did not run"
    return out


def _json_scalar(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def main():
    args = parse_args()
    with json_stdout() as out, tempfile.TemporaryDirectory(prefix="disco_retrieval_") as tmp:
        report = run(args, Path(tmp))
        out.write(json.dumps(report, indent=2, default=_json_scalar) + "\n")


if __name__ == "__main__":
    main()
