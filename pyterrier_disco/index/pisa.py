"""The pyterrier-pisa backend behind the same interface as :class:`~pyterrier_disco.index.SparseIndex`."""
import contextlib
import ctypes
import itertools
import os
import sys
from pathlib import Path
from typing import Iterable, Optional

import pandas as pd
import pyterrier as pt


class PisaBackend:
    """The same interface over pyterrier-pisa (``stemmer='none'``, quantised dot product)."""

    def __init__(self, path, *, threads: int = 1, verbose: bool = True):
        import pyterrier_pisa
        from pyterrier_pisa import PisaIndex

        try:
            pyterrier_pisa.log_level(verbose)
        except AttributeError:  # some builds lack the switch; PISA then logs to stderr
            pass
        self.path = Path(path)
        self.pisa = PisaIndex(str(path), stemmer="none", threads=threads)
        self.verbose = verbose

    def built(self) -> bool:
        return self.pisa.built()

    def indexer(self, *, vocab: Optional[str] = None, overwrite: bool = False, verbose=None) -> pt.Indexer:
        return _GuardedPisaIndexer(self, overwrite=overwrite)

    def retriever(self, num_results: int = 1000, *, vocab: Optional[str] = None, threads: Optional[int] = None,
                  verbose: bool = False) -> pt.Transformer:
        if not self.built():
            raise FileNotFoundError(f"no PISA index at {self.path}")
        with _stdout_to_stderr():  # creating it builds the quantised index files on first use
            return _QuietPisaRetriever(self.pisa.quantized(num_results=num_results, threads=threads,
                                                           verbose=verbose))

    def __repr__(self):
        return f"PisaBackend({str(self.path)!r})"


class _QuietPisaRetriever(pt.Transformer):
    """PISA's quantised retriever with its stdout logging (the first query builds files) sent to stderr."""

    def __init__(self, retriever: pt.Transformer):
        self.retriever = retriever

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        with _stdout_to_stderr():
            return self.retriever(inp)

    def __repr__(self):
        return repr(self.retriever)


class _GuardedPisaIndexer(pt.Indexer):
    """PISA's toks indexer, after checking that some document has a term (else PISA kills the process)."""

    def __init__(self, backend: PisaBackend, overwrite: bool = False):
        self.backend = backend
        self.overwrite = overwrite

    def index_inputs(self):
        return [["docno", "toks"]]

    def index(self, it: Iterable[dict]):
        it = iter(pt.tqdm(it, desc="indexing (PISA)", unit="doc", disable=not self.backend.verbose))
        leading = []  # buffered only until the first non-empty document
        for record in it:
            leading.append(record)
            if any(w > 0 for w in record["toks"].values()):
                break
        else:
            if not leading:
                raise ValueError("cannot build an index from zero documents")
            raise ValueError(f"all {len(leading)} documents are empty (no term with a positive weight): "
                             "PISA cannot index that")
        records = itertools.chain(leading, it)
        if self.backend.built() and not self.overwrite:
            raise FileExistsError(f"{self.backend.path} already holds a PISA index; pass overwrite=True to replace it")
        mode = "overwrite" if self.overwrite else "create"
        with _stdout_to_stderr():  # PISA's C++ logging writes to stdout, which belongs to the caller's output
            self.backend.pisa.toks_indexer(mode=mode).index(records)
        return self.backend


@contextlib.contextmanager
def _stdout_to_stderr():
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        ctypes.CDLL(None).fflush(None)  # C stdio buffers too, before fd 1 points back at stdout
        os.dup2(saved, 1)
        os.close(saved)
