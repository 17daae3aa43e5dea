"""Exact top-k dot-product scoring over an inverted index, in numba.

Term-at-a-time accumulation into a float32 score array: the same products and sums, in the same term order,
as the DiSCo / SPLADE reference scorer, so the scores are identical. What differs is the order of the
work, measured in ``benchmarks/retrieval.py``:

- documents are scored a pass at a time (``settings()["pass_shift"]``: a pass's float32 scores fill half the
  L2, from :mod:`pyterrier_disco._machine`): every query term adds its postings in the pass (located by the
  index's block table, ``blocks[t, b]`` = first posting of term ``t`` with a doc id in block ``b`` or later, and
  a binary search when a pass is part of a block) before the next pass starts, so the scores being updated
  stay in the core's L2 cache instead of being scattered over the whole collection;
- the additions run through the kernel that suits the CPU (:mod:`pyterrier_disco._kernels`: 16-lane
  gather / scatter, or scalar with software prefetching);
- the top k comes from one pass over each finished pass that appends the documents above a running threshold
  to a small buffer, cut back to the k best (``np.partition``) whenever it fills; the scores are then zeroed
  for the next query (no ``argwhere`` / ``argpartition`` over the collection, no allocation, no heap);
- exact dynamic pruning (:mod:`pyterrier_disco._pruning`) skips whole posting-list segments whose block-max
  bounds cannot reach the top k, for the queries where that pays;
- with several threads, a batch of queries is split between them (each thread with its own scores and
  buffer); a single query has its blocks split between them instead, and the buffers are merged.

Ties are broken by ascending internal doc id (indexing order), so results are deterministic.
"""
import threading
from typing import List, Optional, Tuple

import numba
import numpy as np

from ._kernels import BLOCK_DOCS, BLOCK_SHIFT, floor_threshold, keep_top_k, score_pass, select_and_clear
from ._machine import settings
from ._pruning import pruned_blocks_top_k, tuning, use_pruning

DOCS_PER_THREAD = 1 << 19  # below, a 2nd thread lost under numba's workqueue layer (which ranx selects) at 100k docs


@numba.njit(cache=True, nogil=True)
def block_table(offsets, doc_ids, n_docs):
    """``blocks[t, b]``: the first posting of term ``t`` whose (global, ascending) doc id is in block ``b`` or later."""
    n_blocks = max(1, (n_docs + BLOCK_DOCS - 1) >> BLOCK_SHIFT)
    n_terms = len(offsets) - 1
    blocks = np.empty((n_terms, n_blocks + 1), np.int64)
    for t in range(n_terms):
        lo, hi = offsets[t], offsets[t + 1]
        for b in range(n_blocks):
            blocks[t, b] = lo + np.searchsorted(doc_ids[lo:hi], b << BLOCK_SHIFT)
        blocks[t, n_blocks] = hi
    return blocks


def local_postings(offsets: np.ndarray, doc_ids: np.ndarray, n_docs: int) -> Tuple[np.ndarray, np.ndarray]:
    """(block table, uint16 ids within the block) of term-major postings given with global doc ids."""
    return block_table(np.asarray(offsets), doc_ids, n_docs), (np.asarray(doc_ids) & (BLOCK_DOCS - 1)).astype(np.uint16)


@numba.njit(cache=True, nogil=True)
def _blocks_top_k(blocks, local_ids, weights, q_terms, q_weights, block_lo, block_hi, n_docs, k, acc, buf_s, buf_d,
                  vector, shift):
    """Score blocks [block_lo, block_hi) for one query, a pass of ``2^shift`` documents at a time, and leave their
    top k in ``buf[:count]`` (unsorted). ``acc`` must be zero on those blocks and is left zero. Returns the count."""
    n = 0
    threshold = np.float32(0)
    doc_end = min(block_hi << BLOCK_SHIFT, n_docs)
    for doc_lo in range(block_lo << BLOCK_SHIFT, doc_end, 1 << shift):
        doc_hi = min(doc_lo + (1 << shift), doc_end)
        score_pass(blocks, local_ids, weights, q_terms, q_weights, doc_lo, doc_hi, acc, vector)
        if n < k:  # no threshold yet
            threshold = floor_threshold(acc, doc_lo, doc_hi, k, threshold)
        n, threshold = select_and_clear(acc, doc_lo, doc_hi, n, threshold, buf_s, buf_d, k)
    return keep_top_k(buf_s, buf_d, n, k)[0]


@numba.njit(cache=True, nogil=True)
def _query_top_k(postings, q_terms, q_weights, prune, block_lo, block_hi, n_docs, k, acc, buf_s, buf_d, stats,
                 vector, shift):
    blocks, local_ids, weights, block_max, tune = postings
    if prune:
        return pruned_blocks_top_k(blocks, local_ids, weights, block_max, q_terms, q_weights, block_lo, block_hi,
                                   n_docs, k, acc, buf_s, buf_d, vector, tune, stats)
    return _blocks_top_k(blocks, local_ids, weights, q_terms, q_weights, block_lo, block_hi, n_docs, k, acc,
                         buf_s, buf_d, vector, shift)


