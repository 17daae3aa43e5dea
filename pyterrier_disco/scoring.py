"""Exact top-k dot-product scoring over an inverted index, in numba.

Term-at-a-time accumulation into a float32 score array (the same arithmetic, in the same term order, as the
DiSCo / SPLADE reference scorer, so the scores are identical), with two differences:

- the top k comes from one pass over the accumulator with a k-sized heap, which also zeroes it for the next
  query (no ``argwhere`` / ``argpartition`` over the whole collection, no allocation per query);
- with several threads, each takes a contiguous range of documents (every posting list is entered at the
  range's first document by binary search), so one query uses all threads and no two threads write to the
  same scores; the reference instead splits each posting list across threads, one parallel region per term.

Measured (``benchmarks/retrieval.py``): accumulation runs at ~1.3-2 ns per posting, bound by the scattered
read-modify-write of the scores rather than by memory bandwidth; smaller cache-sized document blocks did not
help, and score upper bounds (MaxScore-style) could skip at most ~30-40% of the postings of these queries.

Ties are broken by ascending internal doc id (indexing order), so results are deterministic.
"""
from typing import List, Optional, Tuple

import numba
import numpy as np

DOCS_PER_THREAD = 1 << 19  # below this a second thread did not pay off (benchmarks/retrieval.py)


@numba.njit(inline="always")
def _worse(s1, d1, s2, d2):
    return s1 < s2 or (s1 == s2 and d1 > d2)


@numba.njit(cache=True, nogil=True)
def _sift_down(heap_s, heap_d, n, i):
    while True:
        child = 2 * i + 1
        if child >= n:
            return
        if child + 1 < n and _worse(heap_s[child + 1], heap_d[child + 1], heap_s[child], heap_d[child]):
            child += 1
        if not _worse(heap_s[child], heap_d[child], heap_s[i], heap_d[i]):
            return
        heap_s[i], heap_s[child] = heap_s[child], heap_s[i]
        heap_d[i], heap_d[child] = heap_d[child], heap_d[i]
        i = child


@numba.njit(cache=True, nogil=True)
def _range_top_k(offsets, doc_ids, weights, q_terms, q_weights, doc_lo, doc_hi, acc, heap_s, heap_d):
    """Score documents [doc_lo, doc_hi) for one query and keep their top k (k = len(heap_s)) in a min-heap.

    ``acc`` must be zero on the range and is left zero. Returns the number of heap entries.
    """
    for i in range(len(q_terms)):
        t, qw = q_terms[i], q_weights[i]
        lo, hi = offsets[t], offsets[t + 1]
        start = lo + np.searchsorted(doc_ids[lo:hi], doc_lo)
        stop = lo + np.searchsorted(doc_ids[lo:hi], doc_hi)
        for p in range(start, stop):
            acc[doc_ids[p]] += qw * weights[p]
    k = len(heap_s)
    n = 0
    for d in range(doc_lo, doc_hi):
        s = acc[d]
        if s > 0:
            acc[d] = 0
            if n < k:  # push, then sift up
                i = n
                heap_s[i], heap_d[i] = s, d
                n += 1
                while i > 0:
                    parent = (i - 1) // 2
                    if not _worse(heap_s[i], heap_d[i], heap_s[parent], heap_d[parent]):
                        break
                    heap_s[i], heap_s[parent] = heap_s[parent], heap_s[i]
                    heap_d[i], heap_d[parent] = heap_d[parent], heap_d[i]
                    i = parent
            elif s > heap_s[0]:  # equal scores keep the earlier (smaller) doc id already held
                heap_s[0], heap_d[0] = s, d
                _sift_down(heap_s, heap_d, n, 0)
    return n


@numba.njit(cache=True, nogil=True)
def _merge(heap_s, heap_d, counts, k, out_docs, out_scores):
    """Merge per-thread heaps into the sorted top k (score descending, doc id ascending); returns how many."""
    total = 0
    for b in range(len(counts)):
        total += counts[b]
    docs = np.empty(total, np.int64)
    scores = np.empty(total, np.float64)
    j = 0
    for b in range(len(counts)):  # ranges are in doc order, but a heap is not sorted: sort by doc first
        for i in range(counts[b]):
            docs[j] = heap_d[b, i]
            scores[j] = heap_s[b, i]
            j += 1
    by_doc = np.argsort(docs)
    docs, scores = docs[by_doc], scores[by_doc]
    order = np.argsort(-scores, kind="mergesort")
    m = min(k, total)
    for i in range(m):
        out_docs[i] = docs[order[i]]
        out_scores[i] = scores[order[i]]
    return m


