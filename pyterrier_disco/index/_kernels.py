"""The scorer's inner loops, in numba: adding one posting-list segment into the scores, and top-k selection.

Two ways to add ``acc[base + ids[p]] += q_weight * weights[p]`` over a segment, bit-identical (the same float32
product and sum per posting; no fused multiply-add): a 16-lane vector gather / scatter (``vector``), and a
scalar loop that prefetches the posting stream ``PREFETCH_POSTINGS`` ahead (``scalar``); which one is faster
depends on the CPU (:mod:`pyterrier_disco._machine`). Weights are float32 (exact index) or uint8 (quantised
index, whose query weights carry the term's scale); both are read as float32.
"""
import time

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic

BLOCK_SHIFT = 16
BLOCK_DOCS = 1 << BLOCK_SHIFT  # granularity of the index's block table (uint16 ids within a block)
LANES = 16
PREFETCH_POSTINGS = 512  # how far ahead the scalar kernel prefetches ids and weights (best of 256..2048 measured)


@intrinsic
def _scatter_add_lanes(typingctx, acc, local_ids, weights, p, q_weight, base):
    """``acc[base + local_ids[p:p+16]] += q_weight * weights[p:p+16]``: one vector gather, multiply, add, scatter.

    Only valid when the 16 ids are distinct (true inside one posting list). Each lane computes the same
    float32 product and sum as the scalar statement, so the result is bit-identical.
    """
    for name, arg, dtypes in (("acc", acc, (types.float32,)), ("local_ids", local_ids, (types.uint16,)),
                              ("weights", weights, (types.float32, types.uint8))):
        if not (isinstance(arg, types.Array) and arg.dtype in dtypes and arg.layout == "C"):
            raise TypingError(f"_scatter_add_lanes: {name} must be a C-contiguous {dtypes} array, got {arg}")
    if q_weight != types.float32 or base != types.int64:
        raise TypingError(f"_scatter_add_lanes: needs a float32 query weight and an int64 base, got {q_weight}, {base}")
    sig = types.void(acc, local_ids, weights, p, q_weight, base)

    def codegen(context, builder, signature, args):
        acc_t, ids_t, w_t = signature.args[:3]
        acc_a = context.make_array(acc_t)(context, builder, args[0])
        ids_a = context.make_array(ids_t)(context, builder, args[1])
        w_a = context.make_array(w_t)(context, builder, args[2])
        f32, i8, i16, i32, i64 = ir.FloatType(), ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)
        vf, vi16 = ir.VectorType(f32, LANES), ir.VectorType(i16, LANES)
        vi32, vi64 = ir.VectorType(i32, LANES), ir.VectorType(i64, LANES)
        vbool = ir.VectorType(ir.IntType(1), LANES)

        def splat(value, vector_type):
            one = builder.insert_element(ir.Constant(vector_type, None), value, i32(0))
            return builder.shuffle_vector(one, ir.Constant(vector_type, None), ir.Constant(vi32, [0] * LANES))

        ids = builder.load(builder.bitcast(builder.gep(ids_a.data, [args[3]]), ir.PointerType(vi16)), align=2)
        if w_t.dtype == types.uint8:
            ptr = builder.bitcast(builder.gep(w_a.data, [args[3]]), ir.PointerType(ir.VectorType(i8, LANES)))
            raw = builder.load(ptr, align=1)
            w = builder.uitofp(raw, vf)
        else:
            w = builder.load(builder.bitcast(builder.gep(w_a.data, [args[3]]), ir.PointerType(vf)), align=4)
        start = builder.add(builder.ptrtoint(acc_a.data, i64), builder.shl(args[5], i64(2)))
        offsets = builder.shl(builder.zext(ids, vi64), ir.Constant(vi64, [2] * LANES))
        ptrs = builder.inttoptr(builder.add(splat(start, vi64), offsets), ir.VectorType(acc_a.data.type, LANES))
        mask = ir.Constant(vbool, [1] * LANES)
        gather = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vf, [ptrs.type, i32, vbool, vf]),
            f"llvm.masked.gather.v{LANES}f32.v{LANES}p0")
        scatter = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [vf, ptrs.type, i32, vbool]),
            f"llvm.masked.scatter.v{LANES}f32.v{LANES}p0")
        old = builder.call(gather, [ptrs, i32(4), mask, ir.Constant(vf, None)])
        builder.call(scatter, [builder.fadd(old, builder.fmul(splat(args[4], vf), w)), ptrs, i32(4), mask])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _prefetch(typingctx, arr, index):
    """Hint the cache line of ``arr[index]`` into the cache (``llvm.prefetch``; never faults, even past the end)."""
    if not isinstance(arr, types.Array):
        raise TypingError(f"_prefetch: needs an array, got {arr}")
    sig = types.void(arr, index)

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        i8p, i32 = ir.PointerType(ir.IntType(8)), ir.IntType(32)
        ptr = builder.bitcast(builder.gep(data, [args[1]]), i8p)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            "llvm.prefetch.p0")
        builder.call(fn, [ptr, i32(0), i32(3), i32(1)])  # read, high locality, data cache
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(cache=True, nogil=True)
def _prefetch_start(local_ids, weights, p):
    """Prefetch the first ``PREFETCH_POSTINGS`` postings from ``p`` (where the in-loop prefetching starts)."""
    for j in range(p, p + PREFETCH_POSTINGS, 32):
        _prefetch(local_ids, j)
    for j in range(p, p + PREFETCH_POSTINGS, 16):
        _prefetch(weights, j)


