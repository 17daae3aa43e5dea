"""The pyterrier-pisa backend behind the same interface as :class:`~pyterrier_disco.index.SparseIndex`."""
import contextlib
import ctypes
import itertools
import os
import re
import sys
from pathlib import Path
from typing import Iterable, Optional

import pandas as pd
import pyterrier as pt

from .._checksums import check_files, manifest
from .._folders import MARKER, atomic_dir, is_ours, read_marker, write_marker
from .._utils import read_json
from .artifact import CorruptIndexError
from .retriever import check_queries

PISA_KIND = "pisa_index"
# pyterrier-pisa's files, also those its retrieval writes
_PISA_FILES = re.compile(r"(inv|fwd|quantized)(\.[\w-]+)*|pt_meta\.json")


def is_pisa_folder(path) -> bool:
    """Whether ``path`` is a PISA index this project wrote, holding only PISA's files."""
    return is_ours(path, PISA_KIND, lambda name: bool(_PISA_FILES.fullmatch(name)))


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
        if (self.path / "pt_meta.json").exists():  # pyterrier-pisa would fail with a bare KeyError / JSON error
            try:
                meta = read_json(self.path / "pt_meta.json", "index metadata")
            except ValueError as e:
                raise CorruptIndexError(str(e)) from e
            if "stemmer" not in meta:
                raise CorruptIndexError(f"{self.path / 'pt_meta.json'} lacks the PISA index's stemmer: the metadata "
                                        "is incomplete or damaged; rebuild the index")
            checksums = (read_marker(path) or {}).get("checksums")
            if checksums:
                check_files(path, checksums, CorruptIndexError, where=MARKER)
        self.pisa = PisaIndex(str(path), stemmer="none", threads=threads)
        self.verbose = verbose

    def built(self) -> bool:
        return self.pisa.built()

    def indexer(self, *, vocab: Optional[str] = None, overwrite: bool = False, verbose=None,
                info: Optional[dict] = None) -> pt.Indexer:
        return _GuardedPisaIndexer(self, overwrite=overwrite, info={**(info or {}), "vocab": vocab})

    @property
    def info(self) -> dict:
        """What the index was built from (``dataset``, ``doc_model``, ``vocab``), as recorded in its marker."""
        return {k: v for k, v in (read_marker(self.path) or {}).items()
                if k not in ("type", "files", "writing", "checksums")}

    def verify(self) -> dict:
        """Hash every file recorded when the index was built (see :meth:`SparseIndex.verify`)."""
        checksums = (read_marker(self.path) or {}).get("checksums")
        hashed = check_files(self.path, checksums, CorruptIndexError, full=True, where=MARKER) if checksums else 0
        return {"path": str(self.path), "checksums": bool(checksums), "files_hashed": hashed}

    def retriever(self, num_results: int = 1000, *, vocab: Optional[str] = None, threads: Optional[int] = None,
                  verbose: bool = False) -> pt.Transformer:
        if not self.built():
            raise FileNotFoundError(f"no PISA index at {self.path}")
        with _stdout_to_stderr(), _pisa_errors(self.path):  # creating it builds the quantised files on first use
            return _QuietPisaRetriever(self.pisa.quantized(num_results=num_results, threads=threads,
                                                           verbose=verbose), self.path, vocab or self.info.get("vocab"))

    def __repr__(self):
        return f"PisaBackend({str(self.path)!r})"


class _QuietPisaRetriever(pt.Transformer):
    """PISA's quantised retriever with its stdout logging (the first query builds files) sent to stderr."""

    def __init__(self, retriever: pt.Transformer, path=None, vocab: Optional[str] = None):
        self.retriever = retriever
        self.path = path
        self.vocab = vocab

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        if "query_toks" in inp.columns:
            check_queries(inp)
        asked = inp.attrs.get("vocab")  # stamped by the project's query encoders
        if self.vocab and asked and asked != self.vocab:
            raise ValueError(f"{self.path} was built with vocabulary {self.vocab}, but the queries come from an "
                             f"encoder with vocabulary {asked}: re-index with the same model")
        with _stdout_to_stderr(), _pisa_errors(self.path):
            return self.retriever(inp)

    def transform_inputs(self):
        return pt.inspect.transformer_inputs(self.retriever)

    def transform_outputs(self, input_columns):
        return pt.inspect.transformer_outputs(self.retriever, input_columns)

    def apply_attributes(self, **kwargs) -> "_QuietPisaRetriever":
        """``pt.inspect.transformer_apply_attributes``: ``retriever``, ``path``, ``vocab``, or the PISA retriever's
        own attributes (``num_results``, ``threads``, ...) applied to it."""
        retriever = kwargs.pop("retriever", self.retriever)
        path, vocab = kwargs.pop("path", self.path), kwargs.pop("vocab", self.vocab)
        if kwargs:
            retriever = pt.inspect.transformer_apply_attributes(retriever, **kwargs)
        return _QuietPisaRetriever(retriever, path, vocab)

    def fuse_rank_cutoff(self, k: int) -> Optional["_QuietPisaRetriever"]:
        inner = self.retriever.fuse_rank_cutoff(k)
        return None if inner is None else _QuietPisaRetriever(inner, self.path, self.vocab)

    def __repr__(self):
        return repr(self.retriever)


class _GuardedPisaIndexer(pt.Indexer):
    """PISA's toks indexer, after checking that some document has a term (else PISA kills the process)."""

    def __init__(self, backend: PisaBackend, overwrite: bool = False, info: Optional[dict] = None):
        self.backend = backend
        self.overwrite = overwrite
        self.info = dict(info or {})

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
        from pyterrier_pisa import PisaIndex

        # into a temporary folder renamed at the end: pyterrier-pisa's own overwrite mode deletes any folder
        # holding a pt_meta.json; ours replaces only a PISA index this project wrote
        with atomic_dir(self.backend.path, self.overwrite, kind=PISA_KIND, ours=is_pisa_folder) as tmp:
            with _stdout_to_stderr():  # PISA's C++ logging writes to stdout, which belongs to the caller's output
                PisaIndex(str(tmp), stemmer="none", threads=self.backend.pisa.threads).toks_indexer().index(records)
            write_marker(tmp, PISA_KIND, **self.info, checksums=manifest(tmp, [p.name for p in tmp.iterdir()
                                                                                if p.name != MARKER]))
        return self.backend


@contextlib.contextmanager
def _pisa_errors(path):
    """PISA's C++ failures (damaged index files) arrive as RuntimeError: name the index."""
    try:
        yield
    except RuntimeError as e:
        raise CorruptIndexError(f"PISA cannot use the index {path}: {e}; `disco check {path}` verifies its files, "
                                "rebuild it if they are damaged") from e


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
