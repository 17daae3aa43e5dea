"""Efficiency measures of the DiSCo paper: FLOPs (Eq. 7) and query length."""
from typing import Dict, Iterable, Mapping, Union

import numpy as np
import scipy.sparse as sp

Vectors = Union[sp.spmatrix, Iterable[Dict[str, float]]]


def activation_probability(vectors: Vectors) -> Dict[str, float]:
    """p_j: the fraction of vectors in which term j has a non-zero weight."""
    if sp.issparse(vectors):
        m = vectors.tocsc()
        counts = np.diff(m.indptr)
        return {j: c / m.shape[0] for j, c in enumerate(counts) if c} if m.shape[0] else {}
    counts: Dict[str, int] = {}
    n = 0
    for v in vectors:
        n += 1
        for term, w in v.items():
            if w != 0:
                counts[term] = counts.get(term, 0) + 1
    return {t: c / n for t, c in counts.items()}


def flops(queries: Vectors, docs: Union[Vectors, Mapping[str, float]]) -> float:
    """Expected floating-point operations per query-document pair (DiSCo Eq. 7, after SPLADE):

    FLOPs = sum_j p_j(q) * p_j(d), where p_j(q) is the probability that term j is active in a query
    (averaged over the query set) and p_j(d) likewise over the document collection. Vectors are CSR
    matrices over the same vocabulary or ``{term: weight}`` dicts; ``docs`` may also be the precomputed
    ``{term: p_j(d)}`` (e.g. :meth:`pyterrier_disco.SparseIndex.term_probabilities`).
    """
    pq = activation_probability(queries)
    pd = dict(docs) if isinstance(docs, Mapping) else activation_probability(docs)
    return float(sum(p * pd[t] for t, p in pq.items() if t in pd))


def query_length(queries: Vectors) -> float:
    """Average number of non-zero terms per query (``q_len``)."""
    if sp.issparse(queries):
        return float(queries.getnnz(axis=1).mean()) if queries.shape[0] else 0.0
    lengths = [sum(1 for w in v.values() if w != 0) for v in queries]
    return float(np.mean(lengths)) if lengths else 0.0
