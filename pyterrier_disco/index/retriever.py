"""Exact top-k retrieval from a :class:`~pyterrier_disco.index.SparseIndex`, and the checks and result frames
that the sharded retriever shares."""
from typing import Dict, NamedTuple, Optional, Tuple

import numpy as np
import pandas as pd
import pyterrier as pt

from .._errors import InputTypeError
from ._scoring import search
from .artifact import SparseIndex


class Hits(NamedTuple):
    """The top k of a batch of queries: ``counts[i]`` results for query ``i``, in rank order, query after query."""
    counts: np.ndarray  # int64, one per query
    docnos: np.ndarray  # object
    scores: np.ndarray  # float64 (sums of float32 products, exactly as the scorer left them)
    terms_found: int  # query terms (over all queries) that the index has


class SparseRetriever(pt.Transformer):
    """Retrieves from a :class:`SparseIndex` with ``query_toks``; exact, sorted, deterministic."""

    def __init__(self, index: SparseIndex, num_results: int = 1000, *, vocab: Optional[str] = None,
                 threads: Optional[int] = None, prune: Optional[bool] = None, verbose: bool = False):
        self.index = index
        self.num_results = check_num_results(num_results)
        self.vocab = vocab
        self.threads = threads
        self.prune = prune
        self.verbose = verbose

    def fuse_rank_cutoff(self, k: int) -> Optional["SparseRetriever"]:
        """``retriever % k`` as one retriever of the top ``k`` (exact search: the same first ``k`` results)."""
        if k < self.num_results:
            return pt.inspect.transformer_apply_attributes(self, num_results=k)
        return None

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        pt.validate.query_frame(inp, extra_columns=["query_toks"], context=self)
        check_queries(inp)
        check_vocab(self.index.path, self.index.meta.get("vocab"), self.vocab or inp.attrs.get("vocab"))
        hits = self.hits(inp["qid"], inp["query_toks"])
        check_terms_found(inp["query_toks"], hits.terms_found, self.index.path)
        return hits_frame(inp, hits)

    def hits(self, qids, query_toks) -> Hits:
        """The top ``num_results`` of each query (no checks: :meth:`transform` makes them)."""
        arrays, docnos, lexicon = self.index._load()
        queries = [self._query_arrays(toks, lexicon) for toks in query_toks]
        found = sum(len(t) for t, _ in queries)
        if not queries:
            return Hits(np.zeros(0, np.int64), np.empty(0, object), np.empty(0, np.float32), found)
        k = min(self.num_results, len(docnos))  # more than the collection: every document, no larger buffers
        doc_ids, scores, counts = search(arrays, len(docnos), queries, k, self.threads, self.prune)
        mask = np.arange(k)[None, :] < counts[:, None]
        return Hits(counts.astype(np.int64), docnos[doc_ids[mask]].astype(object), scores[mask], found)

    @staticmethod
    def _query_arrays(toks, lexicon: Dict[str, int]) -> Tuple[np.ndarray, np.ndarray]:
        pairs = [(lexicon[t], w) for t, w in toks.items() if t in lexicon and w != 0]
        if not pairs:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        t, w = zip(*pairs)
        return np.asarray(t, np.int64), np.asarray(w, np.float64)

    def __repr__(self):
        return f"SparseRetriever({str(self.index.path)!r}, num_results={self.num_results})"


def check_num_results(num_results) -> int:
    if isinstance(num_results, bool) or not isinstance(num_results, (int, float, np.number)) or \
            num_results < 1 or num_results != int(num_results):
        raise ValueError(f"num_results must be a whole number >= 1, got {num_results!r}")
    return int(num_results)


def check_queries(inp: pd.DataFrame) -> None:
    """Refuse, naming the rows, what would silently give wrong rankings: a qid on several rows (two ranked
    lists under one qid), ``query_toks`` that are not dicts, negative or NaN weights (never retrieved)."""
    dupes = inp["qid"].duplicated(keep=False)
    if dupes.any():
        first = inp["qid"][dupes].iloc[0]
        rows = [i for i, d in enumerate(dupes) if d and inp["qid"].iloc[i] == first]
        raise ValueError(f"qid {first!r} appears on rows {rows} ({int(dupes.sum())} rows share a qid): each query "
                         "needs its own qid")
    for i, (qid, toks) in enumerate(zip(inp["qid"], inp["query_toks"])):
        if not isinstance(toks, dict):
            raise InputTypeError(f"query_toks of query {qid!r} (row {i}) must be a dict term -> weight, got "
                                 f"{type(toks).__name__}")
        try:
            weights = np.fromiter(toks.values(), np.float64, len(toks))
        except (TypeError, ValueError):
            weights = np.array([np.nan])
        if not (np.isfinite(weights).all() and (weights >= 0).all()):
            bad = {t: w for t, w in toks.items() if not (isinstance(w, (int, float, np.number)) and 0 <= w < np.inf)}
            raise ValueError(f"query_toks of query {qid!r} (row {i}) hold negative, NaN, infinite or non-numeric "
                             f"weights: {dict(list(bad.items())[:5])}")


def check_vocab(path, built_with: Optional[str], asked_with: Optional[str]) -> None:
    """Refuse queries encoded with another vocabulary than the index (the project's encoders stamp their frames)."""
    if asked_with and built_with and asked_with != built_with:
        raise ValueError(f"{path} was built with vocabulary {built_with}, but the queries "
                         f"come from an encoder with vocabulary {asked_with}: re-index with the same model")


def check_terms_found(query_toks, terms_found: int, path) -> None:
    """A SPLADE query always shares terms with an index: several queries, or one of 8+ terms, with none point to
    another vocabulary."""
    asked = sum(1 for toks in query_toks if toks)
    n_terms = sum(len(toks) for toks in query_toks)
    if (asked >= 5 or n_terms >= 8) and not terms_found:
        raise ValueError(f"none of the terms of {asked} queries is in the index {path}: the queries "
                         "were probably encoded with another vocabulary than the documents")


def hits_frame(inp: pd.DataFrame, hits: Optional[Hits]) -> pd.DataFrame:
    """The result frame: each query's columns (without old docno/score/rank) with its hits, ranked from 0."""
    query_cols = [c for c in inp.columns if c not in ("docno", "score", "rank")]
    if not len(inp):
        return pd.DataFrame(columns=query_cols + ["docno", "score", "rank"])
    out = inp.iloc[np.repeat(np.arange(len(inp)), hits.counts)][query_cols].reset_index(drop=True)
    out["docno"] = hits.docnos
    out["score"] = hits.scores
    out["rank"] = ranks(hits.counts)
    return out


def ranks(counts: np.ndarray) -> np.ndarray:
    """0, 1, ... within each query's run of ``counts[i]`` hits."""
    starts = np.cumsum(counts) - counts
    return (np.arange(int(counts.sum())) - np.repeat(starts, counts)).astype(np.int64)