@numba.njit(cache=True, nogil=True)
def _scalar_add(acc, local_ids, weights, lo, hi, q_weight, base):
    # a view from ``base`` indexed with unsigned ids: no negative-index wrap-around code in the loop
    scores = acc[base:]
    p, end, ahead, step = np.uint64(lo), np.uint64(hi), np.uint64(PREFETCH_POSTINGS), np.uint64(LANES)
    while p + step <= end:
        _prefetch(weights, p + ahead)
        _prefetch(local_ids, p + ahead)
        for j in range(p, p + step):
            scores[local_ids[j]] += q_weight * np.float32(weights[j])
        p += step
    for j in range(p, end):
        scores[local_ids[j]] += q_weight * np.float32(weights[j])


@numba.njit(cache=True, nogil=True)
def _vector_add(acc, local_ids, weights, lo, hi, q_weight, base):
    p = lo
    while p + LANES <= hi:
        _scatter_add_lanes(acc, local_ids, weights, p, q_weight, base)
        p += LANES
    for j in range(p, hi):
        acc[base + local_ids[j]] += q_weight * np.float32(weights[j])


@numba.njit(cache=True, nogil=True)
def add_segment(vector, acc, local_ids, weights, lo, hi, q_weight, base):
    """``acc[base + local_ids[p]] += q_weight * weights[p]`` for the postings ``lo <= p < hi`` of one list."""
    if vector:
        _vector_add(acc, local_ids, weights, lo, hi, q_weight, base)
    else:
        _scalar_add(acc, local_ids, weights, lo, hi, q_weight, base)


@numba.njit(cache=True, nogil=True)
def keep_top_k(buf_s, buf_d, n, k):
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
def offer(s, d, n, threshold, buf_s, buf_d, k):
    """Append document ``d`` (larger than every id in the buffer) if it scores above the threshold; the buffer is
    cut back to the top k when full. Returns (count, threshold)."""
    if n == len(buf_s):
        n, threshold = keep_top_k(buf_s, buf_d, n, k)
        if not s > threshold:
            return n, threshold
    buf_s[n], buf_d[n] = s, d
    return n + 1, threshold


@numba.njit(cache=True, nogil=True)
def _count_above(scores, lo, hi, threshold):
    above = 0
    for j in range(lo, hi):
        above += scores[j] > threshold  # branch-free: vectorised
    return above