@numba.njit(cache=True, nogil=True)
def _merge(buf_s, buf_d, counts, k, out_docs, out_scores):
    """Merge the per-thread top k (thread ranges in block order, each in doc order) into the sorted top k
    (score descending, doc id ascending); returns how many."""
    total = 0
    for b in range(len(counts)):
        total += counts[b]
    docs = np.empty(total, np.int64)
    scores = np.empty(total, np.float64)
    j = 0
    for b in range(len(counts)):
        for i in range(counts[b]):
            docs[j] = buf_d[b, i]
            scores[j] = buf_s[b, i]
            j += 1
    order = np.argsort(-scores, kind="mergesort")  # stable: the buffers come in doc order, so ties go by doc
    m = min(k, total)
    for i in range(m):
        out_docs[i] = docs[order[i]]
        out_scores[i] = scores[order[i]]
    return m


@numba.njit(cache=True, nogil=True)
def _search_serial(postings, q_ptr, q_terms, q_weights, prune, n_docs, acc, buf_s, buf_d, counts, stats, out_docs,
                   out_scores, out_counts, vector, shift):
    """Queries one after another on one thread (``buf_s``, ``buf_d``, ``counts``, ``stats``: one row / entry)."""
    k = out_docs.shape[1]
    n_blocks = postings[0].shape[1] - 1
    for q in range(len(q_ptr) - 1):
        terms, qws = q_terms[q_ptr[q]:q_ptr[q + 1]], q_weights[q_ptr[q]:q_ptr[q + 1]]
        counts[0] = _query_top_k(postings, terms, qws, prune[q], 0, n_blocks, n_docs, k, acc, buf_s[0], buf_d[0],
                                 stats[0], vector, shift)
        out_counts[q] = _merge(buf_s, buf_d, counts, k, out_docs[q], out_scores[q])


@numba.njit(cache=True, parallel=True)
def _search_query_groups(postings, q_ptr, q_terms, q_weights, prune, groups, n_docs, accs, buf_s, buf_d, counts,
                         stats, out_docs, out_scores, out_counts, vector, shift):
    """A batch in parallel: thread ``g`` runs queries ``groups[g]:groups[g+1]`` with its own scores ``accs[g]``."""
    for g in numba.prange(len(groups) - 1):
        lo, hi = groups[g], groups[g + 1]
        _search_serial(postings, q_ptr[lo:hi + 1], q_terms, q_weights, prune[lo:hi], n_docs, accs[g],
                       buf_s[g:g + 1], buf_d[g:g + 1], counts[g:g + 1], stats[g:g + 1], out_docs[lo:hi],
                       out_scores[lo:hi], out_counts[lo:hi], vector, shift)


@numba.njit(cache=True, parallel=True)
def _search_parallel(postings, q_ptr, q_terms, q_weights, prune, bounds, n_docs, acc, buf_s, buf_d, counts,
                     stats, out_docs, out_scores, out_counts, vector, shift):
    """One query at a time with its blocks split between the threads: ``bounds`` gives each thread's range."""
    k = out_docs.shape[1]
    for q in range(len(q_ptr) - 1):
        terms, qws = q_terms[q_ptr[q]:q_ptr[q + 1]], q_weights[q_ptr[q]:q_ptr[q + 1]]
        for r in numba.prange(len(bounds) - 1):
            counts[r] = _query_top_k(postings, terms, qws, prune[q], bounds[r], bounds[r + 1], n_docs, k, acc,
                                     buf_s[r], buf_d[r], stats[r], vector, shift)
        out_counts[q] = _merge(buf_s, buf_d, counts, k, out_docs[q], out_scores[q])


