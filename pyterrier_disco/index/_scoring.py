"""Exact top-k dot-product scoring over an inverted index, in numba.

Term-at-a-time accumulation into a float32 score array: the same products and sums, in the same term order,
as the DiSCo / SPLADE reference scorer, so the scores are identical. What differs is the order of the
work, measured in ``benchmarks/retrieval.py``:

- documents are scored a few blocks at a time (``BLOCKS_PER_PASS`` x ``BLOCK_DOCS`` = 2^18 documents, 1 MiB
  of scores): every query term adds its postings in those blocks (located by the index's block table,
  ``blocks[t, b]`` = first posting of term ``t`` with a doc id in block ``b`` or later) before the next
  pass starts, so the scores being updated stay in the core's L2 cache instead of being scattered over the
  whole collection;
- the additions of one posting list segment go 16 at a time through vector gather / scatter
  (``_scatter_add``): the doc ids of one posting list are distinct, so the lanes never collide;
- the top k comes from one pass over each finished block that appends the documents above a running
  threshold to a small buffer, cut back to the k best (``np.partition``) whenever it fills; the block's
  scores are then zeroed for the next query (no ``argwhere`` / ``argpartition`` over the collection, no
  allocation, no heap);
- with several threads, a batch of queries is split between them (each thread with its own scores and
  buffer); a single query has its blocks split between them instead, and the buffers are merged.

Ties are broken by ascending internal doc id (indexing order), so results are deterministic.
"""
import threading
from typing import List, Optional, Tuple

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic

BLOCK_SHIFT = 16
BLOCK_DOCS = 1 << BLOCK_SHIFT  # granularity of the index's block table (and of the thread ranges)
BLOCKS_PER_PASS = 4  # documents scored together: 2^18, 1 MiB of scores (best of 2^15..2^20 here, cold caches)
DOCS_PER_THREAD = 1 << 19  # below, a 2nd thread lost under numba's workqueue layer (which ranx selects) at 100k docs
_LANES = 16


