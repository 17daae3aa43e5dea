"""Sparse inverted indexes: an exact numba index (``SparseIndex``) and a pyterrier-pisa backend.

On-disk layout of a ``SparseIndex`` folder (all written to a temporary folder, renamed when complete):

- ``pt_meta.json``: artifact type/format, counts, the encoder vocabulary fingerprint (if known)
- ``lexicon.json``: the terms, in term-id order
- ``offsets.npy`` (int64, n_terms + 1), ``doc_ids.npy``, ``weights.npy`` (float32): the postings of term
  ``t`` are positions ``offsets[t]:offsets[t+1]``, in ascending doc order, with their ``weights``
- ``blocks.npy`` (int64, n_terms x (n_blocks + 1)): ``blocks[t, b]`` is the first posting of term ``t`` with a
  doc id in block ``b`` (blocks of ``_scoring.BLOCK_DOCS`` = 65536 documents) or later
- ``doc_ids.npy`` holds uint16 ids *within the block*: the doc id of posting ``p`` in block ``b`` is
  ``b * 65536 + doc_ids[p]``. Exhaustive scoring is bound by the bytes it streams per posting, and this
  cuts them from 8 to 6 (``benchmarks/retrieval.py``); :meth:`SparseIndex.postings` gives global ids.
  Indexes written with int32 global ids (before the block table existed) still load, converted in memory.
- ``docnos.npy``: docno of each internal doc id
"""
import json
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterable, Optional, Tuple

import numpy as np
import pyterrier as pt

from ._scoring import BLOCK_DOCS, BLOCK_SHIFT, local_postings

if TYPE_CHECKING:
    from .retriever import SparseRetriever
    from .writer import SparseIndexer

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
        return read_meta(self.path, ARTIFACT_FORMAT, "build it with .indexer()")

    def indexer(self, *, vocab: Optional[str] = None, overwrite: bool = False,
                verbose: Optional[bool] = None) -> "SparseIndexer":
        """An indexer consuming ``docno`` and ``toks``. ``vocab``: the document encoder's vocabulary fingerprint."""
        from .writer import SparseIndexer

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
        queries); for fewer queries, one thread per ``_scoring.DOCS_PER_THREAD`` documents, up to the cores (a
        second thread on one query only paid off from about a million documents in ``benchmarks/retrieval.py``).
        """
        from .retriever import SparseRetriever

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


def read_meta(path, artifact_format: str, hint: str) -> dict:
    """The ``pt_meta.json`` of a ``sparse_index.<artifact_format>`` folder, checked to be one."""
    meta_file = Path(path) / "pt_meta.json"
    if not meta_file.exists():
        raise FileNotFoundError(f"no index at {path}: {meta_file} is missing ({hint})")
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as e:
        raise CorruptIndexError(f"{meta_file} is not valid JSON: {e}") from e
    if (meta.get("type"), meta.get("format")) != (ARTIFACT_TYPE, artifact_format):
        raise CorruptIndexError(f"{path} holds a {meta.get('type')}.{meta.get('format')} artifact, "
                                f"not a {ARTIFACT_TYPE}.{artifact_format} index")
    return meta


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
