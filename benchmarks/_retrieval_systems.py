"""The systems ``retrieval.py`` compares, each as ``label -> run(query, k) -> (seconds, doc ids, scores)``, and
the real queries they share. See ``retrieval.py`` for what each system is."""
import contextlib
import ctypes
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Tuple

import numba
import numpy as np
import scipy.sparse as sp

import _synthetic
from _reference import ReferenceIndex

PISA_ALGORITHMS = ("block_max_wand", "maxscore", "ranked_or")
PISA_SCALE = 100.0  # pyterrier-pisa's default toks scale, for documents and queries alike


class Query(NamedTuple):
    """One query, prepared for every system beforehand (untimed)."""
    kind: str  # "short" or "long"
    terms: np.ndarray  # int64 vocabulary ids, ascending
    weights: np.ndarray  # float32
    row: sp.csr_matrix  # 1 x vocabulary, for scipy
    weights64: np.ndarray  # float64, for pyterrier_disco.index._scoring.search
    pisa_toks: Dict[str, float]  # term -> weight x PISA_SCALE (what PisaRetrieve.transform passes on)


# -- plumbing ------------------------------------------------------------------------------------------

@contextlib.contextmanager
def json_stdout():
    """Point fd 1 (PISA's C++ logs, stray prints) at stderr; yield a file on the real stdout for the JSON."""
    sys.stdout.flush()
    real = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    try:
        yield real
    finally:
        sys.stdout.flush()
        ctypes.CDLL(None).fflush(None)
        os.dup2(real.fileno(), 1)
        real.close()


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def folder_bytes(path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def measured(build: Callable):
    """(result of ``build()``, {"build_s", "rss_delta_bytes"})."""
    rss0, t0 = rss_bytes(), time.perf_counter()
    obj = build()
    return obj, {"build_s": round(time.perf_counter() - t0, 3), "rss_delta_bytes": rss_bytes() - rss0}


def timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def top_k(ids: np.ndarray, scores: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """The k highest scores, sorted (argpartition, then a sort of the k)."""
    if len(scores) > k:
        part = np.argpartition(-scores, k)[:k]
        ids, scores = ids[part], scores[part]
    order = np.argsort(-scores, kind="stable")
    return ids[order], scores[order]


# -- systems: each is label -> run(query, k) -> (seconds, doc ids, scores) ---------------------------------

def reference_system(docs):
    index, info = measured(lambda: ReferenceIndex(docs))
    info.update(array_bytes=index.nbytes, disk_bytes=None, note="in memory (numba typed dicts)")

    def runner(threads):
        def run(q, k):
            numba.set_num_threads(threads)
            t0 = time.perf_counter()
            ids, scores = index.search(q.terms, q.weights, k)
            return time.perf_counter() - t0, ids, scores
        return run
    return info, {"reference_t1": runner(1), "reference_t2": runner(2)}, index


def reference_breakdown(index: ReferenceIndex, queries, k: int, repeat: int) -> dict:
    """Where the reference's time goes, top ``k``, per query type and thread count (medians, ms)."""
    index.time_parts(queries["long"][0].terms, queries["long"][0].weights, k)  # compiles the diagnostics
    out = {"note": "the steps of numba_score_float + select_topk run apart; accumulate includes np.zeros"}
    for threads in (1, 2):
        numba.set_num_threads(threads)
        for kind, qs in queries.items():
            parts = [index.time_parts(q.terms, q.weights, k) for _ in range(repeat) for q in qs]
            row = {f"{p}_ms": round(1000 * float(np.median([x[p] for x in parts])), 3)
                   for p in ("accumulate", "filter", "select_topk")}
            row["matched_docs_fraction"] = round(float(np.mean([x["matched_docs"] for x in parts])) /
                                                 index.size_collection, 3)
            out[f"{kind}_top{k}_t{threads}"] = row
    return out


def scipy_system(docs):
    by_term, info = measured(lambda: docs.T.tocsr())  # (terms x docs): each row is a posting list
    info.update(array_bytes=by_term.data.nbytes + by_term.indices.nbytes + by_term.indptr.nbytes,
                disk_bytes=None, note="in memory (term-major CSR)")

    def run(q, k):
        t0 = time.perf_counter()
        res = (q.row @ by_term).tocsr()
        ids, scores = top_k(res.indices, res.data, k)
        return time.perf_counter() - t0, ids, scores
    return info, {"scipy": run}


def numba_systems(docs, vocab, folder: Path, quantized: bool = True):
    """The project's index: exhaustive (``prune=False``) and pruned (``prune=True``: :mod:`_pruning` with its
    per-block fallback) on 1 / 2 threads, and the quantised index (exhaustive) on 1 / 2 threads. Returns
    (build infos, systems, exact arrays, pruning counts per query kind and k)."""
    from pyterrier_disco.index import index_from_csr
    from pyterrier_disco.index._scoring import search

    infos, systems, prune_stats = {}, {}, {}
    names = [str(i) for i in range(docs.shape[0])]
    for label, q in (("numba_index", False), ("quantized", True))[:1 + quantized]:
        (arrays, docnos, _), info = measured(
            lambda: index_from_csr(folder / label, docs, names, vocab, quantized=q)._load())
        info.update(array_bytes=sum(int(a.nbytes) for a in arrays.values()), disk_bytes=folder_bytes(folder / label),
                    postings_bytes=int(arrays["doc_ids"].nbytes + arrays["weights"].nbytes),
                    note="index_from_csr" + (", 8-bit weights" if q else "") + ", memory-mapped arrays")
        infos[label] = info
        if not q:
            exact = arrays
        for threads in (1, 2):
            modes = ((label, False), ("numba_pruned", True)) if not q else ((label, False),)
            for name, prune in modes:
                systems[f"{name}_t{threads}"] = _numba_runner(search, arrays, len(docnos), threads, prune, prune_stats)
    return infos, systems, exact, prune_stats


def _numba_runner(search, arrays, n_docs: int, threads: int, prune: bool, prune_stats: dict):
    def run(q, k):
        stats = {} if prune else None
        t0 = time.perf_counter()
        ids, scores, counts = search(arrays, n_docs, [(q.terms, q.weights64)], k, threads=threads, prune=prune,
                                     stats=stats)
        elapsed = time.perf_counter() - t0
        if prune and threads == 1:
            total = prune_stats.setdefault(f"{q.kind}_top{k}", {})
            for key, value in stats.items():
                total[key] = total.get(key, 0) + value
        return elapsed, ids[0, :counts[0]], scores[0, :counts[0]]
    return run


def pisa_system(docs, vocab, folder, k_max: int):
    from pyterrier_pisa import PisaIndex, _pisathon

    def build():
        index = PisaIndex(str(folder), stemmer="none", stops="none")
        index.toks_indexer(scale=PISA_SCALE).index(_pisa_records(docs, vocab))
        # the first retriever compresses the index and writes the block maxima: part of the build
        return index.quantized(num_results=1000, query_algorithm="block_max_wand", toks_scale=PISA_SCALE)
    retriever, info = measured(build)
    info.update(array_bytes=None, disk_bytes=folder_bytes(folder),
                note="toks_indexer from Python dict records (most of the build time), block_simdbp + BMW data")

    def runner(algorithm):
        out = _pisa_buffers(k_max)

        def run(q, k):
            t0 = time.perf_counter()
            n = _pisathon.retrieve(retriever._ctxt, algorithm, [(0, q.pisa_toks)], k=k, threads=1,
                                   query_weighted=1, pretokenised=True, **out)
            elapsed = time.perf_counter() - t0
            return elapsed, out["result_docnos"][:n].astype(np.int64), out["result_scores"][:n].copy()
        return run
    return info, retriever, {f"pisa_{a}": runner(a) for a in PISA_ALGORITHMS}


def _pisa_records(docs, vocab):
    vocab = np.asarray(vocab, dtype=object)
    for i in range(docs.shape[0]):
        lo, hi = docs.indptr[i], docs.indptr[i + 1]
        yield {"docno": str(i), "toks": dict(zip(vocab[docs.indices[lo:hi]], docs.data[lo:hi].tolist()))}


def _pisa_buffers(k):
    return {"result_qidxs": np.empty(k, np.int32), "result_docnos": np.empty(k, object),
            "result_ranks": np.empty(k, np.int32), "result_scores": np.empty(k, np.float32)}


def pisa_transformer_overhead_ms(retriever, run, queries) -> float:
    """Median extra ms of ``PisaRetrieve.transform`` (a one-row frame) over the direct call, and a check that
    both return the same documents."""
    import pandas as pd

    extra = []
    for q in queries[:5]:
        frame = pd.DataFrame({"qid": ["q"], "query_toks": [{t: w / PISA_SCALE for t, w in q.pisa_toks.items()}]})
        t0 = time.perf_counter()
        res = retriever.transform(frame)
        t_frame = time.perf_counter() - t0
        t_direct, ids, _ = run(q, 1000)
        if not np.array_equal(res["docno"].astype(np.int64).to_numpy(), ids):
            raise AssertionError("PISA: direct _pisathon.retrieve and PisaRetrieve.transform disagree")
        extra.append(t_frame - t_direct)
    return round(float(np.median(extra)) * 1000, 3)


# -- queries ---------------------------------------------------------------------------------------------

def prepare_queries(stats, n_per_type: int) -> Dict[str, List[Query]]:
    """Per type, ``n`` real queries spread over the turns (long: turns with a history, since a first turn's
    context is its utterance alone)."""
    vocab, n_terms = stats["vocab"], len(stats["vocab"])
    turns = _synthetic.real_conversations()
    out = {}
    for kind in ("short", "long"):
        all_q = [q for q, turn in zip(_synthetic.queries(stats, kind), turns)
                 if len(q[0]) and (kind == "short" or turn["history"])]
        picks = np.unique(np.linspace(0, len(all_q) - 1, min(n_per_type, len(all_q))).round().astype(int))
        out[kind] = [Query(kind, t, w, sp.csr_matrix((w, t, [0, len(t)]), shape=(1, n_terms)), w.astype(np.float64),
                           {str(vocab[i]): float(x) * PISA_SCALE for i, x in zip(t, w)})
                     for t, w in (all_q[i] for i in picks)]
    return out


def describe_queries(queries, stats) -> dict:
    lengths = {kind: [len(q.terms) for q in qs] for kind, qs in queries.items()}
    return {kind: {"count": len(qs), "mean_terms": round(float(np.mean(lengths[kind])), 1),
                   "terms_min_median_max": [int(np.min(lengths[kind])), int(np.median(lengths[kind])),
                                            int(np.max(lengths[kind]))],
                   "all_turns_mean_terms": round(float(np.mean(
                       [len(t) for t, _ in _synthetic.queries(stats, kind)])), 1),
                   "from": "human rewrites of all turns" if kind == "short" else
                           "contexts of the turns with at least one previous turn"}
            for kind, qs in queries.items()}
