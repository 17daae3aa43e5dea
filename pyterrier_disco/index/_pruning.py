"""Exact dynamic pruning: block-max MaxScore over the index's 65536-document blocks.

Per block, with the k-th best score so far ``theta`` (documents of later blocks have larger ids, so they must
score strictly above it to enter the top k):

1. each query term's bound in the block is ``q_weight x block_max[term, block]`` (the index stores the largest
   weight of every term in every block); the *non-essential* terms are a set whose bounds sum to at most
   ``PRUNE_BUDGET x theta``, filled greedily with the terms that hold the most postings per unit of bound;
2. the essential terms add their postings into the scores; a document can reach the top k only if its partial
   score plus the non-essential bounds exceeds ``theta`` (with a margin covering float32 rounding), so a
   document without an essential term never can, and the non-essential posting lists are not read at all;
3. the candidates are re-scored from scratch over *all* query terms in query order, each posting list walked
   forward once, so every candidate gets the exhaustive scorer's float32 sum bit for bit; they
   enter the top-k buffer exactly as the exhaustive scan would offer them.

When the non-essential terms hold few postings, or the candidates would cost more to re-score than the skipped
postings (``LOOKUP_COST`` postings per candidate and term), the block is scored exhaustively instead. So the
results equal exhaustive scoring in documents, scores and tie order, whatever is pruned. Queries with a
non-positive weight are never pruned (the bounds assume non-negative contributions).
"""
import numba
import numpy as np

from ._kernels import (BLOCK_DOCS, BLOCK_SHIFT, add_segment, floor_threshold, keep_top_k, offer, score_pass,
                       select_and_clear)

PRUNE_BUDGET = 0.5  # non-essential bounds may sum to this fraction of theta (1 = classic MaxScore)
LOOKUP_COST = 30.0  # one candidate x term look-up, in postings streamed
MIN_SKIP = 0.6  # prune a block only if the non-essential lists hold at least this fraction of its postings
MAX_TERMS = 64  # prune=None: only queries up to this long (rewrites, 30-60 terms); long contexts skip little


def use_pruning(q_weights: np.ndarray, k: int, n_docs: int, forced: bool = False) -> bool:
    """Whether to prune a query: only with positive finite weights, over more than one block; then when
    ``forced`` or the query has at most ``MAX_TERMS`` terms."""
    if len(q_weights) == 0 or n_docs <= BLOCK_DOCS or not (np.isfinite(q_weights).all() and (q_weights > 0).all()):
        return False
    return forced or len(q_weights) <= MAX_TERMS


@numba.njit(cache=True, nogil=True)
def block_maxima(blocks, weights):
    """``block_max[t, b]``: the largest weight of term ``t`` in block ``b`` (0 where it has no posting there)."""
    n_terms, n_blocks = blocks.shape[0], blocks.shape[1] - 1
    out = np.zeros((n_terms, n_blocks), weights.dtype)
    for t in range(n_terms):
        for b in range(n_blocks):
            for p in range(blocks[t, b], blocks[t, b + 1]):
                if weights[p] > out[t, b]:
                    out[t, b] = weights[p]
    return out


@numba.njit(cache=True, nogil=True)
def _collect_above(acc, doc_lo, doc_hi, cut, cand):
    """Local ids of the documents of ``acc[doc_lo:doc_hi]`` scoring above ``cut`` into ``cand``; zeroes the scores."""
    scores = acc[doc_lo:doc_hi]
    n = 0
    for j in range(len(scores)):
        if scores[j] > cut:
            cand[n] = j
            n += 1
    scores[:] = 0
    return n


@numba.njit(cache=True, nogil=True)
def _rescore(blocks, local_ids, weights, q_terms, q_weights, b, cand, nc, cand_s):
    """Exact scores of the candidates (local ids, ascending), each summed over the terms in query order: term by
    term, the posting list is walked forward once, 16 ids at a time while they all lie before the next
    candidate. The walk streams the ids (prefetch-friendly) instead of jumping with a search, whose dependent
    cache misses cost far more per candidate."""
    cand_s[:nc] = 0
    for i in range(len(q_terms)):
        t, qw = q_terms[i], q_weights[i]
        p, hi = blocks[t, b], blocks[t, b + 1]
        for j in range(nc):
            d = cand[j]
            while p + 16 <= hi and local_ids[p + 15] < d:
                p += 16
            while p < hi and local_ids[p] < d:
                p += 1
            if p == hi:
                break
            if local_ids[p] == d:
                cand_s[j] += qw * np.float32(weights[p])


