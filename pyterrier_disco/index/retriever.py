"""Exact top-k retrieval from a :class:`~pyterrier_disco.index.SparseIndex`."""
from typing import Dict, NamedTuple, Optional, Tuple

import numpy as np
import pandas as pd
import pyterrier as pt

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
                 threads: Optional[int] = None, verbose: bool = False):
        if num_results < 1:
            raise ValueError(f"num_results must be >= 1, got {num_results}")
        self.index = index
        self.num_results = num_results
        self.vocab = vocab
        self.threads = threads
        self.verbose = verbose

    def fuse_rank_cutoff(self, k: int) -> Optional["SparseRetriever"]:
        if k < self.num_results:
            return SparseRetriever(self.index, k, vocab=self.vocab, threads=self.threads, verbose=self.verbose)
        return None

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        pt.validate.query_frame(inp, extra_columns=["query_toks"], context=self)
        check_vocab(self.index.path, self.index.meta.get("vocab"), self.vocab or inp.attrs.get("vocab"))
        hits = self.hits(inp["qid"], inp["query_toks"])
        check_terms_found(inp["query_toks"], hits.terms_found, self.index.path)
        return hits_frame(inp, hits)

    def hits(self, qids, query_toks) -> Hits:
        """The top ``num_results`` of each query (no vocabulary checks: :meth:`transform` makes them)."""
        arrays, docnos, lexicon = self.index._load()
        queries = [self._query_arrays(toks, lexicon, qid) for qid, toks in zip(qids, query_toks)]
        found = sum(len(t) for t, _ in queries)
        if not queries:
            return Hits(np.zeros(0, np.int64), np.empty(0, object), np.empty(0, np.float32), found)
        doc_ids, scores, counts = search(arrays, len(docnos), queries, self.num_results, self.threads)
        mask = np.arange(self.num_results)[None, :] < counts[:, None]
        return Hits(counts.astype(np.int64), docnos[doc_ids[mask]].astype(object), scores[mask], found)

    @staticmethod
    def _query_arrays(toks, lexicon: Dict[str, int], qid) -> Tuple[np.ndarray, np.ndarray]:
        check_query_toks(qid, toks)
        pairs = [(lexicon[t], w) for t, w in toks.items() if t in lexicon and w != 0]
        if not pairs:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        t, w = zip(*pairs)
        return np.asarray(t, np.int64), np.asarray(w, np.float64)

    def __repr__(self):
        return f"SparseRetriever({str(self.index.path)!r}, num_results={self.num_results})"


def check_query_toks(qid, toks) -> None:
    if not isinstance(toks, dict):
        raise TypeError(f"query_toks of query {qid!r} must be a dict term -> weight, got {type(toks).__name__}")


def check_vocab(path, built_with: Optional[str], asked_with: Optional[str]) -> None:
    """Refuse queries encoded with another vocabulary than the index (the project's encoders stamp their frames)."""
    if asked_with and built_with and asked_with != built_with:
        raise ValueError(f"{path} was built with vocabulary {built_with}, but the queries "
                         f"come from an encoder with vocabulary {asked_with}: re-index with the same model")


def check_terms_found(query_toks, terms_found: int, path) -> None:
    """A SPLADE query always shares terms with an index: several long queries with none point to another
    vocabulary."""
    asked = sum(1 for toks in query_toks if toks)
    n_terms = sum(len(toks) for toks in query_toks)
    if (asked >= 5 or n_terms >= 20) and not terms_found:
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