@intrinsic
def _scatter_add_lanes(typingctx, acc, local_ids, weights, p, q_weight, base):
    """``acc[base + local_ids[p:p+16]] += q_weight * weights[p:p+16]``: one vector gather, multiply, add, scatter.

    Only valid when the 16 ids are distinct (true inside one posting list). Each lane computes the same
    float32 product and sum as the scalar statement, so the result is bit-identical.
    """
    for name, arg, dtype in (("acc", acc, types.float32), ("local_ids", local_ids, types.uint16),
                             ("weights", weights, types.float32)):
        if not (isinstance(arg, types.Array) and arg.dtype == dtype and arg.layout == "C"):
            raise TypingError(f"_scatter_add_lanes: {name} must be a C-contiguous {dtype} array, got {arg}")
    if q_weight != types.float32 or base != types.int64:
        raise TypingError(f"_scatter_add_lanes: needs a float32 query weight and an int64 base, got {q_weight}, {base}")
    sig = types.void(acc, local_ids, weights, p, q_weight, base)

    def codegen(context, builder, signature, args):
        acc_t, ids_t, w_t = signature.args[:3]
        acc_a = context.make_array(acc_t)(context, builder, args[0])
        ids_a = context.make_array(ids_t)(context, builder, args[1])
        w_a = context.make_array(w_t)(context, builder, args[2])
        f32, i16, i32, i64 = ir.FloatType(), ir.IntType(16), ir.IntType(32), ir.IntType(64)
        vf, vi16 = ir.VectorType(f32, _LANES), ir.VectorType(i16, _LANES)
        vi32, vi64 = ir.VectorType(i32, _LANES), ir.VectorType(i64, _LANES)
        vbool = ir.VectorType(ir.IntType(1), _LANES)

        def splat(value, vector_type):
            one = builder.insert_element(ir.Constant(vector_type, None), value, i32(0))
            return builder.shuffle_vector(one, ir.Constant(vector_type, None), ir.Constant(vi32, [0] * _LANES))

        ids = builder.load(builder.bitcast(builder.gep(ids_a.data, [args[3]]), ir.PointerType(vi16)), align=2)
        w = builder.load(builder.bitcast(builder.gep(w_a.data, [args[3]]), ir.PointerType(vf)), align=4)
        start = builder.add(builder.ptrtoint(acc_a.data, i64), builder.shl(args[5], i64(2)))
        offsets = builder.shl(builder.zext(ids, vi64), ir.Constant(vi64, [2] * _LANES))
        ptrs = builder.inttoptr(builder.add(splat(start, vi64), offsets), ir.VectorType(acc_a.data.type, _LANES))
        mask = ir.Constant(vbool, [1] * _LANES)
        gather = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vf, [ptrs.type, i32, vbool, vf]),
            f"llvm.masked.gather.v{_LANES}f32.v{_LANES}p0")
        scatter = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [vf, ptrs.type, i32, vbool]),
            f"llvm.masked.scatter.v{_LANES}f32.v{_LANES}p0")
        old = builder.call(gather, [ptrs, i32(4), mask, ir.Constant(vf, None)])
        builder.call(scatter, [builder.fadd(old, builder.fmul(splat(args[4], vf), w)), ptrs, i32(4), mask])
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(cache=True, nogil=True)
def _scatter_add(acc, local_ids, weights, lo, hi, q_weight, base):
    """``acc[base + local_ids[p]] += q_weight * weights[p]`` for the postings ``lo <= p < hi`` of one list."""
    p = lo
    while p + _LANES <= hi:
        _scatter_add_lanes(acc, local_ids, weights, p, q_weight, base)
        p += _LANES
    for j in range(p, hi):
        acc[base + local_ids[j]] += q_weight * weights[j]


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
def _keep_top_k(buf_s, buf_d, n, k):
    """Shrink the candidates ``buf[:n]`` (in ascending doc order) to their top k, keeping that order; returns
    (new count, threshold): later documents (larger ids) must score strictly above the threshold to enter."""
    if n <= k:
        return n, np.float32(0)
    theta = np.partition(buf_s[:n].copy(), n - k)[n - k]  # the k-th largest score
    ties_left = k - np.sum(buf_s[:n] > theta)
    j = 0
    for i in range(n):
        s = buf_s[i]
        if s > theta or (s == theta and ties_left > 0):  # among equal scores the smaller doc ids stay
            if s == theta:
                ties_left -= 1
            buf_s[j], buf_d[j] = s, buf_d[i]
            j += 1
    return j, theta


@numba.njit(cache=True, nogil=True)
def _blocks_top_k(blocks, local_ids, weights, q_terms, q_weights, block_lo, block_hi, n_docs, k, acc, buf_s, buf_d):
    """Score blocks [block_lo, block_hi) for one query and leave their top k in ``buf[:count]`` (unsorted).

    Candidates above the running threshold are appended to the buffer, which is cut back to the top k
    whenever it fills, so selection costs a comparison per document. ``acc`` must be zero on those blocks
    and is left zero. Returns the count.
    """
    n = 0
    threshold = np.float32(0)
    for b in range(block_lo, block_hi, BLOCKS_PER_PASS):
        b_end = min(b + BLOCKS_PER_PASS, block_hi)
        for i in range(len(q_terms)):
            t, qw = q_terms[i], q_weights[i]
            for c in range(b, b_end):
                _scatter_add(acc, local_ids, weights, blocks[t, c], blocks[t, c + 1], qw, np.int64(c) << BLOCK_SHIFT)
        doc_lo = b << BLOCK_SHIFT
        doc_hi = min(b_end << BLOCK_SHIFT, n_docs)
        for d in range(doc_lo, doc_hi):
            s = acc[d]
            if s > threshold:
                if n == len(buf_s):
                    n, threshold = _keep_top_k(buf_s, buf_d, n, k)
                    if not s > threshold:
                        continue
                buf_s[n], buf_d[n] = s, d
                n += 1
        acc[doc_lo:doc_hi] = 0
    return _keep_top_k(buf_s, buf_d, n, k)[0]


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
def _search_serial(blocks, local_ids, weights, q_ptr, q_terms, q_weights, n_docs, acc,
                   buf_s, buf_d, counts, out_docs, out_scores, out_counts):
    """Queries one after another on one thread (``buf_s``, ``buf_d``, ``counts``: one row / entry)."""
    k = out_docs.shape[1]
    n_blocks = blocks.shape[1] - 1
    for q in range(len(q_ptr) - 1):
        terms, qws = q_terms[q_ptr[q]:q_ptr[q + 1]], q_weights[q_ptr[q]:q_ptr[q + 1]]
        counts[0] = _blocks_top_k(blocks, local_ids, weights, terms, qws, 0, n_blocks, n_docs, k, acc,
                                  buf_s[0], buf_d[0])
        out_counts[q] = _merge(buf_s, buf_d, counts, k, out_docs[q], out_scores[q])