@numba.njit(cache=True, nogil=True)
def _split_terms(blocks, block_max, q_terms, q_weights, b, budget, essential):
    """Mark the non-essential terms of block ``b`` (greedy: most postings per unit of bound first, bounds summing
    to at most ``budget``); returns (their bound sum, their postings, all postings)."""
    nq = len(q_terms)
    ratio = np.empty(nq)
    ub = np.empty(nq)
    total = 0
    for i in range(nq):
        t = q_terms[i]
        n_post = blocks[t, b + 1] - blocks[t, b]
        total += n_post
        ub[i] = np.float64(q_weights[i]) * np.float64(block_max[t, b])
        ratio[i] = ub[i] / max(n_post, 1)
        essential[i] = True
    slack, skipped = 0.0, 0
    for i in np.argsort(ratio):
        if slack + ub[i] <= budget:
            slack += ub[i]
            skipped += blocks[q_terms[i], b + 1] - blocks[q_terms[i], b]
            essential[i] = False
    return slack, skipped, total


def tuning() -> np.ndarray:
    """The module's tuning constants as the array the engine takes (read at each search, so tests can set them)."""
    return np.array([PRUNE_BUDGET, LOOKUP_COST, MIN_SKIP], np.float64)


@numba.njit(cache=True, nogil=True)
def pruned_blocks_top_k(blocks, local_ids, weights, block_max, q_terms, q_weights, block_lo, block_hi, n_docs, k,
                        acc, buf_s, buf_d, vector, tune, stats):
    """As the exhaustive ``_blocks_top_k`` (same buffer contract), skipping what cannot reach the top k.

    ``tune``: (budget, look-up cost, minimum skipped fraction), see :func:`tuning`. ``stats`` (int64, 4) adds up
    the blocks scored exhaustively, the blocks pruned, the candidates re-scored and the postings skipped."""
    budget_fraction, lookup_cost, min_skip = tune[0], tune[1], tune[2]
    n = 0
    threshold = np.float32(0)
    nq = len(q_terms)
    g = (nq + 4) * 2.0 ** -23  # twice the relative error bound of a float32 sum of nq + 1 products
    essential = np.empty(nq, np.bool_)
    cand = np.empty(BLOCK_DOCS, np.int64)
    cand_s = np.empty(BLOCK_DOCS, np.float32)
    for b in range(block_lo, block_hi):
        base = np.int64(b) << BLOCK_SHIFT
        doc_hi = min(base + BLOCK_DOCS, n_docs)
        if n >= 2 * k:  # a tighter threshold before deciding what to skip (cuts amortised as in the buffer)
            n, threshold = keep_top_k(buf_s, buf_d, n, k)
        slack, skipped, total = 0.0, 0, 1
        if threshold > 0:
            budget = budget_fraction * threshold / (1 + g) ** 2
            slack, skipped, total = _split_terms(blocks, block_max, q_terms, q_weights, b, budget, essential)
        if skipped > 0 and skipped >= min_skip * total:
            for i in range(nq):
                if essential[i]:
                    t = q_terms[i]
                    add_segment(vector, acc, local_ids, weights, blocks[t, b], blocks[t, b + 1], q_weights[i], base)
            # partial / (1 - g) + slack * (1 + g) bounds the exact score from above (then times 1 + g)
            cut = (threshold / (1 + g) - slack * (1 + g)) * (1 - g)
            nc = _collect_above(acc, base, doc_hi, cut, cand)
            if nc * nq * lookup_cost <= skipped:
                _rescore(blocks, local_ids, weights, q_terms, q_weights, b, cand, nc, cand_s)
                for j in range(nc):
                    if cand_s[j] > threshold:
                        n, threshold = offer(cand_s[j], base + cand[j], n, threshold, buf_s, buf_d, k)
                stats[1] += 1
                stats[2] += nc
                stats[3] += skipped
                continue
        stats[0] += 1
        score_pass(blocks, local_ids, weights, q_terms, q_weights, base, doc_hi, acc, vector)
        if n < k:
            threshold = floor_threshold(acc, base, doc_hi, k, threshold)
        n, threshold = select_and_clear(acc, base, doc_hi, n, threshold, buf_s, buf_d, k)
    return keep_top_k(buf_s, buf_d, n, k)[0]
