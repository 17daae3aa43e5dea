"""Sparse inverted indexes: an exact numba index (``SparseIndex``) and a pyterrier-pisa backend.

On-disk layout of a ``SparseIndex`` folder (all written to a temporary folder, renamed when complete):

- ``pt_meta.json``: artifact type/format, counts, the encoder vocabulary fingerprint (if known)
- ``lexicon.json``: the terms, in term-id order
- ``offsets.npy`` (int64, n_terms + 1), ``doc_ids.npy``, ``weights.npy`` (float32): the postings of term
  ``t`` are positions ``offsets[t]:offsets[t+1]``, in ascending doc order, with their ``weights``
- ``blocks.npy`` (int64, n_terms x (n_blocks + 1)): ``blocks[t, b]`` is the first posting of term ``t`` with a
  doc id in block ``b`` (blocks of ``scoring.BLOCK_DOCS`` = 65536 documents) or later
- ``doc_ids.npy`` holds uint16 ids *within the block*: the doc id of posting ``p`` in block ``b`` is
  ``b * 65536 + doc_ids[p]``. Exhaustive scoring is bound by the bytes it streams per posting, and this
  cuts them from 8 to 6 (``benchmarks/retrieval.py``); :meth:`SparseIndex.postings` gives global ids.
  Indexes written with int32 global ids (before the block table existed) still load, converted in memory.
- ``docnos.npy``: docno of each internal doc id
"""
import contextlib
import ctypes
import itertools
import json
import os
import sys
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import numba
import numpy as np
import pandas as pd
import pyterrier as pt

from ._utils import atomic_dir
from .scoring import BLOCK_DOCS, BLOCK_SHIFT, local_postings, search  # noqa: F401  (search: the engine)

ARTIFACT_TYPE, ARTIFACT_FORMAT = "sparse_index", "numba"
_ARRAYS = {"offsets": np.int64, "doc_ids": (np.uint16, np.int32), "weights": np.float32}


class CorruptIndexError(RuntimeError):
    """An index file is missing, truncated or inconsistent with ``pt_meta.json``."""