@numba.njit(cache=True, parallel=True)
def _search_query_groups(blocks, local_ids, weights, q_ptr, q_terms, q_weights, groups, n_docs, accs,
                         buf_s, buf_d, counts, out_docs, out_scores, out_counts):
    """A batch in parallel: thread ``g`` runs queries ``groups[g]:groups[g+1]`` with its own scores ``accs[g]``."""
    for g in numba.prange(len(groups) - 1):
        lo, hi = groups[g], groups[g + 1]
        _search_serial(blocks, local_ids, weights, q_ptr[lo:hi + 1], q_terms, q_weights, n_docs, accs[g],
                       buf_s[g:g + 1], buf_d[g:g + 1], counts[g:g + 1], out_docs[lo:hi], out_scores[lo:hi],
                       out_counts[lo:hi])


@numba.njit(cache=True, parallel=True)
def _search_parallel(blocks, local_ids, weights, q_ptr, q_terms, q_weights, bounds, n_docs, acc,
                     buf_s, buf_d, counts, out_docs, out_scores, out_counts):
    """One query at a time with its blocks split between the threads: ``bounds`` gives each thread's range."""
    k = out_docs.shape[1]
    for q in range(len(q_ptr) - 1):
        terms, qws = q_terms[q_ptr[q]:q_ptr[q + 1]], q_weights[q_ptr[q]:q_ptr[q + 1]]
        for r in numba.prange(len(bounds) - 1):
            counts[r] = _blocks_top_k(blocks, local_ids, weights, terms, qws, bounds[r], bounds[r + 1], n_docs, k,
                                      acc, buf_s[r], buf_d[r])
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
           threads: Optional[int] = 1) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact top-k for queries given as (term ids, weights). Returns (doc ids, scores, counts) arrays.

    ``arrays`` holds an index's ``blocks`` table, uint16 ``doc_ids`` within the blocks and ``weights``
    (as :class:`~pyterrier_disco.index.SparseIndex` stores them), or ``offsets`` and global int32 ``doc_ids``.
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
    q_weights = np.concatenate([np.asarray(w, np.float32) for _, w in queries] + [np.empty(0, np.float32)])
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
    out_docs = np.full((len(queries), k), -1, dtype=np.int32)
    out_scores = np.zeros((len(queries), k), dtype=np.float64)
    out_counts = np.zeros(len(queries), dtype=np.int64)
    # whole blocks, so no block-local id can write past the end; one array per thread when it has its own queries
    acc = _ACCUMULATORS.take((threads if by_query else 1) * n_blocks * BLOCK_DOCS)
    postings = (np.ascontiguousarray(blocks, dtype=np.int64), np.ascontiguousarray(local_ids),
                np.ascontiguousarray(arrays["weights"], dtype=np.float32), q_ptr, q_terms, q_weights)
    outputs = (buf_s, buf_d, counts, out_docs, out_scores, out_counts)
    try:
        if threads > 1:
            previous = numba.get_num_threads()
            numba.set_num_threads(threads)
            try:
                if by_query:
                    _search_query_groups(*postings, bounds, n_docs, acc.reshape(threads, -1), *outputs)
                else:
                    _search_parallel(*postings, bounds, n_docs, acc, *outputs)
            finally:
                numba.set_num_threads(previous)
        else:
            _search_serial(*postings, n_docs, acc, *outputs)
    except BaseException:
        acc[:] = 0  # interrupted mid-query: not zero any more
        raise
    finally:
        _ACCUMULATORS.give(acc)
    return out_docs, out_scores, out_counts