@numba.njit(cache=True, nogil=True)
def floor_threshold(acc, doc_lo, doc_hi, k, threshold):
    """A threshold below the k-th best score of ``acc[doc_lo:doc_hi]`` (or ``threshold`` if that is higher).

    Positive float32 scores order as their bit patterns do as integers: a histogram of the top 11 bits, then
    one of the next 11 bits within the bin that holds the k-th best, gives a bin edge with at least k scores at
    or above it and few more. Every score below the edge is beaten by k others, so the threshold can start
    there instead of rising slowly while the buffer admits (and repeatedly cuts) thousands of documents."""
    bits = acc[doc_lo:doc_hi].view(np.uint32)
    counts = np.zeros(2048, np.int64)
    prefix, shift, above = np.uint32(0), np.uint32(20), 0
    for level in range(2):
        counts[:] = 0
        for j in range(len(bits)):
            x = bits[j]
            if x < np.uint32(0x80000000) and (x >> (shift + np.uint32(11))) == prefix:  # positive, in the bin
                counts[(x >> shift) & np.uint32(2047)] += 1
        seen = above
        for b in range(2047, -1, -1):
            if seen + counts[b] >= k:
                break
            seen += counts[b]
        if seen + counts[b] < k or (level == 0 and b == 0):
            return threshold  # fewer than k positive scores (or all of them tiny)
        prefix, shift, above = (prefix << np.uint32(11)) | np.uint32(b), shift - np.uint32(11), seen
    edge = (prefix << np.uint32(9)) - np.uint32(1)  # the largest float32 below the bin's lower edge
    return max(np.array([edge], np.uint32).view(np.float32)[0], threshold)


@numba.njit(cache=True, nogil=True)
def select_and_clear(acc, doc_lo, doc_hi, n, threshold, buf_s, buf_d, k):
    """Offer the documents of ``acc[doc_lo:doc_hi]`` above the threshold to the buffer, then zero those scores.

    Counts the scores above the threshold 64 at a time, then 16 at a time, and looks at single scores only in
    the groups of 16 that hold one.
    """
    scores = acc[doc_lo:doc_hi]
    m = np.uint64(len(scores))
    lo = np.uint64(0)
    while lo < m:
        hi = min(lo + np.uint64(64), m)
        if _count_above(scores, lo, hi, threshold):
            for sub in range(lo, hi, np.uint64(16)):
                sub_hi = min(sub + np.uint64(16), hi)
                if _count_above(scores, sub, sub_hi, threshold):
                    for j in range(sub, sub_hi):
                        if scores[j] > threshold:
                            n, threshold = offer(scores[j], doc_lo + np.int64(j), n, threshold, buf_s, buf_d, k)
        scores[lo:hi] = 0
        lo = hi
    return n, threshold


@numba.njit(cache=True, nogil=True)
def _lower_bound(ids, lo, hi, value):
    """The first position in ``[lo, hi)`` whose (ascending) id is at least ``value``."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if ids[mid] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True, nogil=True)
def score_pass(blocks, local_ids, weights, q_terms, q_weights, doc_lo, doc_hi, acc, vector):
    """Every query term adds its postings with doc ids in ``[doc_lo, doc_hi)`` into ``acc``, term by term."""
    b_lo, b_hi = doc_lo >> BLOCK_SHIFT, ((doc_hi - 1) >> BLOCK_SHIFT) + 1
    for i in range(len(q_terms)):
        t, qw = q_terms[i], q_weights[i]
        if i + 1 < len(q_terms):  # start fetching the next term's segment: each segment starts a new stream
            _prefetch_start(local_ids, weights, blocks[q_terms[i + 1], b_lo])
        for b in range(b_lo, b_hi):
            base = np.int64(b) << BLOCK_SHIFT
            lo, hi = blocks[t, b], blocks[t, b + 1]
            if doc_lo > base:  # a pass that starts inside the block
                lo = _lower_bound(local_ids, lo, hi, doc_lo - base)
            if doc_hi < base + BLOCK_DOCS:
                hi = _lower_bound(local_ids, lo, hi, doc_hi - base)
            add_segment(vector, acc, local_ids, weights, lo, hi, qw, base)


def time_kernel(vector: bool, ids: np.ndarray, weights: np.ndarray, bounds: np.ndarray, n_docs: int) -> float:
    """Thread CPU seconds to add the segments ``bounds[i]:bounds[i+1]`` once (for the calibration)."""
    acc = np.zeros(n_docs, np.float32)
    _add_all(vector, acc, ids, weights, bounds)  # compiled and warm
    t0 = time.thread_time()
    _add_all(vector, acc, ids, weights, bounds)
    return time.thread_time() - t0


@numba.njit(cache=True, nogil=True)
def _add_all(vector, acc, ids, weights, bounds):
    for i in range(len(bounds) - 1):
        add_segment(vector, acc, ids, weights, bounds[i], bounds[i + 1], np.float32(0.5), np.int64(0))