class SparseIndex(pt.Artifact, pt.Indexer):
    """An exact learned-sparse inverted index searched with numba.

    >>> index = SparseIndex("idx")
    >>> (splade.doc_encoder() >> index.indexer()).index(docs)
    >>> (splade.query_encoder() >> index.retriever(num_results=100))(topics)
    """

    ARTIFACT_TYPE = ARTIFACT_TYPE
    ARTIFACT_FORMAT = ARTIFACT_FORMAT

    def __init__(self, path, *, threads: Optional[int] = None, verbose: bool = True):
        super().__init__(path)
        self.threads = threads
        self.verbose = verbose
        self._data = None

    def built(self) -> bool:
        return (Path(self.path) / "pt_meta.json").exists()

    @property
    def meta(self) -> dict:
        meta_file = Path(self.path) / "pt_meta.json"
        if not meta_file.exists():
            raise FileNotFoundError(f"no index at {self.path}: {meta_file} is missing (build it with .indexer())")
        try:
            meta = json.loads(meta_file.read_text())
        except json.JSONDecodeError as e:
            raise CorruptIndexError(f"{meta_file} is not valid JSON: {e}") from e
        if (meta.get("type"), meta.get("format")) != (ARTIFACT_TYPE, ARTIFACT_FORMAT):
            raise CorruptIndexError(f"{self.path} holds a {meta.get('type')}.{meta.get('format')} artifact, "
                                    f"not a {ARTIFACT_TYPE}.{ARTIFACT_FORMAT} index")
        return meta

    def indexer(self, *, vocab: Optional[str] = None, overwrite: bool = False,
                verbose: Optional[bool] = None) -> "SparseIndexer":
        """An indexer consuming ``docno`` and ``toks``. ``vocab``: the document encoder's vocabulary fingerprint."""
        return SparseIndexer(self, vocab=vocab, overwrite=overwrite,
                             verbose=self.verbose if verbose is None else verbose)

    def index_inputs(self):
        return [["docno", "toks"]]

    def index(self, it: Iterable[dict]):
        return self.indexer().index(it)

    def retriever(self, num_results: int = 1000, *, vocab: Optional[str] = None,
                  threads: Optional[int] = None, verbose: bool = False) -> "SparseRetriever":
        """Exact top-``num_results`` by dot product (``qid, query_toks`` -> ``qid, docno, score, rank``).

        ``threads=None``: every core for a batch of at least two queries per core (each thread takes its own
        queries); for fewer queries, one thread per ``scoring.DOCS_PER_THREAD`` documents, up to the cores (a
        second thread on one query only paid off from about a million documents in ``benchmarks/retrieval.py``).
        """
        return SparseRetriever(self, num_results=num_results, vocab=vocab,
                               threads=threads or self.threads, verbose=verbose)

    # -- loading ---------------------------------------------------------------------------------
    def _load(self):
        if self._data is not None:
            return self._data
        meta = self.meta
        path = Path(self.path)
        arrays = {}
        for name, dtype in _ARRAYS.items():
            arrays[name] = _load_array(path / f"{name}.npy", dtype)
        docnos = _load_array(path / "docnos.npy", None)
        try:
            lexicon = json.loads((path / "lexicon.json").read_text())
        except FileNotFoundError as e:
            raise CorruptIndexError(f"index file missing: {path / 'lexicon.json'}") from e
        except json.JSONDecodeError as e:
            raise CorruptIndexError(f"index file truncated or corrupt: {path / 'lexicon.json'} ({e})") from e
        expected = {"offsets": meta["num_terms"] + 1, "doc_ids": meta["num_postings"],
                    "weights": meta["num_postings"]}
        for name, n in expected.items():
            if arrays[name].shape != (n,):
                raise CorruptIndexError(f"{path / (name + '.npy')} has shape {arrays[name].shape}, "
                                        f"pt_meta.json says ({n},)")
        if len(lexicon) != meta["num_terms"] or docnos.shape != (meta["num_docs"],):
            raise CorruptIndexError(f"{path}: lexicon.json or docnos.npy disagrees with pt_meta.json")
        if arrays["offsets"][-1] != meta["num_postings"]:
            raise CorruptIndexError(f"{path / 'offsets.npy'} does not end at the number of postings")
        if arrays["doc_ids"].dtype == np.int32:  # written before the block table: global ids
            arrays["blocks"], arrays["doc_ids"] = local_postings(arrays["offsets"], arrays["doc_ids"], meta["num_docs"])
        else:
            arrays["blocks"] = _load_blocks(path, meta, arrays)
        self._data = (arrays, docnos, {t: i for i, t in enumerate(lexicon)})
        return self._data

    def postings(self, term: str) -> Tuple[np.ndarray, np.ndarray]:
        """(global doc ids, weights) of one term's posting list; empty arrays for a term not in the index."""
        arrays, _, lexicon = self._load()
        if term not in lexicon:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        row = arrays["blocks"][lexicon[term]]
        ids = [(b << BLOCK_SHIFT) + arrays["doc_ids"][row[b]:row[b + 1]].astype(np.int64) for b in range(len(row) - 1)]
        return np.concatenate(ids), np.asarray(arrays["weights"][row[0]:row[-1]])

    def term_probabilities(self) -> Dict[str, float]:
        """p_j(d): the fraction of documents in which each indexed term is active (for FLOPs, Eq. 7)."""
        arrays, docnos, lexicon = self._load()
        df = np.diff(arrays["offsets"])
        return {t: df[i] / len(docnos) for t, i in lexicon.items()}

    @property
    def docnos(self) -> np.ndarray:
        return self._load()[1]

    def __len__(self) -> int:
        return self.meta["num_docs"]

    def __repr__(self):
        return f"SparseIndex({str(self.path)!r})"


