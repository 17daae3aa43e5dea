"""Exact top-k retrieval from a :class:`~pyterrier_disco.index.SparseIndex`."""
from typing import Dict, Optional, Tuple

import numpy as np
import pandas as pd
import pyterrier as pt

from .._errors import InputTypeError
from ._scoring import search
from .artifact import SparseIndex


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


class SparseRetriever(pt.Transformer):
    """Retrieves from a :class:`SparseIndex` with ``query_toks``; exact, sorted, deterministic."""

    def __init__(self, index: SparseIndex, num_results: int = 1000, *, vocab: Optional[str] = None,
                 threads: Optional[int] = None, prune: Optional[bool] = None, verbose: bool = False):
        if isinstance(num_results, bool) or not isinstance(num_results, (int, float, np.number)) or \
                num_results < 1 or num_results != int(num_results):
            raise ValueError(f"num_results must be a whole number >= 1, got {num_results!r}")
        num_results = int(num_results)
        self.index = index
        self.num_results = num_results
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
        arrays, docnos, lexicon = self.index._load()
        built_with = self.index.meta.get("vocab")
        asked_with = self.vocab or inp.attrs.get("vocab")  # the project's encoders stamp their frames
        if asked_with and built_with and asked_with != built_with:
            raise ValueError(f"{self.index.path} was built with vocabulary {built_with}, but the queries "
                             f"come from an encoder with vocabulary {asked_with}: re-index with the same model")
        queries = [self._query_arrays(toks, lexicon, qid) for qid, toks in zip(inp["qid"], inp["query_toks"])]
        asked = sum(1 for toks in inp["query_toks"] if toks)
        n_terms = sum(len(toks) for toks in inp["query_toks"])  # a SPLADE query always shares terms with an index
        if (asked >= 5 or n_terms >= 8) and not any(len(t) for t, _ in queries):
            raise ValueError(f"none of the terms of {asked} queries is in the index {self.index.path}: the queries "
                             "were probably encoded with another vocabulary than the documents")
        query_cols = [c for c in inp.columns if c not in ("docno", "score", "rank")]
        if not queries:
            return pd.DataFrame(columns=query_cols + ["docno", "score", "rank"])
        k = min(self.num_results, len(docnos))  # more than the collection: every document, no larger buffers
        doc_ids, scores, counts = search(arrays, len(docnos), queries, k, self.threads, self.prune)
        rows = np.repeat(np.arange(len(inp)), counts)
        ranks = np.concatenate([np.arange(c) for c in counts]) if len(rows) else np.empty(0, np.int64)
        mask = np.arange(k)[None, :] < counts[:, None]
        out = inp.iloc[rows][query_cols].reset_index(drop=True)
        out["docno"] = docnos[doc_ids[mask]].astype(object)
        out["score"] = scores[mask]
        out["rank"] = ranks.astype(np.int64)
        return out

    @staticmethod
    def _query_arrays(toks, lexicon: Dict[str, int], qid) -> Tuple[np.ndarray, np.ndarray]:
        pairs = [(lexicon[t], w) for t, w in toks.items() if t in lexicon and w != 0]
        if not pairs:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        t, w = zip(*pairs)
        return np.asarray(t, np.int64), np.asarray(w, np.float64)

    def __repr__(self):
        return f"SparseRetriever({str(self.index.path)!r}, num_results={self.num_results})"