def default_threads(n_docs: int) -> int:
    """One thread per ``DOCS_PER_THREAD`` documents, up to the cores numba may use."""
    return max(1, min(n_docs // DOCS_PER_THREAD, numba.config.NUMBA_NUM_THREADS))


class Accumulators:
    """Zeroed float32 score arrays kept between calls (the engine leaves them zero), one per concurrent call."""

    def __init__(self, keep: int = 4):
        self._free: List[np.ndarray] = []
        self._lock = threading.Lock()
        self.keep = keep

    def take(self, n: int) -> np.ndarray:
        with self._lock:
            for i, acc in enumerate(self._free):
                if len(acc) == n:
                    return self._free.pop(i)
        return np.zeros(n, dtype=np.float32)

    def give(self, acc: np.ndarray) -> None:
        with self._lock:
            self._free = (self._free + [acc])[-self.keep:]


_ACCUMULATORS = Accumulators()


def search(arrays: dict, n_docs: int, queries: List[Tuple[np.ndarray, np.ndarray]], k: int,
           threads: Optional[int] = 1, prune: Optional[bool] = None,
           stats: Optional[dict] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact top-k for queries given as (term ids, weights). Returns (doc ids, scores, counts) arrays.

    ``arrays`` holds an index's ``blocks`` table, uint16 ``doc_ids`` within the blocks and ``weights``
    (as :class:`~pyterrier_disco.index.SparseIndex` stores them), or ``offsets`` and global int32 ``doc_ids``;
    optionally ``block_max`` (the largest weight of each term in each block, for pruning) and, for a quantised
    index, uint8 ``weights`` with per-term ``scales``. ``prune``: ``None`` prunes the queries for which
    :func:`~pyterrier_disco._pruning.use_pruning` expects a gain (needs ``block_max``), ``True`` every query
    with positive weights, ``False`` none; the results are the same either way. ``stats``: a dict to which the
    pruning counts are added (``blocks_exhaustive``, ``blocks_pruned``, ``candidates``, ``postings_skipped``).
    With ``threads > 1``, a batch of at least two queries per thread is split between the threads (one query
    per thread at a time); a smaller one has each query's blocks scored in parallel. ``None``: every core for
    such a batch, else :func:`default_threads`.
    """
    if threads is None:  # a batch keeps every core busy with its own queries: that paid off at any size
        cores = numba.config.NUMBA_NUM_THREADS
        threads = cores if len(queries) >= 2 * cores else default_threads(n_docs)
    blocks, local_ids = arrays.get("blocks"), arrays["doc_ids"]
    if blocks is None or local_ids.dtype != np.uint16:
        blocks, local_ids = local_postings(arrays["offsets"], local_ids, n_docs)
    n_blocks = blocks.shape[1] - 1
    q_ptr = np.zeros(len(queries) + 1, dtype=np.int64)
    np.cumsum([len(t) for t, _ in queries], out=q_ptr[1:])
    q_terms = np.concatenate([np.asarray(t, np.int64) for t, _ in queries] + [np.empty(0, np.int64)])
    q_weights = np.concatenate([np.asarray(w, np.float64) for _, w in queries] + [np.empty(0, np.float64)])
    if "scales" in arrays:  # quantised weights: the term's scale goes with the query weight
        q_weights = q_weights * arrays["scales"][q_terms]
    q_weights = q_weights.astype(np.float32)
    block_max = arrays.get("block_max")
    prune_q = np.array([block_max is not None and prune is not False and
                        use_pruning(q_weights[q_ptr[q]:q_ptr[q + 1]], k, n_docs, forced=prune is True)
                        for q in range(len(queries))], dtype=np.bool_)
    if block_max is None:
        block_max = np.zeros((0, 0), np.float32)
    threads = max(1, min(threads, numba.config.NUMBA_NUM_THREADS))
    by_query = threads > 1 and len(queries) >= 2 * threads
    if not by_query:
        threads = min(threads, n_blocks)
    # per thread: a range of queries (by_query) or of blocks, and a candidate buffer
    bounds = np.linspace(0, len(queries) if by_query else n_blocks, threads + 1).round().astype(np.int64)
    capacity = max(4 * k, 64)  # candidate buffer per thread, cut back to k when full
    buf_s = np.zeros((threads, capacity), dtype=np.float32)
    buf_d = np.zeros((threads, capacity), dtype=np.int64)
    counts = np.zeros(threads, dtype=np.int64)
    prune_stats = np.zeros((threads, 4), dtype=np.int64)
    out_docs = np.full((len(queries), k), -1, dtype=np.int32)
    out_scores = np.zeros((len(queries), k), dtype=np.float64)
    out_counts = np.zeros(len(queries), dtype=np.int64)
    # whole blocks, so no block-local id can write past the end; one array per thread when it has its own queries
    acc = _ACCUMULATORS.take((threads if by_query else 1) * n_blocks * BLOCK_DOCS)
    postings = (np.ascontiguousarray(blocks, dtype=np.int64), np.ascontiguousarray(local_ids),
                np.ascontiguousarray(arrays["weights"]), np.ascontiguousarray(block_max), tuning())
    outputs = (buf_s, buf_d, counts, prune_stats, out_docs, out_scores, out_counts)
    choice = settings()
    machine_args = (choice["kernel"] == "vector", choice["pass_shift"])
    try:
        if threads > 1:
            previous = numba.get_num_threads()
            numba.set_num_threads(threads)
            try:
                if by_query:
                    _search_query_groups(postings, q_ptr, q_terms, q_weights, prune_q, bounds, n_docs,
                                         acc.reshape(threads, -1), *outputs, *machine_args)
                else:
                    _search_parallel(postings, q_ptr, q_terms, q_weights, prune_q, bounds, n_docs, acc, *outputs,
                                     *machine_args)
            finally:
                numba.set_num_threads(previous)
        else:
            _search_serial(postings, q_ptr, q_terms, q_weights, prune_q, n_docs, acc, *outputs, *machine_args)
    except BaseException:
        acc[:] = 0  # interrupted mid-query: not zero any more
        raise
    finally:
        _ACCUMULATORS.give(acc)
    if stats is not None:
        for name, value in zip(("blocks_exhaustive", "blocks_pruned", "candidates", "postings_skipped"),
                               prune_stats.sum(axis=0)):
            stats[name] = stats.get(name, 0) + int(value)
    return out_docs, out_scores, out_counts