def _load_array(file: Path, dtype) -> np.ndarray:
    if not file.exists():
        raise CorruptIndexError(f"index file missing: {file}")
    try:
        arr = np.load(file, mmap_mode="r" if dtype is not None else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise CorruptIndexError(f"index file truncated or corrupt: {file} ({e})") from e
    allowed = dtype if isinstance(dtype, tuple) else (dtype,)
    if dtype is not None and arr.dtype not in allowed:
        raise CorruptIndexError(f"{file} has dtype {arr.dtype}, expected {' or '.join(np.dtype(d).name for d in allowed)}")
    return arr


def _load_blocks(path: Path, meta: dict, arrays: dict) -> np.ndarray:
    """The block table, checked against the offsets: the scorer trusts it."""
    file = path / "blocks.npy"
    if meta.get("block_docs") != BLOCK_DOCS:
        raise CorruptIndexError(f"{path} has blocks of {meta.get('block_docs')} documents; this version reads "
                                f"{BLOCK_DOCS}: rebuild the index")
    blocks = _load_array(file, np.int64)
    n_blocks = max(1, -(-meta["num_docs"] // BLOCK_DOCS))
    offsets = arrays["offsets"]
    if (blocks.shape != (meta["num_terms"], n_blocks + 1) or not np.array_equal(blocks[:, 0], offsets[:-1])
            or not np.array_equal(blocks[:, -1], offsets[1:]) or (np.diff(blocks, axis=1) < 0).any()):
        raise CorruptIndexError(f"{file} does not match offsets.npy and pt_meta.json")
    return blocks


class SparseIndexer(pt.Indexer):
    """Builds a :class:`SparseIndex` from an iterable of ``{"docno", "toks"}`` records, streaming.

    Postings are spilled to disk in chunks as documents arrive, then counting-sorted by term straight into
    memory-mapped output files, so memory stays at one chunk plus the lexicon whatever the collection size.
    """

    CHUNK_POSTINGS = 1_000_000

    def __init__(self, index: SparseIndex, *, vocab: Optional[str] = None, overwrite: bool = False,
                 verbose: bool = True):
        self.index_ = index
        self.vocab = vocab
        self.overwrite = overwrite
        self.verbose = verbose

    def index_inputs(self):
        return [["docno", "toks"]]

    def index(self, it: Iterable[dict]) -> SparseIndex:
        lexicon: Dict[str, int] = {}
        docnos: List[str] = []
        with atomic_dir(self.index_.path, overwrite=self.overwrite) as tmp:
            chunks: List[Path] = []
            terms, docs, weights = [], [], []
            for record in pt.tqdm(it, desc="indexing", unit="doc", disable=not self.verbose):
                if "docno" not in record or "toks" not in record:
                    raise KeyError(f"indexing needs 'docno' and 'toks' fields; got {sorted(record)}")
                toks = record["toks"]
                if not isinstance(toks, dict):
                    raise TypeError(f"'toks' of document {record['docno']!r} must be a dict term -> weight, "
                                    f"got {type(toks).__name__}")
                doc_id = len(docnos)
                docnos.append(str(record["docno"]))
                positive = [(t, w) for t, w in toks.items() if w > 0]
                terms.extend(lexicon.setdefault(t, len(lexicon)) for t, _ in positive)
                weights.extend(w for _, w in positive)
                docs.extend([doc_id] * len(positive))
                if len(terms) >= self.CHUNK_POSTINGS:
                    chunks.append(_spill(tmp, len(chunks), terms, docs, weights))
                    terms, docs, weights = [], [], []
            if not docnos:
                raise ValueError("cannot build an index from zero documents")
            chunks.append(_spill(tmp, len(chunks), terms, docs, weights))
            _write_postings(tmp, chunks, len(lexicon), len(docnos))
            _write_tables(tmp, docnos, list(lexicon), self.vocab)
        self.index_._data = None
        return self.index_


def _spill(folder: Path, n: int, terms, docs, weights) -> Path:
    chunk = folder / f".chunk-{n}.npz"
    np.savez(chunk, terms=np.asarray(terms, np.int32), docs=np.asarray(docs, np.int32),
             weights=np.asarray(weights, np.float32))
    return chunk


def _write_postings(folder: Path, chunks: List[Path], n_terms: int, n_docs: int) -> None:
    """Counting sort of the spilled (term, doc, weight) chunks into term-major memory-mapped arrays, with the
    block table."""
    counts = np.zeros(n_terms, dtype=np.int64)
    for chunk in chunks:
        with np.load(chunk) as c:
            counts += np.bincount(c["terms"], minlength=n_terms)
    offsets = np.zeros(n_terms + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    np.save(folder / "offsets.npy", offsets)
    doc_ids = np.lib.format.open_memmap(folder / "doc_ids.npy", "w+", np.uint16, (int(offsets[-1]),))
    weights = np.lib.format.open_memmap(folder / "weights.npy", "w+", np.float32, (int(offsets[-1]),))
    blocks = np.empty((n_terms, max(1, -(-n_docs // BLOCK_DOCS)) + 1), np.int64)
    blocks[:, 0] = offsets[:-1]
    next_block = np.ones(n_terms, np.int64)  # the first block whose start is not yet in the table, per term
    cursor = offsets[:-1].copy()
    for chunk in chunks:  # chunks arrive in document order, so each posting list ends up ascending
        with np.load(chunk) as c:
            _scatter_postings(c["terms"], c["docs"], c["weights"], cursor, next_block, blocks, doc_ids, weights)
        chunk.unlink()
    for t in range(n_terms):
        blocks[t, next_block[t]:] = offsets[t + 1]
    np.save(folder / "blocks.npy", blocks)
    doc_ids.flush()
    weights.flush()
    del doc_ids, weights


@numba.njit(cache=True, nogil=True)
def _scatter_postings(terms, docs, weights, cursor, next_block, blocks, out_docs, out_weights):
    for i in range(len(terms)):
        t, d = terms[i], docs[i]
        p = cursor[t]
        while next_block[t] <= d >> BLOCK_SHIFT:  # the term's first posting in a later block
            blocks[t, next_block[t]] = p
            next_block[t] += 1
        out_docs[p] = d & (BLOCK_DOCS - 1)
        out_weights[p] = weights[i]
        cursor[t] = p + 1


def _write_tables(folder: Path, docnos: List[str], lexicon: List[str], vocab: Optional[str]) -> None:
    offsets = np.load(folder / "offsets.npy", mmap_mode="r")
    np.save(folder / "docnos.npy", np.asarray(docnos, dtype=str))
    (folder / "lexicon.json").write_text(json.dumps(lexicon))
    meta = {"type": ARTIFACT_TYPE, "format": ARTIFACT_FORMAT, "package_hint": "pyterrier-disco",
            "num_docs": len(docnos), "num_terms": len(lexicon), "num_postings": int(offsets[-1]), "vocab": vocab,
            "block_docs": BLOCK_DOCS}
    (folder / "pt_meta.json").write_text(json.dumps(meta, indent=2))


def index_from_csr(path, matrix, docnos: List[str], terms: List[str], *, vocab: Optional[str] = None,
                   overwrite: bool = False) -> SparseIndex:
    """Build a :class:`SparseIndex` directly from a (documents x terms) scipy matrix of non-negative weights."""
    import scipy.sparse as sp

    matrix = sp.csc_matrix(matrix, dtype=np.float32)
    matrix.eliminate_zeros()
    matrix.sort_indices()
    if matrix.shape != (len(docnos), len(terms)):
        raise ValueError(f"matrix shape {matrix.shape} does not match {len(docnos)} docnos x {len(terms)} terms")
    if matrix.nnz and matrix.data.min() < 0:
        raise ValueError("sparse index weights must be non-negative")
    with atomic_dir(path, overwrite=overwrite) as tmp:
        offsets = matrix.indptr.astype(np.int64)
        blocks, local_ids = local_postings(offsets, matrix.indices.astype(np.int32), len(docnos))
        np.save(tmp / "offsets.npy", offsets)
        np.save(tmp / "blocks.npy", blocks)
        np.save(tmp / "doc_ids.npy", local_ids)
        np.save(tmp / "weights.npy", matrix.data)
        _write_tables(tmp, [str(d) for d in docnos], list(terms), vocab)
    return SparseIndex(path)


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
        doc_ids, scores, counts = search(arrays, len(docnos), queries, self.num_results, self.threads)
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


# -- PISA backend ----------------------------------------------------------------------------------

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
        from pyterrier_pisa import PisaIndex

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


def sparse_index(path, backend: str = "numba", **kwargs):
    """The index helper used across the project: ``backend='numba'`` (exact) or ``'pisa'`` (quantised)."""
    if backend == "numba":
        return SparseIndex(path, **kwargs)
    if backend == "pisa":
        return PisaBackend(path, **kwargs)
    raise ValueError(f"unknown index backend {backend!r}: choose 'numba' or 'pisa'")


def open_index(path, **kwargs):
    """Open an existing index folder of either backend, by its ``pt_meta.json``."""
    meta_file = Path(path) / "pt_meta.json"
    if not meta_file.exists():
        raise FileNotFoundError(f"no index at {path}: {meta_file} is missing")
    meta = json.loads(meta_file.read_text())
    if meta.get("format") not in ("numba", "pisa"):
        raise CorruptIndexError(f"{path} holds a {meta.get('type')}.{meta.get('format')} artifact, not a "
                                "numba or PISA sparse index")
    return sparse_index(path, meta["format"], **kwargs)


def dataset_docs(dataset) -> Iterator[dict]:
    """``{"docno", "text"}`` records of an ir_datasets dataset (given by id or object)."""
    import ir_datasets

    ds = ir_datasets.load(dataset) if isinstance(dataset, str) else dataset
    if not ds.has_docs():
        raise ValueError(f"dataset {dataset!r} has no documents")
    for doc in ds.docs_iter():
        yield {"docno": doc.doc_id, "text": doc.default_text()}


def index_dataset(dataset, out, *, backend: str = "numba", splade=None, batch_size: int = 32,
                  overwrite: bool = False, verbose: bool = True):
    """Encode a dataset's passages with the document encoder and build an index at ``out``."""
    from .encoders import Splade

    splade = splade if splade is not None else Splade()
    index = sparse_index(out, backend=backend, verbose=verbose)
    encoder = splade.doc_encoder(batch_size=batch_size, verbose=False)
    indexer = index.indexer(vocab=splade.doc_model.vocab_fingerprint, overwrite=overwrite)
    (encoder >> indexer).index(dataset_docs(dataset))
    return index