@numba.njit(cache=True, nogil=True)
def _search_serial(offsets, doc_ids, weights, q_ptr, q_terms, q_weights, bounds, acc,
                   heap_s, heap_d, counts, out_docs, out_scores, out_counts):
    k = heap_s.shape[1]
    for q in range(len(q_ptr) - 1):
        terms, qws = q_terms[q_ptr[q]:q_ptr[q + 1]], q_weights[q_ptr[q]:q_ptr[q + 1]]
        for b in range(len(bounds) - 1):
            counts[b] = _range_top_k(offsets, doc_ids, weights, terms, qws, bounds[b], bounds[b + 1], acc,
                                     heap_s[b], heap_d[b])
        out_counts[q] = _merge(heap_s, heap_d, counts, k, out_docs[q], out_scores[q])


@numba.njit(cache=True, parallel=True)
def _search_parallel(offsets, doc_ids, weights, q_ptr, q_terms, q_weights, bounds, acc,
                      heap_s, heap_d, counts, out_docs, out_scores, out_counts):
    k = heap_s.shape[1]
    for q in range(len(q_ptr) - 1):
        terms, qws = q_terms[q_ptr[q]:q_ptr[q + 1]], q_weights[q_ptr[q]:q_ptr[q + 1]]
        for b in numba.prange(len(bounds) - 1):
            counts[b] = _range_top_k(offsets, doc_ids, weights, terms, qws, bounds[b], bounds[b + 1], acc,
                                     heap_s[b], heap_d[b])
        out_counts[q] = _merge(heap_s, heap_d, counts, k, out_docs[q], out_scores[q])


def default_threads(n_docs: int) -> int:
    """One thread per ``DOCS_PER_THREAD`` documents, up to the cores numba may use."""
    return max(1, min(n_docs // DOCS_PER_THREAD, numba.config.NUMBA_NUM_THREADS))


def search(arrays: dict, n_docs: int, queries: List[Tuple[np.ndarray, np.ndarray]], k: int,
           threads: Optional[int] = 1) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact top-k for queries given as (term ids, weights). Returns (doc ids, scores, counts) arrays.

    ``arrays`` holds the index's ``offsets``, ``doc_ids`` and ``weights``. With ``threads > 1`` each query's
    document ranges are scored in parallel; ``None`` picks :func:`default_threads`.
    """
    if threads is None:
        threads = default_threads(n_docs)
    q_ptr = np.zeros(len(queries) + 1, dtype=np.int64)
    np.cumsum([len(t) for t, _ in queries], out=q_ptr[1:])
    q_terms = np.concatenate([np.asarray(t, np.int64) for t, _ in queries] + [np.empty(0, np.int64)])
    q_weights = np.concatenate([np.asarray(w, np.float32) for _, w in queries] + [np.empty(0, np.float32)])
    threads = max(1, min(threads, numba.config.NUMBA_NUM_THREADS, max(n_docs, 1)))
    bounds = np.linspace(0, n_docs, threads + 1).astype(np.int64)  # one document range (and heap) per thread
    acc = np.zeros(max(n_docs, 1), dtype=np.float32)
    heap_s = np.zeros((threads, k), dtype=np.float32)
    heap_d = np.zeros((threads, k), dtype=np.int64)
    counts = np.zeros(threads, dtype=np.int64)
    out_docs = np.full((len(queries), k), -1, dtype=np.int32)
    out_scores = np.zeros((len(queries), k), dtype=np.float64)
    out_counts = np.zeros(len(queries), dtype=np.int64)
    args = (arrays["offsets"], arrays["doc_ids"], arrays["weights"], q_ptr, q_terms, q_weights, bounds,
            acc, heap_s, heap_d, counts, out_docs, out_scores, out_counts)
    if threads > 1:
        previous = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            _search_parallel(*args)
        finally:
            numba.set_num_threads(previous)
    else:
        _search_serial(*args)
    return out_docs, out_scores, out_counts
