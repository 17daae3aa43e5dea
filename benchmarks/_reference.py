"""The DiSCo paper's scorer: a faithful re-implementation of naver/splade's ``SparseRetrieval`` (numba).

DiSCo (SimonLupart/disco-conv-splade) retrieves with naver/splade's ``splade/evaluate/retrieval.py``:

- the inverted index is two ``numba.typed.Dict``: term id -> int32 doc ids, term id -> float32 weights;
- per query, ``numba_score_float`` allocates a dense float32 accumulator over the whole collection, goes
  term-at-a-time over the query's terms (in term-id order: the query vector's non-zeros), and adds
  ``q_w * weight`` for each posting in a ``numba.prange`` loop (parallel inside one posting list: the doc ids of
  one list are distinct, so there is no race); then ``np.argwhere(scores > threshold)`` (threshold 0) keeps the
  matched documents and returns them with their negated scores;
- ``select_topk`` takes the k smallest negated scores with ``np.argpartition``. naver/splade leaves the k
  unsorted (the run file is sorted when written); here the k are sorted too, so ranks can be compared.

The numba thread count (``numba.set_num_threads``) sets how many threads share each posting list.
"""
import time
from typing import Tuple

import numba
import numpy as np
import scipy.sparse as sp


@numba.njit(nogil=True, parallel=True, cache=True)
def numba_score_float(inverted_index_ids, inverted_index_floats, indexes_to_retrieve, query_values,
                      threshold, size_collection):
    scores = np.zeros(size_collection, dtype=np.float32)  # initialize array with size = size of collection
    n = len(indexes_to_retrieve)
    for _idx in range(n):
        local_idx = indexes_to_retrieve[_idx]  # which posting list to search
        query_float = query_values[_idx]  # what is the value of the query for this posting list
        retrieved_indexes = inverted_index_ids[local_idx]  # get indexes from posting list
        retrieved_floats = inverted_index_floats[local_idx]  # get values from posting list
        for j in numba.prange(len(retrieved_indexes)):
            scores[retrieved_indexes[j]] += query_float * retrieved_floats[j]
    filtered_indexes = np.argwhere(scores > threshold)[:, 0]  # ideally we should have a threshold to filter
    # unused documents => this should be tuned, currently it is set to 0
    return filtered_indexes, -scores[filtered_indexes]


def select_topk(filtered_indexes: np.ndarray, scores: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """naver/splade's ``select_topk`` on negated scores, plus the final sort of the k."""
    if len(filtered_indexes) > k:
        sorted_ = np.argpartition(scores, k)[:k]
        filtered_indexes, scores = filtered_indexes[sorted_], scores[sorted_]
    order = np.argsort(scores, kind="stable")
    return filtered_indexes[order], -scores[order]


class ReferenceIndex:
    """The typed-dict inverted index of ``SparseRetrieval`` built from a (docs x terms) CSR matrix."""

    def __init__(self, docs: sp.csr_matrix):
        csc = docs.tocsc()
        csc.sort_indices()
        self.size_collection = docs.shape[0]
        self.ids = numba.typed.Dict.empty(key_type=numba.types.int64, value_type=numba.types.int32[:])
        self.floats = numba.typed.Dict.empty(key_type=numba.types.int64, value_type=numba.types.float32[:])
        self.has_term = np.diff(csc.indptr) > 0
        self.nbytes = 0
        for t in np.flatnonzero(self.has_term):
            lo, hi = csc.indptr[t], csc.indptr[t + 1]
            self.ids[int(t)] = csc.indices[lo:hi].astype(np.int32)
            self.floats[int(t)] = csc.data[lo:hi].astype(np.float32)
            self.nbytes += 8 * int(hi - lo)

    def query_arrays(self, terms: np.ndarray, weights: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """The query's terms that have postings (a typed dict raises on a missing key), as int64 / float32."""
        keep = self.has_term[terms]
        return terms[keep].astype(np.int64), weights[keep].astype(np.float32)

    def search(self, terms: np.ndarray, weights: np.ndarray, k: int, threshold: float = 0.0):
        """Top-k (doc ids, scores) of one query."""
        terms, weights = self.query_arrays(terms, weights)
        filtered, neg_scores = numba_score_float(self.ids, self.floats, terms, weights, threshold,
                                                 self.size_collection)
        return select_topk(filtered, neg_scores, k)

    def time_parts(self, terms: np.ndarray, weights: np.ndarray, k: int) -> dict:
        """Seconds of one query's steps, run apart: the accumulation (``np.zeros`` + postings), the ``argwhere``
        filter with the gather of the scores, ``select_topk``; and how many documents matched."""
        terms, weights = self.query_arrays(terms, weights)
        t0 = time.perf_counter()
        scores = accumulate_only(self.ids, self.floats, terms, weights, self.size_collection)
        t1 = time.perf_counter()
        filtered, neg_scores = filter_only(scores, 0.0)
        t2 = time.perf_counter()
        select_topk(filtered, neg_scores, k)
        t3 = time.perf_counter()
        return {"accumulate": t1 - t0, "filter": t2 - t1, "select_topk": t3 - t2, "matched_docs": len(filtered)}


# -- diagnostics: numba_score_float cut in two, to see where its time goes ---------------------------------

@numba.njit(nogil=True, parallel=True, cache=True)
def accumulate_only(inverted_index_ids, inverted_index_floats, indexes_to_retrieve, query_values, size_collection):
    """``numba_score_float`` without the ``argwhere`` filter: only to split the reference's time (diagnostic)."""
    scores = np.zeros(size_collection, dtype=np.float32)
    for _idx in range(len(indexes_to_retrieve)):
        retrieved_indexes = inverted_index_ids[indexes_to_retrieve[_idx]]
        retrieved_floats = inverted_index_floats[indexes_to_retrieve[_idx]]
        query_float = query_values[_idx]
        for j in numba.prange(len(retrieved_indexes)):
            scores[retrieved_indexes[j]] += query_float * retrieved_floats[j]
    return scores


@numba.njit(nogil=True, parallel=True, cache=True)
def filter_only(scores, threshold):
    """The end of ``numba_score_float``: the matched documents and their negated scores (diagnostic)."""
    filtered_indexes = np.argwhere(scores > threshold)[:, 0]
    return filtered_indexes, -scores[filtered_indexes]
