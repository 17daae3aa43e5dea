"""Exact top-k retrieval from a :class:`~pyterrier_disco.index.SparseIndex`."""
from typing import Dict, Optional, Tuple

import numpy as np
import pandas as pd
import pyterrier as pt

from ._scoring import search
from .artifact import SparseIndex


class SparseRetriever(pt.Transformer):
    """Retrieves from a :class:`SparseIndex` with ``query_toks``; exact, sorted, deterministic."""

    def __init__(self, index: SparseIndex, num_results: int = 1000, *, vocab: Optional[str] = None,
                 threads: Optional[int] = None, prune: Optional[bool] = None, verbose: bool = False):
        if num_results < 1:
            raise ValueError(f"num_results must be >= 1, got {num_results}")
        self.index = index
        self.num_results = num_results
        self.vocab = vocab
        self.threads = threads
        self.prune = prune
        self.verbose = verbose

    def fuse_rank_cutoff(self, k: int) -> Optional["SparseRetriever"]:
        if k < self.num_results:
            return SparseRetriever(self.index, k, vocab=self.vocab, threads=self.threads, prune=self.prune,
                                   verbose=self.verbose)
        return None

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        pt.validate.query_frame(inp, extra_columns=["query_toks"], context=self)
        arrays, docnos, lexicon = self.index._load()
        built_with = self.index.meta.get("vocab")
        asked_with = self.vocab or inp.attrs.get("vocab")  # the project's encoders stamp their frames
        if asked_with and built_with and asked_with != built_with:
            raise ValueError(f"{self.index.path} was built with vocabulary {built_with}, but the queries "
                             f"come from an encoder with vocabulary {asked_with}: re-index with the same model")
        queries = [self._query_arrays(toks, lexicon, qid) for qid, toks in zip(inp["qid"], inp["query_toks"])]
        asked = sum(1 for toks in inp["query_toks"] if toks)
        n_terms = sum(len(toks) for toks in inp["query_toks"])  # a SPLADE query always shares terms with an index
        if (asked >= 5 or n_terms >= 20) and not any(len(t) for t, _ in queries):
            raise ValueError(f"none of the terms of {asked} queries is in the index {self.index.path}: the queries "
                             "were probably encoded with another vocabulary than the documents")
        query_cols = [c for c in inp.columns if c not in ("docno", "score", "rank")]
        if not queries:
            return pd.DataFrame(columns=query_cols + ["docno", "score", "rank"])
        doc_ids, scores, counts = search(arrays, len(docnos), queries, self.num_results, self.threads, self.prune)
        rows = np.repeat(np.arange(len(inp)), counts)
        ranks = np.concatenate([np.arange(c) for c in counts]) if len(rows) else np.empty(0, np.int64)
        mask = np.arange(self.num_results)[None, :] < counts[:, None]
        out = inp.iloc[rows][query_cols].reset_index(drop=True)
        out["docno"] = docnos[doc_ids[mask]].astype(object)
        out["score"] = scores[mask]
        out["rank"] = ranks.astype(np.int64)
        return out

    @staticmethod
    def _query_arrays(toks, lexicon: Dict[str, int], qid) -> Tuple[np.ndarray, np.ndarray]:
        if not isinstance(toks, dict):
            raise TypeError(f"query_toks of query {qid!r} must be a dict term -> weight, got {type(toks).__name__}")
        pairs = [(lexicon[t], w) for t, w in toks.items() if t in lexicon and w != 0]
        if not pairs:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        t, w = zip(*pairs)
        return np.asarray(t, np.int64), np.asarray(w, np.float64)

    def __repr__(self):
        return f"SparseRetriever({str(self.index.path)!r}, num_results={self.num_results})"
